"""The error names that may cross the Lambda boundary into Step Functions (ARCHITECTURE.md, "Errors").

Step Functions matches a Retry or Catch against the Lambda's ``errorType``, which the Python runtime sets to the
exception's exact class name, with no subclass matching. An adapter that raises ``RetryableHTTPError`` where the
state machine retries ``RetryableLLMError`` would fail the execution on the first 429. So every handler that a
Task state runs is wrapped in :func:`boundary`, which maps whatever it raised to one name of a small closed set
(:data:`CONTRACT`) and keeps the original type and message in the error message (the Step Functions cause).
``tests/infra/test_error_contract.py`` derives the raisable names from the code and checks every Task state that
runs our code retries each retryable one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final, TypeVar

from core.adapters.store.transient import transient_aws_error
from core.kernel.errors import compact_exception
from core.kernel.model import RetryableLLMError
from core.kernel.store import StoreUnavailableError, VersionConflictError
from core.kernel.tools import ToolUnavailableError
from core.services.notify import NotifyError


class BoundaryError(Exception):
    """An error as Step Functions sees it: the class name is the ``errorType`` a Retry or Catch matches."""

    retryable: bool = False


class ModelUnavailable(BoundaryError):  # noqa: N818 - the name is the Step Functions error name
    """The model provider is throttled, overloaded, failing or unreachable: retried with backoff."""

    retryable = True


class DependencyUnavailable(BoundaryError):  # noqa: N818
    """DynamoDB, S3, Secrets Manager or another AWS API, or a tool's MCP server, is throttled, failing or unreachable:
    retried."""

    retryable = True


class ConcurrentWrite(BoundaryError):  # noqa: N818
    """Another writer appended to the thread first: retried; the retry reads the thread again."""

    retryable = True


class NotifyFailed(BoundaryError):  # noqa: N818
    """Every notification channel failed for a human request: retried with a fresh task token."""

    retryable = True


class Unrecoverable(BoundaryError):  # noqa: N818
    """Anything else (a refused model request, corrupt data, a bug): not retried; the thread is marked failed."""


CONTRACT: Final[tuple[type[BoundaryError], ...]] = (
    ModelUnavailable,
    DependencyUnavailable,
    ConcurrentWrite,
    NotifyFailed,
    Unrecoverable,
)
"""Every name our handlers can raise to Step Functions."""

RETRYABLE_NAMES: Final[frozenset[str]] = frozenset(c.__name__ for c in CONTRACT if c.retryable)

LAMBDA_FAULTS: Final[tuple[str, ...]] = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.Unknown",
    "Sandbox.Timedout",
    "Runtime.ExitError",
    "Runtime.OutOfMemory",
)
"""Names the Lambda service and runtime raise on their own (the invocation may not have run, or died mid-way):
retried like our own transient names, because every handler a Task state runs is retry-safe."""


def classify(exc: BaseException) -> type[BoundaryError]:
    """The contract name for ``exc``: its transient kind if it has one, else :class:`Unrecoverable`."""
    named = next((c for c in CONTRACT if isinstance(exc, c)), None)
    if named is not None:
        return named
    if isinstance(exc, RetryableLLMError):
        return ModelUnavailable
    if isinstance(exc, VersionConflictError):
        return ConcurrentWrite
    if isinstance(exc, StoreUnavailableError | ToolUnavailableError):
        return DependencyUnavailable
    if isinstance(exc, NotifyError):
        return NotifyFailed
    if transient_aws_error(exc) is not None:
        return DependencyUnavailable
    return Unrecoverable


H = TypeVar("H", bound=Callable[..., Any])


def boundary(logger: Any) -> Callable[[H], H]:
    """Wrap a Task state's handler so only :data:`CONTRACT` names leave it.

    ``logger`` (the handler's Powertools logger) records the original error before it is renamed: a transient one
    as a one-line warning (Step Functions retries it; a traceback per retry would drown the logs), anything else
    with its traceback. The renamed error's message is ``OriginalType: message``, which Step Functions shows as
    the cause.
    """

    def wrap(handler: H) -> H:
        @functools.wraps(handler)
        def guarded(event: Any, context: Any) -> Any:
            try:
                return handler(event, context)
            except Exception as exc:
                named = classify(exc)
                if type(exc) is named:
                    raise
                fields = {"error": named.__name__, "original": type(exc).__name__}
                if named.retryable:
                    logger.warning(f"retryable: {compact_exception(exc)}", extra=fields)
                else:
                    logger.exception("the task failed for good", extra=fields)
                raise named(compact_exception(exc)) from exc

        guarded.__stepfold_boundary__ = True  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    return wrap
