"""The 12-factor-agents reference server's API (mounted at ``/thread``), so its clients can switch without changes.

Its shapes (``models.Compat*``) and its answer route: one ``POST /thread/{id}/response`` that approves, rejects,
answers or, on a done thread, continues it, depending on what the thread waits for. Events are shown as
``{type, data}``, bookkeeping events left out.
"""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from core.kernel.events import (
    Done,
    Error,
    Event,
    Failed,
    HumanRequest,
    HumanResponse,
    LLMCall,
    ToolCall,
    ToolResult,
    ToolStarted,
    UserInput,
    dump_event,
)
from core.kernel.thread import Thread, fold
from core.services import control
from core.services.approvals import Decision
from functions._wiring import runtime
from functions.routes.access import caller, require
from functions.routes.errors import CompatStateError
from functions.routes.models import (
    CompatApproval,
    CompatEvent,
    CompatLaunch,
    CompatResponse,
    CompatThread,
    ThreadId,
    documented,
)
from functions.routes.responses import decide_for

router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves Router.__init__ unannotated


@router.post(
    "/",
    tags=["compat"],
    summary="Reference server: launch STEPFOLD_DEFAULT_AGENT (the reference API names no agent)",
    responses=documented(400, 413, 422),
)
def compat_launch(body: CompatLaunch) -> CompatThread:
    rt = runtime()
    agent = rt.settings.default_agent
    launched = control.launch(rt.threads, rt.executions, rt.agents, agent=agent, text=body.message, clock=rt.clock)
    return _compat(launched.thread)


@router.get("/<thread_id>", tags=["compat"], summary="Reference server: a thread", responses=documented(404, 422))
def compat_thread(thread_id: ThreadId) -> CompatThread:
    return _compat(runtime().threads.load(thread_id))


@router.post(
    "/<thread_id>/response",
    tags=["compat"],
    summary="Reference server: approve/reject, or answer",
    responses=documented(400, 404, 409, 410, 422),
)
def compat_respond(
    thread_id: ThreadId, body: Annotated[CompatApproval | CompatResponse, Body(discriminator="type")]
) -> CompatThread:
    rt = runtime()
    thread = rt.threads.load(thread_id)
    state = fold(thread)
    waiting = state.open_request.kind if state.open_request and state.status not in ("done", "failed") else None
    by = caller(router)
    if isinstance(body, CompatResponse) and waiting != "question" and state.status == "done":
        # Continuing a done thread is operating it, whichever route carries the message; the route's own scope
        # (approve, for answering a person's request) was checked before it ran.
        require(router, "operate")
    match body:
        case CompatApproval() if waiting == "approval":
            verdict: Literal["approve", "reject"] = "approve" if body.approved else "reject"
            thread = decide_for(rt, thread_id, None, Decision(decision=verdict, by=by, comment=body.comment))
        case CompatResponse() if waiting == "question":
            thread = decide_for(rt, thread_id, None, Decision(decision="answer", by=by, answer=body.response))
        case CompatResponse() if state.status == "done":
            thread = control.add_message(
                rt.threads, rt.executions, thread_id, text=body.response, by=by, clock=rt.clock
            )
        case _:
            raise CompatStateError(thread, body.type)
    return _compat(thread)


def _compat(thread: Thread) -> CompatThread:
    """A thread as the reference server shows it: ``{type, data}`` events, bookkeeping events left out."""
    state = fold(thread)
    request = state.open_request if state.status not in ("done", "failed") else None
    return CompatThread(
        thread_id=thread.id,
        status=state.status,
        events=[view for view in map(_compat_event, thread.events) if view is not None],
        response_url=f"/thread/{thread.id}/response",
        awaitingHumanResponse=(request is not None and request.kind == "question") or state.status == "done",
        awaitingHumanApproval=request is not None and request.kind == "approval",
    )


def _compat_event(event: Event) -> CompatEvent | None:
    match event:
        case LLMCall() | ToolStarted() | Done():
            return None  # bookkeeping; the done_for_now tool call carries the answer
        case UserInput():
            return CompatEvent(type="user_input", data=event.text)
        case ToolCall():
            return CompatEvent(type="tool_call", data={"intent": event.tool, **event.args})
        case ToolResult():
            return CompatEvent(type="tool_response", data=event.result)
        case Error():
            return CompatEvent(type="error", data=event.message)
        case HumanRequest():
            return CompatEvent(type="human_request", data={"kind": event.kind, "question": event.question})
        case HumanResponse() if event.answer is not None:
            return CompatEvent(type="human_response", data=event.answer)
        case HumanResponse():
            return CompatEvent(type="human_response", data={"decision": event.decision, "comment": event.comment})
        case Failed():
            return CompatEvent(type="failed", data=event.reason)
        case _:
            data = {k: v for k, v in dump_event(event).items() if k not in ("type", "seq", "ts", "v")}
            return CompatEvent(type=event.type, data=data)
