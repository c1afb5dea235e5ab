"""Which AWS errors mean "throttled, failing or unreachable: try again later".

Step Functions retries a step only on error names it knows, so every layer that talks to AWS must turn the
transient ones into :class:`~core.kernel.store.StoreUnavailableError` (the stores) or a retryable name (the
Lambda-boundary mapper) and let everything else fail loudly. This is the one place that decides which are
transient, so the stores and the mapper cannot disagree.

botocore is not imported: this module is on every Lambda's import path, and the errors are recognised by
their class names (botocore's own classes, matched only in ``botocore.exceptions``) and by the parsed
``exc.response`` every ``ClientError`` carries, which also lets tests and fakes speak the same shapes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.kernel.store import StoreError, StoreUnavailableError

TRANSIENT_CODES = frozenset(
    {
        # throttling (DynamoDB, S3, Secrets Manager, STS, Lambda, Step Functions, Bedrock ...)
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "BandwidthLimitExceeded",
        "SlowDown",
        # the service failed or timed out on its side
        "InternalServerError",
        "InternalServerException",
        "InternalError",
        "InternalFailure",
        "InternalServiceError",
        "InternalServiceErrorException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        # DynamoDB: another request with the same ClientRequestToken is still being applied
        "TransactionInProgressException",
    }
)
"""``Error.Code`` values that are transient whatever the HTTP status says (botocore's own retry lists, minus
``LimitExceededException``, which in Secrets Manager and others means a quota that waiting will not lift)."""

TRANSIENT_CANCELLATION_CODES = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded", "TransactionConflict"})
"""``CancellationReasons`` codes of a cancelled DynamoDB transaction that a retry can get past. ``None`` is the
code of the items that did nothing wrong; any other code (``ConditionalCheckFailed``, ``ValidationError``,
``ItemCollectionSizeLimitExceeded``) is a real answer, not a passing condition."""

TRANSIENT_BOTOCORE_TYPES = frozenset(
    {
        # ConnectionError and its subclasses: EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError,
        # SSLError, ConnectionClosedError's siblings.
        "ConnectionError",
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ProxyConnectionError",
        "SSLError",
        # HTTPClientError and its subclasses: ReadTimeoutError, ConnectionClosedError, ResponseStreamingError.
        "HTTPClientError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "ResponseStreamingError",
    }
)
"""botocore exception classes (or their bases) raised when no answer came back: the network, not the request."""

_BOTOCORE_MODULE = "botocore.exceptions"
_TRANSIENT_STATUS = 500
_TOO_MANY_REQUESTS = 429
_REASONS_IN_MESSAGE = re.compile(r"\[([A-Za-z, ]*)\]\s*$")


def transient_aws_error(exc: BaseException) -> str | None:
    """The AWS error code (or botocore exception name) when ``exc`` is safe to retry later, else ``None``.

    Transient means the request may well succeed unchanged a moment later:

    - a botocore network error: any class named in :data:`TRANSIENT_BOTOCORE_TYPES` in ``exc``'s MRO that
      lives in ``botocore.exceptions`` (so ``EndpointConnectionError``, ``ConnectTimeoutError``,
      ``ReadTimeoutError``, ``ConnectionClosedError``, ``ResponseStreamingError``, every ``ConnectionError``
      subclass); the answer is the class's own name;
    - a ``ClientError`` whose ``Error.Code`` is in :data:`TRANSIENT_CODES`; the answer is that code;
    - a ``ClientError`` answered with HTTP 429 or any status >= 500, whatever its code; the answer is the code,
      or the status when there is none;
    - a DynamoDB ``TransactionCanceledException`` whose ``CancellationReasons`` are only ``None`` and at least one
      of :data:`TRANSIENT_CANCELLATION_CODES`; the answer names them, e.g.
      ``"TransactionCanceledException(ThrottlingError)"``. Callers that give ``TransactionConflict`` its own
      meaning (a lost race: :class:`~core.kernel.store.VersionConflictError`) must check for it first.

    Everything else (validation, access denied, missing resources, conditional check failures, our own
    exceptions) is ``None``: retrying would only repeat it.
    """
    name = _transient_type(exc)
    if name is not None:
        return name
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    error = response.get("Error")
    code = str(error.get("Code", "") or "") if isinstance(error, dict) else ""
    if code == "TransactionCanceledException":
        return _transient_cancellation(exc, response)
    if code in TRANSIENT_CODES:
        return code
    metadata = response.get("ResponseMetadata")
    status = _status(metadata.get("HTTPStatusCode") if isinstance(metadata, dict) else None)
    if status >= _TRANSIENT_STATUS or status == _TOO_MANY_REQUESTS:
        return code or str(status)
    return None


@contextmanager
def unavailable_is_retryable(what: str) -> Iterator[None]:
    """Turn a transient AWS error raised inside the block into :class:`StoreUnavailableError`.

    ``what`` names the store operation (``"record the spend of agent 'x'"``); the message adds the AWS operation
    and the code, so an operator reading a failed execution knows which call was throttled or unreachable. Our own
    store errors and non-transient AWS errors pass through unchanged: they are answers, not weather.
    """
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        code = transient_aws_error(exc)
        if code is None:
            raise
        raise StoreUnavailableError(unavailable_message(what, exc, code)) from exc


def unavailable_message(what: str, exc: BaseException, code: str) -> str:
    """``could not <what>: TransactWriteItems answered ThrottlingException (...); safe to retry``."""
    operation = getattr(exc, "operation_name", None)
    answered = f"{operation} answered {code}" if operation else code
    return f"could not {what}: {answered} (throttled, failing or unreachable); safe to retry"


def _transient_type(exc: BaseException) -> str | None:
    """``exc``'s class name when it, or a base, is one of botocore's network errors."""
    for cls in type(exc).__mro__:
        if cls.__name__ in TRANSIENT_BOTOCORE_TYPES and cls.__module__ == _BOTOCORE_MODULE:
            return type(exc).__name__
    return None


def _transient_cancellation(exc: BaseException, response: dict[str, Any]) -> str | None:
    """``TransactionCanceledException(<codes>)`` when every reason is ``None`` or passing, else ``None``."""
    raw = response.get("CancellationReasons")
    if isinstance(raw, list):
        codes = [str(reason.get("Code") or "None") if isinstance(reason, dict) else "None" for reason in raw]
    else:
        # Some clients (and older botocore) keep the reasons only in the message: "... reasons [None, ThrottlingError]".
        match = _REASONS_IN_MESSAGE.search(str(exc))
        codes = [part.strip() or "None" for part in match.group(1).split(",")] if match else []
    passing = sorted({code for code in codes if code in TRANSIENT_CANCELLATION_CODES})
    if not passing or any(code != "None" and code not in TRANSIENT_CANCELLATION_CODES for code in codes):
        return None
    return f"TransactionCanceledException({', '.join(passing)})"


def _status(value: object) -> int:
    try:
        return int(value) if isinstance(value, int | str) else 0
    except ValueError:
        return 0
