"""How the HTTP API answers what went wrong: every error is JSON ``{"error", "detail"}`` with the status that fits.

The API's own exceptions are defined here, and each exception a route can raise (the core's refusals, the store's
faults, Powertools' validation) is mapped to its status and stable ``error`` code in this one place, :data:`ANSWERS`
(the core's exceptions carry no HTTP status: ARCHITECTURE.md, "HTTP statuses belong to handlers"). The handlers
sit on a Powertools ``Router`` with no routes: ``functions/api.py`` includes it, which merges them into the one
resolver's handlers, so they apply to every route module alike.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.api_gateway import Response, Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestUnsupportedContentType, RequestValidationError

from core.kernel.agent import UnknownAgentError
from core.kernel.store import (
    InvalidCursorError,
    StoreUnavailableError,
    ThreadNotFoundError,
    UnreadableThreadError,
    VersionConflictError,
)
from core.kernel.thread import Thread, fold
from core.services import control
from core.services.approvals import (
    AlreadyDecidedError,
    ApprovalError,
    ApprovalNotFoundError,
    ArgsChangedError,
    InvalidDecisionError,
    LinkExpiredError,
    LinkSignatureError,
    ThreadEndedError,
)
from functions._statuses import lookup
from functions.timeline import ViewError

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

logger = Logger(service="stepfold")
router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves Router.__init__ unannotated


# --- the API's own errors ---------------------------------------------------------------------------------------


class NotReadyError(ApprovalError):
    """The thread waits for a human, but the wait has not stored its request yet (a moment after the step)."""


class CompatStateError(Exception):
    """A reference-server response that does not fit what the thread waits for."""

    def __init__(self, thread: Thread, sent: str) -> None:
        state = fold(thread)
        request = state.open_request if state.status not in ("done", "failed") else None
        self.status = state.status
        self.waiting_for = request.kind if request else None
        if request is not None and request.kind == "approval":
            need = 'is waiting for an approval: send {"type": "approval", "approved": true|false, "comment"?}'
        elif request is not None:
            need = f'is waiting for an answer to {request.question!r}: send {{"type": "response", "response": "..."}}'
        elif state.status == "done":
            need = 'is done: send {"type": "response", "response": "..."} to continue it'
        else:
            need = f"is {state.status} and not waiting for a person"
        super().__init__(f"thread {thread.id} {need}; got a {sent!r}")


class ScopeError(Exception):
    """The caller lacks a scope a route needs beyond the one its method and path already required."""


# --- each exception as a response: the one table ----------------------------------------------------------------

ANSWERS: dict[type[Exception], tuple[int, str]] = {
    # the operations' refusals (core/services/control.py)
    control.ControlError: (400, "bad_request"),
    control.WrongStateError: (409, "wrong_state"),
    control.InputTooLargeError: (413, "too_large"),
    control.ReservedLabelError: (422, "reserved_label"),
    # answering what a thread waits for (core/services/approvals.py)
    ApprovalError: (400, "bad_request"),
    ApprovalNotFoundError: (404, "approval_not_found"),
    LinkSignatureError: (403, "forbidden"),
    LinkExpiredError: (410, "expired"),
    AlreadyDecidedError: (409, "already_decided"),
    ArgsChangedError: (409, "args_changed"),
    InvalidDecisionError: (400, "invalid_decision"),
    ThreadEndedError: (409, "thread_ended"),
    # the stores and the agent registry (core/kernel)
    ThreadNotFoundError: (404, "thread_not_found"),
    UnknownAgentError: (404, "agent_not_found"),
    InvalidCursorError: (400, "invalid_cursor"),
    VersionConflictError: (409, "conflict"),
    StoreUnavailableError: (503, "unavailable"),
    UnreadableThreadError: (500, "thread_unreadable"),
    # the API's own, and what Powertools or the runtime raise on a malformed request
    NotReadyError: (409, "not_ready"),
    CompatStateError: (400, "wrong_state"),
    ScopeError: (403, "forbidden"),
    RequestValidationError: (422, "invalid_request"),
    RequestUnsupportedContentType: (415, "unsupported_media_type"),
    binascii.Error: (400, "invalid_body"),
    UnicodeDecodeError: (400, "invalid_body"),
}
"""Every exception a route answers, by type: its HTTP status and stable ``error`` code (ARCHITECTURE.md, "HTTP
statuses belong to handlers"). Looked up along the MRO (:func:`functions._statuses.lookup`), so a subclass answers
as its nearest mapped base; one that nothing maps is answered by :func:`_internal` (500, logged), never as a success.
Powertools' own ``ServiceError`` carries its status, and :class:`functions.timeline.ViewError` its status and code."""


def _error(http_status: int, error: str, detail: Any, /, **extra: Any) -> Response[Any]:
    return Response(http_status, "application/json", {"error": error, "detail": detail, **extra})


def _answer(exc: Exception, detail: Any, /, **extra: Any) -> Response[Any]:
    """``exc`` answered with its row of :data:`ANSWERS`; an exception without one is a bug here: a logged 500."""
    found = lookup(ANSWERS, type(exc))
    if found is None:
        return _internal(exc)
    http_status, code = found
    return _error(http_status, code, detail, **extra)


_Handler = TypeVar("_Handler", bound=Callable[..., Response[Any]])


def _on(*kinds: type[Exception]) -> Callable[[_Handler], _Handler]:
    """``router.exception_handler`` with types mypy can see."""

    def register(handler: _Handler) -> _Handler:
        router.exception_handler(list(kinds))(handler)
        return handler

    return register


@_on(control.ControlError, ApprovalError, ScopeError, ThreadNotFoundError, UnknownAgentError, InvalidCursorError)
def _refused(exc: Exception) -> Response[Any]:
    return _answer(exc, str(exc))


@_on(ViewError)
def _no_view(exc: ViewError) -> Response[Any]:
    return _error(exc.status, exc.code, str(exc))


@_on(CompatStateError)
def _compat_state(exc: CompatStateError) -> Response[Any]:
    request = exc.waiting_for
    return _answer(
        exc,
        str(exc),
        status=exc.status,
        waiting_for=request,
        awaitingHumanResponse=request == "question" or exc.status == "done",
        awaitingHumanApproval=request == "approval",
    )


@_on(VersionConflictError)
def _conflict(exc: VersionConflictError) -> Response[Any]:
    return _answer(exc, f"{exc}; it is busy, retry the request")


@_on(StoreUnavailableError)
def _unavailable(exc: StoreUnavailableError) -> Response[Any]:
    return _answer(exc, f"{exc}; retry in a few seconds")


@_on(UnreadableThreadError)
def _unreadable(exc: UnreadableThreadError) -> Response[Any]:
    logger.exception("a stored thread cannot be read")
    return _answer(
        exc,
        f"thread {exc.thread_id} cannot be read: its stored event {exc.seq} or that event's payload is missing or "
        "damaged; it is marked failed, and the logs name the item to restore",
    )


@_on(RequestValidationError)
def _invalid(exc: RequestValidationError) -> Response[Any]:
    detail = [{"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg", "")} for e in exc.errors()]
    return _answer(exc, detail)


@_on(RequestUnsupportedContentType)
def _media_type(exc: RequestUnsupportedContentType) -> Response[Any]:
    return _answer(exc, "send the body as application/json")


@_on(binascii.Error, UnicodeDecodeError)
def _undecodable(exc: Exception) -> Response[Any]:
    return _answer(exc, "the body is not valid base64-encoded UTF-8")


@_on(ServiceError)
def _service(exc: ServiceError) -> Response[Any]:
    if exc.status_code >= 500:  # a 5xx never carries exception text: it is logged, the caller gets the request id
        return _internal(exc)
    return _error(exc.status_code, "bad_request", exc.msg)


@_on(NotFoundError)
def _no_route(exc: NotFoundError) -> Response[Any]:
    event = router.current_event
    return _error(404, "not_found", f"no route {event.http_method} {event.path}; see GET /openapi.json")


@_on(Exception)
def _internal(exc: Exception) -> Response[Any]:
    logger.exception("unhandled error")
    event = cast("APIGatewayProxyEventV2", router.current_event)  # the one resolver is an APIGatewayHttpResolver
    request_id = event.request_context.request_id
    return _error(500, "internal", f"something failed on our side (request {request_id}); it was logged")
