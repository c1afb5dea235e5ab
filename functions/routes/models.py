"""What the HTTP API's OpenAPI document says: request and response bodies, parameters and documented errors.

Every route module takes its pydantic models from here, so the document's components are defined once and their
names (the class names) stay those the served ``/openapi.json`` has always had. A response model that is a view of
a core value (``ThreadView``, ``ContextView``) builds itself from it with ``of``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from core.kernel.events import JSON
from core.kernel.thread import Status, Thread, fold, summary
from functions.timeline import ModelView

RESERVED_LABELS = frozenset({"prompt_version", "idempotency_key"})

ThreadId = Annotated[str, Path(min_length=1, max_length=128, description="The thread's id (th_...).")]
SeqQuery = Annotated[
    int | None, Query(ge=0, description="The first model call at or after this seq; the latest one when absent.")
]


# --- request bodies --------------------------------------------------------------------------------------------


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


class ForkRequest(_Request):
    at: int = Field(ge=1, description="Keep the original's first AT events; the fork goes on from there.")
    prompt_version: int | None = Field(default=None, ge=1, description="Re-pin the fork to this prompt version.")


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


# --- response bodies -------------------------------------------------------------------------------------------


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
    """The folded state of a thread (``core.kernel.thread.summary``) and what it waits for."""

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
    data: dict[str, Any] | None = Field(
        default=None,
        description="The typed answer of a done thread whose agent declares one (the done event's data): what a "
        "parent workflow branches on.",
    )
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
    context: str = Field(
        description="core.kernel.context.render of the events before the call, with the agent's options."
    )
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


# --- the 12-factor-agents reference server's shapes ------------------------------------------------------------


class CompatLaunch(_Request):
    message: str = Field(
        description="What the agent should do. The reference server names no agent: this starts "
        "STEPFOLD_DEFAULT_AGENT (the first registered agent unless set; GET /agents lists them)."
    )


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
    awaitingHumanResponse: bool = Field(  # noqa: N815 - the reference server's name
        description="As the reference server: a question waits for an answer, or the thread is done and takes the "
        "next message (POST the response to continue it). Not true for a failed or cancelled thread."
    )
    awaitingHumanApproval: bool = Field(description="A tool call waits for approval.")  # noqa: N815


# --- documented responses --------------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    error: str = Field(description="A stable code, e.g. thread_not_found, wrong_state, invalid_request.")
    detail: Any = Field(description="What was wrong and what to do instead.")


_DESCRIPTIONS = {
    400: "Bad request (empty input, bad cursor, wrong decision)",
    404: "Unknown thread, agent or approval",
    409: "The thread is in the wrong state for this",
    410: "The request for a human has expired",
    413: "Request body or input too large",
    422: "The body or query does not match the schema",
}


def documented(*errors: int, ok: int = 200, description: str = "OK") -> dict[int, Any]:
    """OpenAPI responses: the success one (Powertools fills in the return model) and errors as ``ErrorBody``."""
    model = {"application/json": {"model": ErrorBody}}
    return {
        ok: {"description": description},
        **{c: {"description": _DESCRIPTIONS[c], "content": model} for c in errors},
    }


HTML_OK: dict[int, Any] = {
    200: {"description": "An HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}
}
