"""The one classifier of transient AWS errors, on the exception objects botocore really raises."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ProxyConnectionError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from core.adapters.store.transient import transient_aws_error, unavailable_is_retryable
from core.kernel.store import StoreUnavailableError, VersionConflictError


def client_error(code: str, status: int, operation: str = "PutItem", **extra: Any) -> ClientError:
    """A ClientError shaped as botocore parses a service's error answer."""
    response: Any = {"Error": {"Code": code, "Message": "..."}, "ResponseMetadata": {"HTTPStatusCode": status}}
    response.update(extra)
    return ClientError(response, operation)


def cancelled(*codes: str) -> ClientError:
    """DynamoDB's TransactionCanceledException with one CancellationReasons entry per item."""
    reasons = [{"Code": code, "Message": "..."} if code != "None" else {"Code": "None"} for code in codes]
    return client_error("TransactionCanceledException", 400, "TransactWriteItems", CancellationReasons=reasons)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ProvisionedThroughputExceededException", 400),
        ("ThrottlingException", 400),
        ("Throttling", 400),
        ("RequestLimitExceeded", 400),
        ("TooManyRequestsException", 429),
        ("RequestTimeout", 400),
        ("SlowDown", 503),
        ("InternalServerError", 500),
        ("ServiceUnavailable", 503),
        ("InternalServiceError", 500),  # Secrets Manager
        ("TransactionInProgressException", 400),
    ],
)
def test_throttling_and_server_errors_are_transient_by_code(code: str, status: int) -> None:
    assert transient_aws_error(client_error(code, status)) == code


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_any_5xx_is_transient_whatever_the_code_says(status: int) -> None:
    assert transient_aws_error(client_error("SomethingNew", status)) == "SomethingNew"
    assert transient_aws_error(ClientError({"ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")) == str(
        status
    )


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ValidationException", 400),
        ("ConditionalCheckFailedException", 400),
        ("ResourceNotFoundException", 400),
        ("AccessDenied", 403),
        ("AccessDeniedException", 400),
        ("NoSuchKey", 404),
        ("LimitExceededException", 400),  # Secrets Manager: a quota, waiting does not lift it
        ("ItemCollectionSizeLimitExceededException", 400),
    ],
)
def test_answers_about_the_request_are_not_transient(code: str, status: int) -> None:
    assert transient_aws_error(client_error(code, status)) is None


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
        ConnectTimeoutError(endpoint_url="https://s3.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://s3.amazonaws.com"),
        ConnectionClosedError(endpoint_url="https://s3.amazonaws.com"),
        ProxyConnectionError(proxy_url="http://proxy:3128", error="refused"),
        ResponseStreamingError(error="connection reset"),
    ],
    ids=type,
)
def test_network_errors_are_transient_and_named_by_their_type(exc: Exception) -> None:
    assert transient_aws_error(exc) == type(exc).__name__


@pytest.mark.parametrize(
    "exc",
    [
        NoCredentialsError(),
        ParamValidationError(report="bad"),
        ValueError("x"),
        ConnectionError("the builtin, not botocore's"),
        StoreUnavailableError("ours"),
        VersionConflictError("t", 1),
    ],
    ids=type,
)
def test_other_exceptions_are_not_transient(exc: Exception) -> None:
    assert transient_aws_error(exc) is None


def test_a_look_alike_class_outside_botocore_is_not_taken_for_a_network_error() -> None:
    EndpointConnectionError = type("EndpointConnectionError", (Exception,), {})  # noqa: N806

    assert transient_aws_error(EndpointConnectionError()) is None


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        (("None", "ThrottlingError"), "TransactionCanceledException(ThrottlingError)"),
        (("TransactionConflict", "None"), "TransactionCanceledException(TransactionConflict)"),
        (
            ("ThrottlingError", "TransactionConflict"),
            "TransactionCanceledException(ThrottlingError, TransactionConflict)",
        ),
        (("ProvisionedThroughputExceeded",), "TransactionCanceledException(ProvisionedThroughputExceeded)"),
        (("ConditionalCheckFailed", "ThrottlingError"), None),
        (("None", "ValidationError"), None),
        (("ItemCollectionSizeLimitExceeded",), None),
        (("None", "None"), None),
    ],
)
def test_a_cancelled_transaction_is_transient_only_when_every_reason_is(
    codes: tuple[str, ...], expected: str | None
) -> None:
    assert transient_aws_error(cancelled(*codes)) == expected


def test_cancellation_reasons_are_read_from_the_message_when_the_response_lacks_them() -> None:
    message = "Transaction cancelled, please refer cancellation reasons for specific reasons [None, ThrottlingError]"
    exc = ClientError({"Error": {"Code": "TransactionCanceledException", "Message": message}}, "TransactWriteItems")

    assert transient_aws_error(exc) == "TransactionCanceledException(ThrottlingError)"


def test_the_guard_turns_transient_errors_into_store_unavailable_naming_operation_and_code() -> None:
    with pytest.raises(StoreUnavailableError) as raised, unavailable_is_retryable("read the spend of agent 'a'"):
        raise client_error("ProvisionedThroughputExceededException", 400, "GetItem")

    assert str(raised.value).startswith(
        "could not read the spend of agent 'a': GetItem answered ProvisionedThroughputExceededException"
    )
    assert "safe to retry" in str(raised.value)
    assert isinstance(raised.value.__cause__, ClientError)


def test_the_guard_lets_answers_through_unchanged() -> None:
    error = client_error("ConditionalCheckFailedException", 400)
    with pytest.raises(ClientError) as raised, unavailable_is_retryable("close approval 'x'"):
        raise error
    assert raised.value is error

    with pytest.raises(VersionConflictError), unavailable_is_retryable("append"):
        raise VersionConflictError("t", 1)
