"""The HTTP API (Factor 6): launch, inspect, list, pause, resume, cancel, message and answer threads.

API Gateway HTTP API, payload v2, behind the Lambda authorizer in ``functions/authorizer.py``. Each route parses
its request (pydantic, validated by Powertools), calls one core operation and returns; launching starts the
execution and returns at once, it never waits for the loop. Every error is JSON ``{"error", "detail"}`` with the
status that fits. The ``/thread`` routes speak the 12-factor-agents reference server's shapes, so its clients can
switch without changes. ``/threads/{id}/view`` and ``/threads/{id}/context`` show a thread's timeline and what the
model saw at a step (:mod:`functions.timeline`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Annotated, Any, Literal, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.api_gateway import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestUnsupportedContentType, RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from core import control, replay
from core.agent import Agent, UnknownAgentError
from core.approvals import (
    AlreadyDecidedError,
    ApprovalError,
    ApprovalNotFoundError,
    ArgsChangedError,
    Decision,
    InvalidDecisionError,
    LinkExpiredError,
    LinkSignatureError,
    ThreadEndedError,
    decide,
)
from core.events import (
    JSON,
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
from core.parsing import MAX_JSON_DEPTH, BadInputError, check_text, json_depth
from core.store.base import (
    InvalidCursorError,
    StoreUnavailableError,
    ThreadLister,
    ThreadNotFoundError,
    UnreadableThreadError,
    VersionConflictError,
)
from core.thread import Status, Thread, fold, summary
from functions._html import page
from functions._wiring import LEGACY_PRINCIPAL, SCOPES, Runtime, runtime
from functions.timeline import ModelView, ViewError, model_view, render_context, render_timeline

logger = Logger(service="stepfold")
app = APIGatewayHttpResolver(enable_validation=True)

MAX_BODY_BYTES = 256 * 1024
"""Larger request bodies are refused (413) before anything parses them."""
MAX_PAGE_BYTES = 4_000_000
"""An events page also stops here, so the response stays under Lambda's 6 MB."""
DEFAULT_CALLER = LEGACY_PRINCIPAL
RESERVED_LABELS = frozenset({"prompt_version", "idempotency_key"})

ThreadId = Annotated[str, Path(min_length=1, max_length=128, description="The thread's id (th_...).")]


# --- request and response bodies -----------------------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LaunchRequest(_Request):
    agent: str = Field(min_length=1, max_length=100, description="An agent name from GET /agents.")
    input: str = Field(description="What the agent should do.")
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=200, description="The same key returns the same thread."
    )
    labels: dict[str, str] = Field(default_factory=dict, max_length=20, description="Free metadata kept on the thread.")

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            if not key or len(key) > 64 or key in RESERVED_LABELS:
                raise ValueError(f"label {key[:64]!r} is reserved or not 1-64 characters")
            if len(value) > 256:
                raise ValueError(f"label {key!r} is longer than 256 characters")
        return labels


class ReasonRequest(_Request):
    reason: str = Field(default="", max_length=1000)


class MessageRequest(_Request):
    input: str = Field(description="More input for a thread that is done.")


class ResponseRequest(_Request):
    approval_id: str | None = Field(default=None, max_length=128, description="Defaults to what the thread awaits.")
    decision: Literal["approve", "reject", "edit", "answer"]
    comment: str = Field(default="", max_length=4000)
    args: dict[str, JSON] | None = Field(default=None, description="The edited arguments (decision 'edit').")
    answer: str | None = Field(default=None, max_length=20_000, description="The answer (decision 'answer').")
    note: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        validation_alias=AliasChoices("note", "by"),
        description="A display note, e.g. who you act for; recorded with the comment, never as the decider. "
        "The decision is recorded as made by the authenticated caller. ('by' is read as this note.)",
    )


class Launched(BaseModel):
    thread_id: str
    status: Status
    created: bool


class Pending(BaseModel):
    approval_id: str
    kind: Literal["approval", "question"]
    question: str
    tool: str | None = None
    args: dict[str, JSON] = Field(default_factory=dict)


class ThreadView(BaseModel):
    """The folded state of a thread (``core.thread.summary``) and what it waits for."""

    model_config = ConfigDict(extra="allow")

    thread_id: str
    agent: str
    status: Status
    steps: int
    events: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    consecutive_errors: int
    waiting_for: Literal["approval", "question"] | None
    approval_id: str | None
    answer: str | None
    failure: str | None
    failure_error: str | None = Field(
        default=None, description="The execution's error name when a system error ended the thread (retry it)."
    )
    labels: dict[str, str]
    pending: Pending | None = None

    @classmethod
    def of(cls, thread: Thread) -> ThreadView:
        state = fold(thread)
        request = state.open_request
        pending = None
        if request is not None:
            call = state.pending if state.pending is not None and state.pending.request == request else None
            pending = Pending(
                approval_id=request.approval_id,
                kind=request.kind,
                question=request.question,
                tool=call.call.tool if call else None,
                args=call.args if call else {},
            )
        return cls.model_validate({**summary(thread), "pending": pending})


class EventsPage(BaseModel):
    events: list[dict[str, Any]]
    next_after: int | None = Field(description="Pass as ?after= for the next page; null when there is no more.")


class ThreadRow(BaseModel):
    thread_id: str
    agent: str
    status: Status
    updated_at: AwareDatetime


class ThreadList(BaseModel):
    threads: list[ThreadRow]
    next_cursor: str | None


class ToolView(BaseModel):
    name: str
    policy: str = Field(description="auto, needs_approval, deny, or 'depends on args'.")
    idempotent: bool


class PromptView(BaseModel):
    id: str
    version: int
    hash: str


class AgentView(BaseModel):
    name: str
    description: str
    prompt: PromptView
    model: str
    tools: list[ToolView]


class AgentList(BaseModel):
    agents: list[AgentView]


class ErrorBody(BaseModel):
    error: str = Field(description="A stable code, e.g. thread_not_found, wrong_state, invalid_request.")
    detail: Any = Field(description="What was wrong and what to do instead.")


# the 12-factor-agents reference server's shapes


class CompatLaunch(_Request):
    message: str


class CompatApproval(_Request):
    type: Literal["approval"]
    approved: bool
    comment: str = Field(default="", max_length=4000)


class CompatResponse(_Request):
    type: Literal["response"]
    response: str = Field(max_length=20_000)


class CompatEvent(BaseModel):
    type: str
    data: Any


class CompatThread(BaseModel):
    thread_id: str
    status: Status
    events: list[CompatEvent]
    response_url: str
    awaitingHumanResponse: bool  # noqa: N815 - the reference server's name
    awaitingHumanApproval: bool  # noqa: N815


# --- routes ----------------------------------------------------------------------------------------------------

_DESCRIPTIONS = {
    400: "Bad request (empty input, bad cursor, wrong decision)",
    404: "Unknown thread, agent or approval",
    409: "The thread is in the wrong state for this",
    410: "The request for a human has expired",
    413: "Request body or input too large",
    422: "The body or query does not match the schema",
}


def _responses(*errors: int, ok: int = 200, description: str = "OK") -> dict[int, Any]:
    """OpenAPI responses: the success one (Powertools fills in the return model) and errors as ``ErrorBody``."""
    model = {"application/json": {"model": ErrorBody}}
    return {
        ok: {"description": description},
        **{c: {"description": _DESCRIPTIONS[c], "content": model} for c in errors},
    }


@app.post(
    "/threads",
    status_code=201,
    tags=["threads"],
    summary="Launch a thread",
    responses={
        **_responses(400, 404, 413, 422, ok=201, description="Launched"),
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


@app.get("/threads/<thread_id>", tags=["threads"], summary="A thread's state", responses=_responses(404, 422))
def get_thread(thread_id: ThreadId) -> ThreadView:
    return ThreadView.of(runtime().threads.load(thread_id))


@app.get("/threads/<thread_id>/events", tags=["threads"], summary="A thread's events", responses=_responses(404, 422))
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


class ContextPrompt(BaseModel):
    id: str
    version: int | None
    hash: str = Field(description="The prompt hash recorded on the model call.")
    current: bool = Field(description="False when the prompt file changed since the call: `system` is today's text.")


class ContextView(BaseModel):
    """What the model saw at one model call (Factor 3): the system prompt and the thread as rendered for it."""

    seq: int = Field(description="The model call's seq: the first one at or after the seq asked for.")
    step: int = Field(description="Which model call of the thread it is, from 1.")
    model: str
    prompt: ContextPrompt
    system: str | None = Field(description="The rendered system prompt; null when its file is gone.")
    context: str = Field(description="core.context.render of the events before the call, with the agent's options.")
    tokens: int = Field(description="The context's size by the agent's token counter.")
    max_tokens: int = Field(description="The agent's context budget.")
    input_tokens: int = Field(description="Input tokens the provider reported for the call.")
    tools: list[str]
    previous_seq: int | None
    next_seq: int | None

    @classmethod
    def of(cls, view: ModelView) -> ContextView:
        call = view.call
        return cls(
            seq=call.seq,
            step=view.step,
            model=call.model,
            prompt=ContextPrompt(
                id=view.prompt_id, version=view.prompt_version, hash=call.prompt_hash, current=view.prompt_current
            ),
            system=view.system,
            context=view.context,
            tokens=view.tokens,
            max_tokens=view.max_tokens,
            input_tokens=call.input_tokens,
            tools=list(view.tools),
            previous_seq=view.previous,
            next_seq=view.next,
        )


SeqQuery = Annotated[
    int | None, Query(ge=0, description="The first model call at or after this seq; the latest one when absent.")
]
_HTML_OK: dict[int, Any] = {
    200: {"description": "An HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}
}


@app.get(
    "/threads/<thread_id>/view",
    tags=["views"],
    summary="A thread's timeline, as an HTML page",
    responses={**_responses(404, 422), **_HTML_OK},
)
def thread_page(thread_id: ThreadId) -> Response[str]:
    return page(200, render_timeline(runtime().threads.load(thread_id)))


@app.get(
    "/threads/<thread_id>/context",
    tags=["views"],
    summary="What the model saw at a model call: system prompt and rendered context",
    responses=_responses(400, 404, 422),
)
def thread_context(thread_id: ThreadId, seq: SeqQuery = None) -> ContextView:
    return ContextView.of(_model_view(thread_id, seq))


@app.get(
    "/threads/<thread_id>/context.html",
    tags=["views"],
    summary="What the model saw at a model call, as an HTML page",
    responses={**_responses(400, 404, 422), **_HTML_OK},
)
def thread_context_page(thread_id: ThreadId, seq: SeqQuery = None) -> Response[str]:
    return page(200, render_context(_model_view(thread_id, seq)))


@app.get(
    "/threads", tags=["threads"], summary="List threads, most recently updated first", responses=_responses(400, 422)
)
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


@app.post(
    "/threads/<thread_id>/pause", tags=["control"], summary="Pause between steps", responses=_responses(404, 409, 422)
)
def pause_thread(thread_id: ThreadId, body: Annotated[ReasonRequest | None, Body()] = None) -> ThreadView:
    rt = runtime()
    reason = body.reason if body else ""
    return ThreadView.of(control.pause(rt.threads, thread_id, by=_caller(), reason=reason, clock=rt.clock))


@app.post(
    "/threads/<thread_id>/resume",
    tags=["control"],
    summary="Resume a paused thread",
    responses=_responses(404, 409, 422),
)
def resume_thread(thread_id: ThreadId) -> ThreadView:
    rt = runtime()
    return ThreadView.of(control.resume(rt.threads, rt.executions, thread_id, by=_caller(), clock=rt.clock))


@app.post(
    "/threads/<thread_id>/retry",
    tags=["control"],
    summary="Run a thread whose execution failed again, from where it stopped",
    description="Only a thread that failed on a system error (its `failure` names the error) can be retried; a new "
    "execution continues it, and an intent without a result is settled by the effect-ledger rules.",
    responses=_responses(404, 409, 422),
)
def retry_thread(thread_id: ThreadId) -> ThreadView:
    rt = runtime()
    return ThreadView.of(control.retry(rt.threads, rt.executions, thread_id, by=_caller(), clock=rt.clock))


@app.post(
    "/threads/<thread_id>/cancel",
    tags=["control"],
    summary="End a thread for good",
    responses=_responses(404, 409, 422),
)
def cancel_thread(thread_id: ThreadId, body: Annotated[ReasonRequest | None, Body()] = None) -> ThreadView:
    rt = runtime()
    reason = body.reason if body else ""
    return ThreadView.of(control.cancel(rt.threads, rt.waits, thread_id, by=_caller(), reason=reason, clock=rt.clock))


@app.post(
    "/threads/<thread_id>/messages",
    tags=["control"],
    summary="Add input to a thread that is done, and run it again",
    responses=_responses(400, 404, 409, 413, 422),
)
def add_message(thread_id: ThreadId, body: MessageRequest) -> ThreadView:
    rt = runtime()
    thread = control.add_message(rt.threads, rt.executions, thread_id, text=body.input, by=_caller(), clock=rt.clock)
    return ThreadView.of(thread)


class ForkRequest(_Request):
    at: int = Field(ge=1, description="Keep the original's first AT events; the fork goes on from there.")
    prompt_version: int | None = Field(default=None, ge=1, description="Re-pin the fork to this prompt version.")


@app.post(
    "/threads/<thread_id>/fork",
    status_code=201,
    tags=["control"],
    summary="Fork a thread at a seq and run the copy on its own (Factor 5: recovery is reloading events)",
    responses=_responses(400, 404, 422, ok=201, description="Forked"),
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


@app.post(
    "/threads/<thread_id>/responses",
    tags=["control"],
    summary="Answer what the thread waits for (approve, reject, edit, answer)",
    responses=_responses(400, 404, 409, 410, 422),
)
def respond(thread_id: ThreadId, body: ResponseRequest) -> ThreadView:
    rt = runtime()
    decision = Decision(
        decision=body.decision,
        by=_caller(),  # who the authorizer vouched for; the body cannot name someone else
        channel="api",
        comment=body.comment,
        note=body.note,
        args=body.args,
        answer=body.answer,
    )
    return ThreadView.of(_decide(rt, thread_id, body.approval_id, decision))


@app.get("/agents", tags=["agents"], summary="The agents this stack runs", responses=_responses(422))
def list_agents() -> AgentList:
    rt = runtime()
    return AgentList(agents=[_agent_view(rt, agent) for agent in rt.agents.values()])


@app.post(
    "/thread",
    tags=["compat"],
    summary="Reference server: launch the default agent",
    responses=_responses(400, 413, 422),
)
def compat_launch(body: CompatLaunch) -> CompatThread:
    rt = runtime()
    agent = rt.settings.default_agent
    launched = control.launch(rt.threads, rt.executions, rt.agents, agent=agent, text=body.message, clock=rt.clock)
    return _compat(launched.thread)


@app.get("/thread/<thread_id>", tags=["compat"], summary="Reference server: a thread", responses=_responses(404, 422))
def compat_thread(thread_id: ThreadId) -> CompatThread:
    return _compat(runtime().threads.load(thread_id))


@app.post(
    "/thread/<thread_id>/response",
    tags=["compat"],
    summary="Reference server: approve/reject, or answer",
    responses=_responses(400, 404, 409, 410, 422),
)
def compat_respond(
    thread_id: ThreadId, body: Annotated[CompatApproval | CompatResponse, Body(discriminator="type")]
) -> CompatThread:
    rt = runtime()
    thread = rt.threads.load(thread_id)
    state = fold(thread)
    waiting = state.open_request.kind if state.open_request and state.status not in ("done", "failed") else None
    by = _caller()
    if isinstance(body, CompatResponse) and waiting != "question" and state.status == "done":
        # Continuing a done thread is operating it, whichever route carries the message; the route's own scope
        # (approve, for answering a person's request) was checked before it ran.
        _require("operate")
    match body:
        case CompatApproval() if waiting == "approval":
            verdict: Literal["approve", "reject"] = "approve" if body.approved else "reject"
            thread = _decide(rt, thread_id, None, Decision(decision=verdict, by=by, comment=body.comment))
        case CompatResponse() if waiting == "question":
            thread = _decide(rt, thread_id, None, Decision(decision="answer", by=by, answer=body.response))
        case CompatResponse() if state.status == "done":
            thread = control.add_message(
                rt.threads, rt.executions, thread_id, text=body.response, by=by, clock=rt.clock
            )
        case _:
            raise CompatStateError(thread, body.type)
    return _compat(thread)


@app.get("/openapi.json", include_in_schema=False)
def openapi_document() -> Response[str]:
    return Response(200, "application/json", _openapi())


# --- the Lambda entry point ------------------------------------------------------------------------------------


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    refused = _scope_refusal(principal_of(event), required_scope(event))
    if refused is not None:
        logger.info("scope refused", extra={"detail": refused})
        return _plain_error(403, "forbidden", refused)
    size = _body_bytes(event)
    if size > MAX_BODY_BYTES:
        return _plain_error(413, "too_large", f"the request body is {size} bytes; the limit is {MAX_BODY_BYTES}")
    if _content_type(event).startswith("multipart/"):
        # Powertools would parse it as a file upload and fail with a bare ValueError (a 500) on a missing boundary
        return _plain_error(415, "unsupported_media_type", "send the body as application/json")
    problem = _unsafe_input(event)
    if problem is not None:
        return _plain_error(400, "invalid_body", problem)
    result: dict[str, Any] = app.resolve(event, context)
    return _with_security_headers(result)


SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff"}
"""On every response: a JSON error that echoes request text must never be sniffed into HTML by a browser."""


def _unsafe_input(event: Mapping[str, Any]) -> str | None:
    """Why the request cannot go to the resolver (a 400), or None.

    Two shapes of valid-looking input crash further down instead of failing validation: JSON nested deeply
    enough to exhaust the recursion limit (``json.loads`` or pydantic raise ``RecursionError``: a 500), and a
    ``\\ud800`` escape, which decodes to a lone surrogate that pydantic accepts as ``str`` and DynamoDB cannot
    encode (a 500 after the thread was half written). Both are refused here, before anything parses them.
    Bodies that are not JSON at all are left to the resolver, whose validation says where (422).
    """
    body = event.get("body")
    text = body if isinstance(body, str) else ""
    if text and event.get("isBase64Encoded"):
        try:
            text = base64.b64decode(text).decode("utf-8")
        except (binascii.Error, ValueError):
            return None  # the resolver answers 400 invalid_body for it
    try:
        if text.strip():
            if json_depth(text) > MAX_JSON_DEPTH:
                return f"the request body is nested deeper than {MAX_JSON_DEPTH} levels of arrays/objects; flatten it"
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            check_text(value, what="the request body")
        check_text(event.get("pathParameters") or {}, what="the request path")
        check_text(event.get("queryStringParameters") or {}, what="the query string")
    except BadInputError as exc:
        return str(exc)
    return None


def _with_security_headers(result: dict[str, Any]) -> dict[str, Any]:
    headers = result.get("headers")
    if not isinstance(headers, dict):
        headers = result["headers"] = {}
    present = {str(name).lower() for name in headers}
    for name, value in SECURITY_HEADERS.items():
        if name.lower() not in present:
            headers[name] = value
    return result


# --- helpers ---------------------------------------------------------------------------------------------------


class NotReadyError(ApprovalError):
    """The thread waits for a human, but the wait has not stored its request yet (a moment after the step)."""

    status = 409


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


class Principal(BaseModel):
    """Who is calling and what they may do, as the front door's authorizer vouched for it."""

    name: str
    scopes: frozenset[str]
    kind: Literal["key", "token"] = "key"


_APPROVE_PATH = re.compile(r"/threads/[^/]+/responses/?$|/thread/[^/]+/response/?$")
_JWT_NAME_CLAIMS = ("email", "cognito:username", "username", "preferred_username", "client_id", "sub")
"""The first of these a token carries names its principal (``email`` only when not marked unverified): readable in
the timeline where the issuer has it, the stable ``sub`` otherwise."""


def required_scope(event: Mapping[str, Any]) -> str:
    """The scope a request needs, by its method and path (issue 13).

    Decided before any route runs, so a route added later is covered by default: every GET reads, answering a
    person's request (``/threads/{id}/responses`` and the compat ``/thread/{id}/response``) approves, and every
    other call operates.
    """
    http = (event.get("requestContext") or {}).get("http") or {}
    method = str(http.get("method") or event.get("httpMethod") or "").upper()
    if method in ("GET", "HEAD", "OPTIONS"):
        return "read"
    path = str(event.get("rawPath") or http.get("path") or "")
    return "approve" if _APPROVE_PATH.search(path) else "operate"


def principal_of(event: Mapping[str, Any]) -> Principal:
    """The caller from the request context API Gateway built.

    ``authorizer.lambda`` is the Lambda authorizer's context (``caller`` and the space-separated ``scopes``; a
    context without ``scopes`` is the single-key authorizer of old, whose one key could do everything).
    ``authorizer.jwt`` is the JWT authorizer's (template.yaml ``JwtIssuer``): the name from the token's claims,
    the scopes from its ``scope``/``scp`` claim. No authorizer at all is a direct invocation (tests, the Lambda
    console: IAM decides who may invoke), treated as the single key. Any other authorizer grants nothing.
    """
    context = event.get("requestContext")
    authorizer = context.get("authorizer") if isinstance(context, Mapping) else None
    if authorizer is None:
        return Principal(name=DEFAULT_CALLER, scopes=frozenset(SCOPES))
    lam = authorizer.get("lambda") if isinstance(authorizer, Mapping) else None
    jwt = authorizer.get("jwt") if isinstance(authorizer, Mapping) else None
    if isinstance(jwt, Mapping):
        return _token_principal(jwt)
    if isinstance(lam, Mapping):
        caller = lam.get("caller")
        name = str(caller)[:200] if caller else DEFAULT_CALLER
        scopes = lam.get("scopes")
        return Principal(name=name, scopes=frozenset(SCOPES) if scopes is None else _scope_names(scopes))
    return Principal(name="unknown", scopes=frozenset())


def _token_principal(jwt: Mapping[str, Any]) -> Principal:
    claims = jwt.get("claims")
    claims = claims if isinstance(claims, Mapping) else {}
    name = next(
        (
            str(claims[claim])[:200]
            for claim in _JWT_NAME_CLAIMS
            if claims.get(claim) and not (claim == "email" and str(claims.get("email_verified")).lower() == "false")
        ),
        "unknown",
    )
    found = _scope_names(jwt.get("scopes")) | _scope_names(claims.get("scope")) | _scope_names(claims.get("scp"))
    return Principal(name=name, scopes=found, kind="token")


def _scope_names(value: Any) -> frozenset[str]:
    """Our scopes among ``value``: a space- or comma-separated string (API Gateway flattens a list claim to
    ``"[a b]"``) or a list. A resource-server prefix is dropped, as Cognito writes ``stepfold/read``."""
    if isinstance(value, str):
        items: list[Any] = value.strip().strip("[]").replace(",", " ").split()
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return frozenset()
    names = {re.split(r"[/:]", str(item).strip())[-1] for item in items}
    return frozenset(names & set(SCOPES))


def _scope_refusal(principal: Principal, scope: str) -> str | None:
    """Why ``principal`` may not do what needs ``scope`` (the 403's detail), or None when it may."""
    if scope in principal.scopes:
        return None
    held = [s for s in SCOPES if s in principal.scopes]
    may = f"may {_and(held)}" if held else "has no stepfold scope"
    what = "this key" if principal.kind == "key" else "this token"
    fix = (
        "use a key that has it (api_keys in the API keys secret)"
        if principal.kind == "key"
        else "ask the token's issuer for it (the scope or scp claim)"
    )
    return f"{what} ({principal.name}) {may}, not {scope}: {fix}"


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


class ScopeError(Exception):
    """The caller lacks a scope a route needs beyond the one its method and path already required."""

    status = 403


def _require(scope: str) -> None:
    refused = _scope_refusal(principal_of(app.current_event.raw_event), scope)
    if refused is not None:
        raise ScopeError(refused)


def _caller() -> str:
    """Who is calling: the principal the authorizer vouched for (recorded as ``by``; a body cannot name another)."""
    return principal_of(app.current_event.raw_event).name


def _decide(rt: Runtime, thread_id: str, approval_id: str | None, decision: Decision) -> Thread:
    """Apply a decision to the thread's open request (or the named one, which must belong to this thread)."""
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


def _model_view(thread_id: str, seq: int | None) -> ModelView:
    rt = runtime()
    thread = rt.threads.load(thread_id)
    agent = rt.agents.get(thread.agent)
    if agent is None:
        raise UnknownAgentError(thread.agent, sorted(rt.agents))
    return model_view(thread, agent, rt.prompts, seq)


def _agent_view(rt: Runtime, agent: Agent) -> AgentView:
    prompt = rt.prompts.load(agent.prompt_id, agent.prompt_version)
    tools = [
        ToolView(
            name=t.name, policy=t.policy if isinstance(t.policy, str) else "depends on args", idempotent=t.idempotent
        )
        for t in agent.tools
    ]
    return AgentView(
        name=agent.name,
        description=agent.description,
        prompt=PromptView(id=prompt.id, version=prompt.version, hash=prompt.short_hash),
        model=rt.model_for(agent),
        tools=tools,
    )


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


def _plain_error(status: int, error: str, detail: str) -> dict[str, Any]:
    """An error response made before the resolver runs."""
    body = json.dumps({"error": error, "detail": detail})
    headers = {"Content-Type": "application/json", **SECURITY_HEADERS}
    return {"statusCode": status, "headers": headers, "body": body, "isBase64Encoded": False}


def _content_type(event: Mapping[str, Any]) -> str:
    headers = event.get("headers") or {}
    return next((str(v).strip().lower() for k, v in headers.items() if k.lower() == "content-type"), "")


def _body_bytes(event: Mapping[str, Any]) -> int:
    body = event.get("body")
    if not isinstance(body, str):
        return 0
    return len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode())


@cache
def _openapi() -> str:
    # The OpenAPI models cost ~0.1 s to import: only GET /openapi.json pays for them.
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer  # noqa: PLC0415

    document: str = app.get_openapi_json_schema(
        title="stepfold",
        version="1",
        description="Launch, inspect, pause, resume and answer 12-factor agent threads.",
        security_schemes={
            "bearer": HTTPBearer(description="Authorization: Bearer <API key>"),
            "apiKey": APIKey(name="x-api-key", **{"in": APIKeyIn.header}),
        },
        security=[{"bearer": []}, {"apiKey": []}],
    )
    return document


# --- errors: every one is JSON {error, detail} -------------------------------------------------------------------

_CODES: dict[type[Exception], str] = {
    control.WrongStateError: "wrong_state",
    control.InputTooLargeError: "too_large",
    control.ControlError: "bad_request",
    NotReadyError: "not_ready",
    ApprovalNotFoundError: "approval_not_found",
    AlreadyDecidedError: "already_decided",
    ArgsChangedError: "args_changed",
    LinkExpiredError: "expired",
    LinkSignatureError: "forbidden",
    InvalidDecisionError: "invalid_decision",
    ThreadEndedError: "thread_ended",
    control.ReservedLabelError: "reserved_label",
    ApprovalError: "bad_request",
}


def _error(http_status: int, error: str, detail: Any, /, **extra: Any) -> Response[Any]:
    return Response(http_status, "application/json", {"error": error, "detail": detail, **extra})


_Handler = TypeVar("_Handler", bound=Callable[..., Response[Any]])


def _on(*kinds: type[Exception]) -> Callable[[_Handler], _Handler]:
    """``app.exception_handler`` with types mypy can see."""

    def register(handler: _Handler) -> _Handler:
        app.exception_handler(list(kinds))(handler)
        return handler

    return register


@_on(control.ControlError, ApprovalError)
def _refused(exc: control.ControlError | ApprovalError) -> Response[Any]:
    code = next(_CODES[cls] for cls in type(exc).__mro__ if cls in _CODES)
    return _error(exc.status, code, str(exc))


@_on(ScopeError)
def _forbidden(exc: ScopeError) -> Response[Any]:
    return _error(403, "forbidden", str(exc))


@_on(ThreadNotFoundError)
def _no_thread(exc: ThreadNotFoundError) -> Response[Any]:
    return _error(404, "thread_not_found", str(exc))


@_on(UnknownAgentError)
def _no_agent(exc: UnknownAgentError) -> Response[Any]:
    return _error(404, "agent_not_found", str(exc))


@_on(ViewError)
def _no_view(exc: ViewError) -> Response[Any]:
    return _error(exc.status, exc.code, str(exc))


@_on(CompatStateError)
def _compat_state(exc: CompatStateError) -> Response[Any]:
    request = exc.waiting_for
    return _error(
        400,
        "wrong_state",
        str(exc),
        status=exc.status,
        waiting_for=request,
        awaitingHumanResponse=request == "question" or exc.status == "done",
        awaitingHumanApproval=request == "approval",
    )


@_on(VersionConflictError)
def _conflict(exc: VersionConflictError) -> Response[Any]:
    return _error(409, "conflict", f"{exc}; it is busy, retry the request")


@_on(StoreUnavailableError)
def _unavailable(exc: StoreUnavailableError) -> Response[Any]:
    return _error(503, "unavailable", f"{exc}; retry in a few seconds")


@_on(UnreadableThreadError)
def _unreadable(exc: UnreadableThreadError) -> Response[Any]:
    logger.exception("a stored thread cannot be read")
    return _error(
        500,
        "thread_unreadable",
        f"thread {exc.thread_id} cannot be read: its stored event {exc.seq} or that event's payload is missing or "
        "damaged; it is marked failed, and the logs name the item to restore",
    )


@_on(InvalidCursorError)
def _bad_cursor(exc: InvalidCursorError) -> Response[Any]:
    return _error(400, "invalid_cursor", str(exc))


@_on(RequestValidationError)
def _invalid(exc: RequestValidationError) -> Response[Any]:
    detail = [{"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg", "")} for e in exc.errors()]
    return _error(422, "invalid_request", detail)


@_on(RequestUnsupportedContentType)
def _media_type(exc: RequestUnsupportedContentType) -> Response[Any]:
    return _error(415, "unsupported_media_type", "send the body as application/json")


@_on(binascii.Error, UnicodeDecodeError)
def _undecodable(exc: Exception) -> Response[Any]:
    return _error(400, "invalid_body", "the body is not valid base64-encoded UTF-8")


@_on(ServiceError)
def _service(exc: ServiceError) -> Response[Any]:
    if exc.status_code >= 500:  # a 5xx never carries exception text: it is logged, the caller gets the request id
        return _internal(exc)
    return _error(exc.status_code, "bad_request", exc.msg)


@_on(NotFoundError)
def _no_route(exc: NotFoundError) -> Response[Any]:
    event = app.current_event
    return _error(404, "not_found", f"no route {event.http_method} {event.path}; see GET /openapi.json")


@_on(Exception)
def _internal(exc: Exception) -> Response[Any]:
    logger.exception("unhandled error")
    request_id = app.current_event.request_context.request_id
    return _error(500, "internal", f"something failed on our side (request {request_id}); it was logged")
