"""Threads (mounted at ``/threads``): launch one, list them, read one's state and its events.

Launching starts the execution and returns at once; it never waits for the loop.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Response, Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from core.kernel.events import dump_event
from core.kernel.store import ThreadLister
from core.kernel.thread import Status, fold
from core.services import control
from functions._wiring import runtime
from functions.routes.models import (
    EventsPage,
    Launched,
    LaunchRequest,
    ThreadId,
    ThreadList,
    ThreadRow,
    ThreadView,
    documented,
)

MAX_PAGE_BYTES = 4_000_000
"""An events page also stops here, so the response stays under Lambda's 6 MB."""

router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves Router.__init__ unannotated


@router.post(
    "/",
    status_code=201,
    tags=["threads"],
    summary="Launch a thread",
    responses={
        **documented(400, 404, 413, 422, ok=201, description="Launched"),
        200: {"description": "This idempotency key already launched this thread"},
    },
)
def launch_thread(body: LaunchRequest) -> Response[Launched]:
    rt = runtime()
    result = control.launch(
        rt.threads,
        rt.executions,
        rt.agents,
        agent=body.agent,
        text=body.input,
        clock=rt.clock,
        idempotency_key=body.idempotency_key,
        labels=body.labels,
    )
    view = Launched(thread_id=result.thread.id, status=fold(result.thread).status, created=result.created)
    return Response(201 if result.created else 200, "application/json", view)


@router.get("/", tags=["threads"], summary="List threads, most recently updated first", responses=documented(400, 422))
def list_threads(
    status: Annotated[Status | None, Query()] = None,
    agent: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=4096, description="next_cursor of the previous page.")] = None,
) -> ThreadList:
    threads = runtime().threads
    if not isinstance(threads, ThreadLister):
        raise NotImplementedError(f"{type(threads).__name__} cannot list threads")
    rows, next_cursor = threads.list_threads(status=status, agent=agent, limit=limit, cursor=cursor)
    return ThreadList(
        threads=[
            ThreadRow(thread_id=r.thread_id, agent=r.agent, status=r.status, updated_at=r.updated_at) for r in rows
        ],
        next_cursor=next_cursor,
    )


@router.get("/<thread_id>", tags=["threads"], summary="A thread's state", responses=documented(404, 422))
def get_thread(thread_id: ThreadId) -> ThreadView:
    return ThreadView.of(runtime().threads.load(thread_id))


@router.get("/<thread_id>/events", tags=["threads"], summary="A thread's events", responses=documented(404, 422))
def thread_events(
    thread_id: ThreadId,
    after: Annotated[int, Query(ge=-1, description="Events with a greater seq; -1 for all.")] = -1,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> EventsPage:
    thread = runtime().threads.load(thread_id)
    events: list[dict[str, Any]] = []
    size = 0
    for event in thread.events[after + 1 : after + 1 + limit]:
        dumped = dump_event(event)
        size += len(json.dumps(dumped, default=str))
        if events and size > MAX_PAGE_BYTES:
            break
        events.append(dumped)
    last = after + len(events)
    return EventsPage(events=events, next_after=last if events and last + 1 < thread.version else None)
