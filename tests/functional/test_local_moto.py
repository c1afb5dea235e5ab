"""What the local stack changes in moto for speed changes nothing a client can see.

- Query and Scan are answered with ``json.dumps`` of moto's result instead of moto's shape-walking serializer
  (``infra.local.stack._answer_reads_as_json``): the same JSON document, for every attribute type and shape of
  answer.
- A transaction is backed up by the gate with only what it can change (``_TransactionBackup``): the rollback of a
  cancelled one is ``test_store_dynamodb.py::test_a_cancelled_transaction_takes_back_what_it_had_already_changed``.
- A Query on a table's own key runs over its partition only (``_query_one_partition``): the same answers as moto's
  own ``Table.query`` over the whole table, for every kind of key condition, page, filter and projection.
- moto lists a response handler's methods once per class (``_list_each_handlers_actions_once``); the engine parses
  a definition once (``_parse_each_definition_once``: every execution still gets a program of its own), each JSONPath
  once (``_parse_each_json_path_once``) and invokes Lambda through one client (``_one_lambda_client_per_region``);
  the functional tests run every request and execution through all of them.
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from moto.core.responses import BaseResponse
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser, ASLParserException

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


def _page_through(ddb: Any, **query: Any) -> list[dict[str, Any]]:
    """Every page of a Query, each without its request id."""
    pages = []
    while True:
        page = ddb.query(**query)
        page.pop("ResponseMetadata")
        pages.append(page)
        if "LastEvaluatedKey" not in page:
            return pages
        query = {**query, "ExclusiveStartKey": page["LastEvaluatedKey"]}


@pytest.fixture
def hash_only_table(scratch: ScratchAws) -> Iterator[str]:
    """A table keyed by its partition key alone, in the session's moto, deleted afterwards."""
    name = f"scratch-hash-{uuid.uuid4().hex[:12]}"
    ddb = scratch.dynamodb
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield name
    ddb.delete_table(TableName=name)


def test_a_query_on_the_tables_key_answers_what_moto_answers_over_the_whole_table(
    scratch: ScratchAws, hash_only_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ddb, table = scratch.dynamodb, scratch.table
    for thread in ("t-1", "t-2", "t-10"):  # partitions before and after the queried one in moto's sorted order
        for seq in (3, 1, 12, 2):
            ddb.put_item(
                TableName=table,
                Item={
                    "PK": {"S": f"THREAD#{thread}"},
                    "SK": {"S": f"EV#{seq:010d}"},
                    "n": {"N": str(seq)},
                    "body": {"S": "x" * 100 * seq},
                    "status": {"S": "running" if seq % 2 else "done"},
                    "updated_at": {"S": f"2026-01-{seq:02d}"},
                },
            )
        ddb.put_item(TableName=table, Item={"PK": {"S": f"THREAD#{thread}"}, "SK": {"S": "META"}})
        ddb.put_item(TableName=hash_only_table, Item={"PK": {"S": f"THREAD#{thread}"}, "n": {"N": "1"}})
    pk = {":pk": {"S": "THREAD#t-1"}}
    queries: list[dict[str, Any]] = [
        {"KeyConditionExpression": "PK = :pk", "ExpressionAttributeValues": pk},
        {"KeyConditionExpression": "PK = :pk", "ExpressionAttributeValues": pk, "Limit": 2},
        {"KeyConditionExpression": "PK = :pk", "ExpressionAttributeValues": pk, "Limit": 2, "ScanIndexForward": False},
        {
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :ev)",
            "ExpressionAttributeValues": {**pk, ":ev": {"S": "EV#"}},
            "Limit": 3,
        },
        {
            "KeyConditionExpression": "PK = :pk AND SK > :after",
            "ExpressionAttributeValues": {**pk, ":after": {"S": f"EV#{2:010d}"}},
            "ScanIndexForward": False,
        },
        {
            "KeyConditionExpression": "PK = :pk AND SK BETWEEN :a AND :b",
            "ExpressionAttributeValues": {**pk, ":a": {"S": "EV#"}, ":b": {"S": f"EV#{3:010d}"}},
        },
        {
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {**pk, ":big": {"N": "2"}},
            "FilterExpression": "n >= :big",
            "ProjectionExpression": "SK, n",
            "Limit": 3,
        },
        {"KeyConditionExpression": "PK = :pk", "ExpressionAttributeValues": pk, "Select": "COUNT"},
        {"KeyConditionExpression": "PK = :pk", "ExpressionAttributeValues": {":pk": {"S": "THREAD#none"}}},
        {  # an index: moto's own path, over the whole table
            "IndexName": "status-updated",
            "KeyConditionExpression": "#s = :s",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":s": {"S": "running"}},
            "Limit": 3,
        },
    ]
    plans = [{"TableName": table, **q} for q in queries]
    plans += [
        {"TableName": hash_only_table, "KeyConditionExpression": "PK = :pk", "ExpressionAttributeValues": pk},
        {
            "TableName": hash_only_table,
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": {"S": "THREAD#none"}},
        },
    ]
    ours = [_page_through(ddb, **plan) for plan in plans]
    monkeypatch.setattr(Table, "query", Table.query.__wrapped__)  # type: ignore[attr-defined]
    motos = [_page_through(ddb, **plan) for plan in plans]

    assert ours == motos
    first = ours[0][0]
    assert [item["SK"]["S"] for item in first["Items"]] == [f"EV#{s:010d}" for s in (1, 2, 3, 12)] + ["META"]
    assert len(ours[1]) == 3  # paged: 2 + 2 + 1 items
    assert ours[-2][0]["Items"] == [{"PK": {"S": "THREAD#t-1"}, "n": {"N": "1"}}]


def test_a_query_on_the_tables_key_does_not_read_the_other_partitions(
    scratch: ScratchAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    ddb, table = scratch.dynamodb, scratch.table
    for thread in ("t-1", "t-2"):
        ddb.put_item(TableName=table, Item={"PK": {"S": f"THREAD#{thread}"}, "SK": {"S": "META"}})

    def whole_table(_table: Any) -> list[Any]:
        raise AssertionError("a Query on the table's key listed the whole table")

    monkeypatch.setattr(Table, "all_items", whole_table)
    page = ddb.query(
        TableName=table, KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": "THREAD#t-2"}}
    )
    assert page["Items"] == [{"PK": {"S": "THREAD#t-2"}, "SK": {"S": "META"}}]


_DEFINITION = json.dumps(
    {
        "StartAt": "Wait",
        "States": {
            "Wait": {
                "Type": "Pass",
                "Next": "End",
                "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2}],
            },
            "End": {"Type": "Succeed"},
        },
    }
)


def test_each_execution_gets_a_program_of_its_own_from_a_definition_parsed_once(scratch: ScratchAws) -> None:
    del scratch  # the shared stack is running: its changes to moto are in place
    first, tree = AmazonStateLanguageParser.parse(_DEFINITION)
    second, same_tree = AmazonStateLanguageParser.parse(_DEFINITION)

    assert same_tree is tree
    assert second is not first
    assert second.states.states["Wait"] is not first.states.states["Wait"]  # type: ignore[attr-defined]
    assert [s.name for s in second.states.states.values()] == ["Wait", "End"]  # type: ignore[attr-defined]
    for _ in range(2):  # a definition that does not parse is refused every time, never kept
        with pytest.raises(ASLParserException):
            AmazonStateLanguageParser.parse('{"StartAt": "Nowhere", "States": {')


def test_a_json_path_parsed_once_finds_what_a_fresh_parse_finds(scratch: ScratchAws) -> None:
    del scratch
    json_path: Any = importlib.import_module("moto.stepfunctions.parser.asl.utils.json_path")
    fresh = json_path.parse.__wrapped__
    data = {"thread_id": "t-1", "seq": 3, "error": {"Cause": "c"}, "items": [{"n": 1}, {"n": 2}]}
    for path in ("$.thread_id", "$.error.Cause", "$.items[1].n", "$.items[*].n", "$"):
        assert json_path.parse(path) is json_path.parse(path)
        assert [m.value for m in json_path.parse(path).find(data)] == [m.value for m in fresh(path).find(data)]
    assert json_path.extract_json("$.items[*].n", data) == [1, 2]
    with pytest.raises(json_path.NoSuchJsonPathError):
        json_path.extract_json("$.missing", data)
    result_path: Any = importlib.import_module("moto.stepfunctions.parser.asl.component.common.path.result_path")
    for path in ("$.result", "$.error", "$.items[0].n"):  # a ResultPath writes into the state's input
        assert result_path.parse(path) is result_path.parse(path)
        ours = result_path.parse(path).update_or_create(json.loads(json.dumps(data)), {"r": 1})
        assert ours == result_path.parse.__wrapped__(path).update_or_create(json.loads(json.dumps(data)), {"r": 1})
    assert result_path.parse("$.result").update_or_create({}, 1) == {"result": 1}  # the kept path is unchanged


def test_a_handlers_actions_listed_once_are_the_ones_moto_lists(scratch: ScratchAws) -> None:
    del scratch
    responses: Any = importlib.import_module("moto.core.responses")
    for handler in (DynamoHandler, BaseResponse):
        assert responses.method_names_from_class(handler) is responses.method_names_from_class(handler)
        assert responses.method_names_from_class(handler) == responses.method_names_from_class.__wrapped__(handler)
    assert {"query", "transact_write_items", "call_action"} <= set(responses.method_names_from_class(DynamoHandler))


def test_the_engine_invokes_lambda_through_one_client_per_region(scratch: ScratchAws) -> None:
    del scratch
    lambda_eval: Any = importlib.import_module(
        "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils"
    )
    client = lambda_eval.boto_client_for(region="us-east-1", service="lambda")
    assert lambda_eval.boto_client_for(region="us-east-1", service="lambda", state_credentials=None) is client
    assert lambda_eval.boto_client_for(region="eu-west-1", service="lambda").meta.region_name == "eu-west-1"
