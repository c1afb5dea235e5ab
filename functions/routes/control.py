"""Control (mounted at ``/threads``): pause, resume, retry, cancel, message and fork a thread.

Each is one ``core.services.control`` (or ``core.services.replay``) operation recorded as done by the authenticated
caller; the
thread's state decides whether it is allowed (409 when not: ARCHITECTURE.md "Every end" and "Recovery").
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Response, Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from core.services import control, replay
from functions._wiring import runtime
from functions.routes.access import caller
from functions.routes.models import ForkRequest, MessageRequest, ReasonRequest, ThreadId, ThreadView, documented

router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves Router.__init__ unannotated


@router.post("/<thread_id>/pause", tags=["control"], summary="Pause between steps", responses=documented(404, 409, 422))
def pause_thread(thread_id: ThreadId, body: Annotated[ReasonRequest | None, Body()] = None) -> ThreadView:
    rt = runtime()
    reason = body.reason if body else ""
    return ThreadView.of(control.pause(rt.threads, thread_id, by=caller(router), reason=reason, clock=rt.clock))


@router.post(
    "/<thread_id>/resume",
    tags=["control"],
    summary="Resume a paused thread",
    responses=documented(404, 409, 422),
)
def resume_thread(thread_id: ThreadId) -> ThreadView:
    rt = runtime()
    return ThreadView.of(control.resume(rt.threads, rt.executions, thread_id, by=caller(router), clock=rt.clock))


@router.post(
    "/<thread_id>/retry",
    tags=["control"],
    summary="Run a thread whose execution failed again, from where it stopped",
    description="Only a thread that failed on a system error (its `failure` names the error) can be retried; a new "
    "execution continues it, and an intent without a result is settled by the effect-ledger rules.",
    responses=documented(404, 409, 422),
)
def retry_thread(thread_id: ThreadId) -> ThreadView:
    rt = runtime()
    return ThreadView.of(control.retry(rt.threads, rt.executions, thread_id, by=caller(router), clock=rt.clock))


@router.post(
    "/<thread_id>/cancel",
    tags=["control"],
    summary="End a thread for good",
    responses=documented(404, 409, 422),
)
def cancel_thread(thread_id: ThreadId, body: Annotated[ReasonRequest | None, Body()] = None) -> ThreadView:
    rt = runtime()
    reason = body.reason if body else ""
    thread = control.cancel(rt.threads, rt.waits, thread_id, by=caller(router), reason=reason, clock=rt.clock)
    return ThreadView.of(thread)


@router.post(
    "/<thread_id>/messages",
    tags=["control"],
    summary="Add input to a thread that is done, and run it again",
    responses=documented(400, 404, 409, 413, 422),
)
def add_message(thread_id: ThreadId, body: MessageRequest) -> ThreadView:
    rt = runtime()
    by = caller(router)
    thread = control.add_message(rt.threads, rt.executions, thread_id, text=body.input, by=by, clock=rt.clock)
    return ThreadView.of(thread)


@router.post(
    "/<thread_id>/fork",
    status_code=201,
    tags=["control"],
    summary="Fork a thread at a seq and run the copy on its own (Factor 5: recovery is reloading events)",
    responses=documented(400, 404, 422, ok=201, description="Forked"),
)
def fork_thread(thread_id: ThreadId, body: ForkRequest) -> Response[ThreadView]:
    rt = runtime()
    original = rt.threads.load(thread_id)
    forked = replay.fork(
        rt.threads,
        thread_id,
        body.at,
        new_id=control.thread_id_for(original.agent, None),
        prompt_version=body.prompt_version,
        executions=rt.executions,
        agents=rt.agents,
        prompts=rt.prompts,
    )
    return Response(201, "application/json", ThreadView.of(forked))
