"""What the local stack changes in moto for speed changes nothing a client can see.

- Query and Scan are answered with ``json.dumps`` of moto's result instead of moto's shape-walking serializer
  (``infra.local.stack._answer_reads_as_json``): the same JSON document, for every attribute type and shape of
  answer.
- A transaction is backed up by the gate with only what it can change (``_TransactionBackup``): the rollback of a
  cancelled one is ``test_store_dynamodb.py::test_a_cancelled_transaction_takes_back_what_it_had_already_changed``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.core.responses import BaseResponse
from moto.dynamodb.responses import DynamoHandler

from tests.functional.conftest import ScratchAws

EVERY_TYPE = {
    "PK": {"S": "THREAD#t-1"},
    "SK": {"S": "EV#0000000001"},
    "s": {"S": 'é \u2028 "quoted" \\ </script>'},
    "n": {"N": "-1.50"},
    "b": {"B": b"\x00\xff binary"},
    "t": {"BOOL": True},
    "f": {"BOOL": False},
    "z": {"NULL": True},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [b"\x01", b"\x02"]},
    "m": {"M": {"l": {"L": [{"S": "x"}, {"N": "0"}, {"B": b"\x03"}, {"M": {}}, {"L": []}]}}},
}


@pytest.fixture
def answers(scratch: ScratchAws, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """(action, the local stack's body, moto's serializer's body) for every Query and Scan the test makes."""
    seen: list[tuple[str, str, str]] = []
    answer = DynamoHandler.serialized
    assert answer is not BaseResponse.serialized, "the local stack answers reads itself"

    def both(handler: Any, action_result: Any) -> Any:
        status, headers, body = answer(handler, action_result)
        if handler._get_action() in ("Query", "Scan"):
            moto_status, moto_headers, moto_body = BaseResponse.serialized(handler, action_result)
            assert (status, headers["Content-Type"]) == (moto_status, moto_headers["Content-Type"])
            seen.append((handler._get_action(), str(body), str(moto_body)))
        return status, headers, body

    monkeypatch.setattr(DynamoHandler, "serialized", both)
    ddb, table = scratch.dynamodb, scratch.table
    ddb.put_item(TableName=table, Item=EVERY_TYPE)
    for seq in (2, 3):
        ddb.put_item(TableName=table, Item={"PK": {"S": "THREAD#t-1"}, "SK": {"S": f"EV#{seq:010d}"}})
    return seen


def test_query_and_scan_answer_the_document_moto_would(
    scratch: ScratchAws, answers: list[tuple[str, str, str]]
) -> None:
    ddb, table = scratch.dynamodb, scratch.table
    key = {"KeyConditionExpression": "PK = :pk", "ExpressionAttributeValues": {":pk": {"S": "THREAD#t-1"}}}
    ddb.query(TableName=table, **key, ConsistentRead=True)
    ddb.query(TableName=table, **key, Limit=1, ReturnConsumedCapacity="TOTAL")  # with a LastEvaluatedKey
    ddb.query(TableName=table, **key, ProjectionExpression="SK, m.l[2], bs")
    ddb.query(TableName=table, **key, Select="COUNT")
    ddb.query(TableName=table, **key, FilterExpression="attribute_exists(b)", ScanIndexForward=False)
    ddb.query(TableName=table, KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": "none"}})
    ddb.scan(TableName=table)
    ddb.scan(TableName=table, Limit=2)
    page = ddb.query(TableName=table, **key)

    assert [action for action, _, _ in answers] == ["Query"] * 6 + ["Scan"] * 2 + ["Query"]
    for _, ours, motos in answers:
        assert json.loads(ours) == json.loads(motos)
    assert page["Items"][0] == EVERY_TYPE  # and botocore reads it back, binary values as bytes


def test_an_error_still_comes_through_motos_serializer(scratch: ScratchAws) -> None:
    ddb = scratch.dynamodb
    with pytest.raises(ddb.exceptions.ResourceNotFoundException):
        ddb.query(
            TableName="no-such-table", KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": "x"}}
        )
