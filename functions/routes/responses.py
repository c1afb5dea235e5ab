"""Responses (mounted at ``/threads``): answer what a thread waits for: approve, reject, edit, or answer.

The decision goes through ``core.services.approvals.decide``, the same path the approval links take, recorded as made by
the authenticated caller (a ``note`` in the body is only a display note).
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from core.kernel.thread import Thread, fold
from core.services import control
from core.services.approvals import ApprovalNotFoundError, Decision, decide
from functions._wiring import Runtime, runtime
from functions.routes.access import caller
from functions.routes.errors import NotReadyError
from functions.routes.models import ResponseRequest, ThreadId, ThreadView, documented

router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves Router.__init__ unannotated


@router.post(
    "/<thread_id>/responses",
    tags=["control"],
    summary="Answer what the thread waits for (approve, reject, edit, answer)",
    responses=documented(400, 404, 409, 410, 422),
)
def respond(thread_id: ThreadId, body: ResponseRequest) -> ThreadView:
    decision = Decision(
        decision=body.decision,
        by=caller(router),  # who the authorizer vouched for; the body cannot name someone else
        channel="api",
        comment=body.comment,
        note=body.note,
        args=body.args,
        answer=body.answer,
    )
    return ThreadView.of(decide_for(runtime(), thread_id, body.approval_id, decision))


def decide_for(rt: Runtime, thread_id: str, approval_id: str | None, decision: Decision) -> Thread:
    """Apply a decision to the thread's open request (or the named one, which must belong to this thread).

    The compat API answers through here too, so both check that the approval is this thread's.
    """
    thread = rt.threads.load(thread_id)
    state = fold(thread)
    request = state.open_request
    if approval_id is None:
        if request is None:
            raise control.WrongStateError(f"thread {thread_id} is {state.status}; nothing is waiting for a response")
        approval_id = request.approval_id
    try:
        approval = rt.approvals.get(approval_id)
    except ApprovalNotFoundError:
        if request is not None and request.approval_id == approval_id:
            raise NotReadyError("the request for a human is still being recorded; retry in a second") from None
        raise ApprovalNotFoundError(f"thread {thread_id} has no approval {approval_id!r}") from None
    if approval.thread_id != thread_id:
        raise ApprovalNotFoundError(f"thread {thread_id} has no approval {approval_id!r}")
    return decide(
        approval_id,
        decision,
        threads=rt.threads,
        approvals=rt.approvals,
        agents=rt.agents,
        tokens=rt.sfn,
        clock=rt.clock,
    )
