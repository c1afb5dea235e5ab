"""Transient AWS errors become StoreUnavailableError (Step Functions retries it); answers stay answers.

The real stores run against moto; the faults come in through botocore's event hooks, in the shapes the
services really answer with (HTTP status, ``Error.Code``, DynamoDB's ``CancellationReasons``), so the code
under test sees exactly what botocore raises in AWS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from core.adapters.store import StoreUnavailableError, ThreadNotFoundError, VersionConflictError
from core.adapters.store.approvals_dynamodb import DynamoApprovalStore
from core.adapters.store.dynamodb import CorruptEventError, DynamoThreadStore
from core.adapters.store.spend_dynamodb import DynamoSpendLedger
from core.kernel.events import HumanRequest, UserInput
from core.kernel.thread import start_thread
from core.services.approvals import Approval
from tests.functional.conftest import ScratchAws, scratch_aws

TS = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
Hook = Callable[..., Any]


class _ErrorResponse:
    """What botocore needs of an HTTP response to raise the service's error."""

    def __init__(self, status: int) -> None:
        self.status_code = status
        self.headers: dict[str, str] = {}
        self.content = b""


def answer(status: int, code: str, message: str = "injected", **extra: Any) -> tuple[_ErrorResponse, dict[str, Any]]:
    """The (http response, parsed body) pair a ``before-call`` hook returns to stand in for the service."""
    parsed: dict[str, Any] = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
        **extra,
    }
    return _ErrorResponse(status), parsed


def cancelled(*codes: str) -> tuple[_ErrorResponse, dict[str, Any]]:
    """DynamoDB's TransactionCanceledException: HTTP 400, one reason per item, ``None`` for the innocent ones."""
    reasons = [{"Code": code} if code == "None" else {"Code": code, "Message": "injected"} for code in codes]
    message = f"Transaction cancelled, please refer cancellation reasons for specific reasons [{', '.join(codes)}]"
    return answer(400, "TransactionCanceledException", message, CancellationReasons=reasons)


ONE_ATTEMPT = Config(retries={"total_max_attempts": 1, "mode": "standard"})
"""One attempt per call: the SDK's own retries would hide the fault; the store must see what is left."""


class Aws:
    def __init__(self, scratch: ScratchAws) -> None:
        self.dynamodb, self.s3 = scratch.dynamodb, scratch.s3
        self.table, self.bucket = scratch.table, scratch.bucket
        self.calls: list[str] = []

    def fail(self, client: Any, operation: str, *answers: Any) -> None:
        """The next calls of ``operation`` get ``answers`` in turn (a tuple to return, an exception to raise)."""
        queue = list(answers)
        service = client.meta.service_model.endpoint_prefix

        def hook(**_: Any) -> Any:
            self.calls.append(operation)
            if not queue:
                return None
            fault = queue.pop(0)
            if isinstance(fault, BaseException):
                raise fault
            return fault

        client.meta.events.register(f"before-call.{service}.{operation}", hook)

    def threads(self, **options: Any) -> DynamoThreadStore:
        return DynamoThreadStore(self.table, self.dynamodb, self.s3, self.bucket, **options)


@pytest.fixture
def aws() -> Iterator[Aws]:
    with scratch_aws(ONE_ATTEMPT) as scratch:
        yield Aws(scratch)


def _started(aws: Aws, thread_id: str = "t-1") -> DynamoThreadStore:
    store = aws.threads()
    store.create(start_thread(thread_id, "demo", "hello", now=TS))
    return store


# -- the thread store ----------------------------------------------------------------------------------------------


def test_a_throttled_item_in_the_append_transaction_is_retryable_and_writes_nothing(aws: Aws) -> None:
    store = _started(aws)
    aws.fail(aws.dynamodb, "TransactWriteItems", cancelled("None", "ThrottlingError"))

    with pytest.raises(StoreUnavailableError) as raised:
        store.append("t-1", 1, [HumanRequest(seq=1, ts=TS, kind="question", approval_id="a", question="?")])

    message = str(raised.value)
    assert "append thread 't-1'" in message
    assert "TransactWriteItems answered TransactionCanceledException(ThrottlingError)" in message
    assert "safe to retry" in message
    assert isinstance(raised.value.__cause__, ClientError)
    assert aws.threads(cache=False).load("t-1").version == 1
    # What Step Functions does next: run the step again, which succeeds.
    assert (
        store.append("t-1", 1, [HumanRequest(seq=1, ts=TS, kind="question", approval_id="a", question="?")]).version
        == 2
    )


def test_provisioned_throughput_exceeded_on_an_item_is_retryable_too(aws: Aws) -> None:
    store = _started(aws)
    aws.fail(aws.dynamodb, "TransactWriteItems", cancelled("ProvisionedThroughputExceeded", "None"))

    with pytest.raises(StoreUnavailableError, match=r"ProvisionedThroughputExceeded"):
        store.append("t-1", 1, [HumanRequest(seq=1, ts=TS, kind="question", approval_id="a", question="?")])


def test_throttling_alongside_a_transaction_conflict_is_retried_as_unavailable(aws: Aws) -> None:
    store = _started(aws)
    aws.fail(aws.dynamodb, "TransactWriteItems", cancelled("TransactionConflict", "ThrottlingError"))

    with pytest.raises(StoreUnavailableError):
        store.append("t-1", 1, [HumanRequest(seq=1, ts=TS, kind="question", approval_id="a", question="?")])


def test_a_transaction_conflict_alone_is_still_a_version_conflict(aws: Aws) -> None:
    store = _started(aws)
    aws.fail(aws.dynamodb, "TransactWriteItems", cancelled("TransactionConflict", "None"))

    with pytest.raises(VersionConflictError):
        store.append("t-1", 1, [HumanRequest(seq=1, ts=TS, kind="question", approval_id="a", question="?")])


def test_a_cancelled_transaction_for_a_real_reason_is_not_called_transient(aws: Aws) -> None:
    store = _started(aws)
    aws.fail(aws.dynamodb, "TransactWriteItems", cancelled("None", "ValidationError"))

    with pytest.raises(ClientError, match="TransactionCanceledException"):
        store.append("t-1", 1, [HumanRequest(seq=1, ts=TS, kind="question", approval_id="a", question="?")])


def test_the_real_condition_failure_still_wins_over_throttling_noise(aws: Aws) -> None:
    store = _started(aws)
    old = {"Item": {"version": {"N": "4"}}}
    aws.fail(
        aws.dynamodb,
        "TransactWriteItems",
        answer(
            400,
            "TransactionCanceledException",
            CancellationReasons=[{"Code": "ConditionalCheckFailed", **old}, {"Code": "ThrottlingError"}],
        ),
    )

    with pytest.raises(VersionConflictError, match="it is at 4"):
        store.append("t-1", 1, [HumanRequest(seq=1, ts=TS, kind="question", approval_id="a", question="?")])


def test_a_throttled_create_is_retryable_and_a_retry_creates_it(aws: Aws) -> None:
    store = aws.threads()
    aws.fail(aws.dynamodb, "TransactWriteItems", cancelled("ThrottlingError", "None"))

    with pytest.raises(StoreUnavailableError, match=r"could not create thread 't-1'"):
        store.create(start_thread("t-1", "demo", "hello", now=TS))
    with pytest.raises(ThreadNotFoundError):
        aws.threads().load("t-1")
    assert store.create(start_thread("t-1", "demo", "hello", now=TS)).version == 1


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(answer(400, "ProvisionedThroughputExceededException"), id="throughput"),
        pytest.param(answer(400, "ThrottlingException"), id="throttling"),
        pytest.param(answer(500, "InternalServerError"), id="500"),
        pytest.param(answer(503, "ServiceUnavailable"), id="503"),
        pytest.param(EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"), id="network"),
        pytest.param(ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"), id="read-timeout"),
    ],
)
def test_a_failing_query_makes_load_retryable(aws: Aws, fault: Any) -> None:
    _started(aws)
    aws.fail(aws.dynamodb, "Query", fault)

    with pytest.raises(StoreUnavailableError, match=r"could not load thread 't-1'.*safe to retry"):
        aws.threads().load("t-1")
    assert aws.threads().load("t-1").version == 1


def test_a_validation_error_is_not_dressed_up_as_unavailable(aws: Aws) -> None:
    _started(aws)
    aws.fail(aws.dynamodb, "Query", answer(400, "ValidationException"))

    with pytest.raises(ClientError, match="ValidationException"):
        aws.threads().load("t-1")


def test_listing_through_a_throttled_index_is_retryable(aws: Aws) -> None:
    _started(aws)
    aws.fail(aws.dynamodb, "Query", answer(400, "ThrottlingException"))

    with pytest.raises(StoreUnavailableError, match="list threads"):
        aws.threads().list_threads(status="running")


def _offloaded(aws: Aws) -> str:
    store = _started(aws)
    store.append("t-1", 1, [UserInput(seq=1, ts=TS, text="z" * 40_000)])
    key: str = aws.dynamodb.get_item(
        TableName=aws.table, Key={"PK": {"S": "THREAD#t-1"}, "SK": {"S": "EV#0000000001"}}, ConsistentRead=True
    )["Item"]["s3"]["S"]
    return key


def test_s3_slowing_down_on_a_payload_read_is_retryable(aws: Aws) -> None:
    _offloaded(aws)
    aws.fail(aws.s3, "GetObject", answer(503, "SlowDown", "Please reduce your request rate."))

    with pytest.raises(StoreUnavailableError, match="GetObject answered SlowDown"):
        aws.threads().load("t-1")
    assert aws.threads().load("t-1").version == 2


def test_s3_failing_on_a_payload_upload_is_retryable_and_commits_nothing(aws: Aws) -> None:
    store = _started(aws)
    aws.fail(aws.s3, "PutObject", answer(500, "InternalError"))

    with pytest.raises(StoreUnavailableError, match="PutObject answered InternalError"):
        store.append("t-1", 1, [UserInput(seq=1, ts=TS, text="z" * 40_000)])
    assert aws.threads().load("t-1").version == 1


def test_access_denied_on_a_payload_says_it_is_missing_or_unreadable(aws: Aws) -> None:
    """Without s3:ListBucket, S3 answers a missing key with 403 AccessDenied, not 404 NoSuchKey."""
    key = _offloaded(aws)
    aws.fail(aws.s3, "GetObject", answer(403, "AccessDenied", "Access Denied"))

    with pytest.raises(CorruptEventError) as raised:
        aws.threads().load("t-1")

    message = str(raised.value)
    assert f"s3://{aws.bucket}/{key} is missing or unreadable" in message
    assert "s3:GetObject" in message
    assert "s3:ListBucket" in message
    assert "seq=1" in message


# -- the approvals store -------------------------------------------------------------------------------------------


def _approval(approval_id: str = "ap-1") -> Approval:
    return Approval(
        approval_id=approval_id,
        thread_id="t-1",
        agent="demo",
        kind="question",
        question="?",
        expires_at=2,
        created_at=1,
    )


def test_a_throttled_approval_write_is_retryable(aws: Aws) -> None:
    approvals = DynamoApprovalStore(aws.table, aws.dynamodb)
    aws.fail(aws.dynamodb, "PutItem", answer(400, "ProvisionedThroughputExceededException"))

    with pytest.raises(StoreUnavailableError, match=r"put pending approval 'ap-1'.*PutItem answered"):
        approvals.put_pending(_approval())
    assert approvals.put_pending(_approval()).approval_id == "ap-1"


def test_a_failing_approval_read_and_decision_are_retryable(aws: Aws) -> None:
    approvals = DynamoApprovalStore(aws.table, aws.dynamodb)
    approvals.put_pending(_approval())
    aws.fail(aws.dynamodb, "GetItem", answer(500, "InternalServerError"))
    aws.fail(aws.dynamodb, "UpdateItem", ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"))

    with pytest.raises(StoreUnavailableError, match=r"get approval 'ap-1'.*InternalServerError"):
        approvals.get("ap-1")
    with pytest.raises(StoreUnavailableError, match=r"close approval 'ap-1'.*ReadTimeoutError"):
        approvals.close("ap-1", "approved", "alice", 3)

    assert approvals.close("ap-1", "approved", "alice", 3) is True
    assert approvals.close("ap-1", "rejected", "bob", 4) is False  # the condition is an answer, not a fault
    assert approvals.get("ap-1").state == "approved"


# -- the spend ledger ----------------------------------------------------------------------------------------------


def test_a_throttled_spend_update_is_retryable_and_adds_nothing(aws: Aws) -> None:
    ledger = DynamoSpendLedger(aws.table, aws.dynamodb)
    aws.fail(aws.dynamodb, "UpdateItem", answer(400, "ThrottlingException", "Rate exceeded"))

    with pytest.raises(StoreUnavailableError, match=r"spend of agent 'demo' on 2025-01-02.*UpdateItem answered"):
        ledger.add("demo", "2025-01-02", 0.5)
    assert ledger.spent("demo", "2025-01-02") == 0.0
    assert ledger.add("demo", "2025-01-02", 0.5) == 0.5


def test_an_unreachable_ledger_is_retryable(aws: Aws) -> None:
    ledger = DynamoSpendLedger(aws.table, aws.dynamodb)
    aws.fail(aws.dynamodb, "GetItem", EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"))

    with pytest.raises(StoreUnavailableError, match="EndpointConnectionError"):
        ledger.spent("demo", "2025-01-02")
