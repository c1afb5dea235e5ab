"""Tools are structured outputs (Factor 4): a pydantic args model, a plain function and a policy.

The registry turns tools into the JSON schemas the model sees and turns the model's raw output back
into a validated call, or into a compacted error (Factor 9). Nothing the model sends can crash a step.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Generic, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, create_model

from core.kernel.errors import clip, compact_exception, compact_validation_error
from core.kernel.events import JSON, ErrorKind
from core.kernel.model import ToolSpec
from core.kernel.thread import ASK_TOOL, DONE_TOOL

Policy = Literal["auto", "needs_approval", "deny"]
POLICIES: frozenset[str] = frozenset(get_args(Policy))
"""The only policy words. Anything else is refused when the tool is built, or (from a policy function, at run
time) treated as ``needs_approval``: a typo such as ``"needs-approval"`` must never mean "run it unasked"."""
FAIL_CLOSED: Policy = "needs_approval"
A = TypeVar("A", bound=BaseModel)

logger = logging.getLogger(__name__)

MAX_ARGS_CHARS = 20_000
"""Raw arguments longer than this are refused before parsing (a runaway model must not fill the thread)."""


class ToolUnavailableError(Exception):
    """The system behind a tool cannot be reached now (an MCP server is down): not something the model can fix, so
    it is not compacted into the thread. The step fails and Step Functions retries it (``DependencyUnavailable``,
    ARCHITECTURE.md "Errors"); the effect ledger settles a call that may have started."""


class InvalidArgsError(ValueError):
    """A tool's own argument check refused the model's arguments (a JSON schema's validator); the message is shown
    to the model as an ``invalid_args`` error."""


class JsonArgs(RootModel[dict[str, Any]]):
    """The arguments of a tool described by a JSON schema rather than a pydantic model (an MCP tool): the object
    itself, checked by the tool's ``check`` before anything runs."""


@dataclass(frozen=True)
class ToolContext:
    """What a tool function may know about the call: the idempotency key is the tool call id."""

    thread_id: str
    call_id: str
    agent: str

    @property
    def idempotency_key(self) -> str:
        return f"{self.thread_id}:{self.call_id}"


@dataclass(frozen=True)
class Tool(Generic[A]):
    """One capability of an agent.

    ``policy`` is a fixed word or a function of the validated args (e.g. production deploys need
    approval, staging ones don't): deterministic code decides, never the model.
    ``idempotent`` says whether running twice with the same idempotency key is safe; it decides what
    a retry does with an intent that has no result (the effect ledger).
    """

    name: str
    description: str
    args: type[A]
    fn: Callable[[A, ToolContext], JSON] | None
    policy: Policy | Callable[[A], Policy] = "auto"
    idempotent: bool = False
    schema: Mapping[str, Any] | None = None
    """The JSON schema the model sees instead of ``args``'s own (a tool listed by an MCP server)."""
    check: Callable[[dict[str, Any]], None] | None = None
    """Checks the raw arguments before ``args`` parses them, raising :class:`InvalidArgsError` (a JSON schema)."""
    policy_reason: str = ""
    """Why the policy is what it is, shown with an approval (an MCP server's annotations)."""

    def __post_init__(self) -> None:
        policy = self.policy
        if isinstance(policy, str):
            if policy not in POLICIES:
                raise ValueError(
                    f"tool {self.name!r}: policy {policy!r} is not one of {', '.join(sorted(POLICIES))} "
                    "(or a function of the args returning one of them)"
                )
        elif not callable(policy):
            raise ValueError(
                f"tool {self.name!r}: policy must be one of {', '.join(sorted(POLICIES))} or a function of the args, "
                f"got {type(policy).__name__}"
            )

    def spec(self) -> ToolSpec:
        """The tool as the model sees it; built once (pydantic's JSON schema costs about as much as the rest of a
        step), so treat it as read-only."""
        spec: ToolSpec | None = self.__dict__.get("_spec")
        if spec is None:
            schema = dict(self.schema) if self.schema is not None else self.args.model_json_schema()
            schema.pop("title", None)
            spec = ToolSpec(self.name, self.description, schema)
            object.__setattr__(self, "_spec", spec)  # a frozen dataclass: the cache goes around __setattr__
        return spec

    def policy_for(self, args: BaseModel) -> Policy:
        """The policy for this call; see :meth:`policy_decision` for why an odd answer means approval."""
        return self.policy_decision(args)[0]

    def policy_decision(self, args: BaseModel) -> tuple[Policy, str]:
        """The policy for this call and, when it had to fail closed, why (else ``""``).

        A policy function is ordinary code and can return anything (``"needs-approval"``, ``None``, ``True``).
        Running the tool unasked on an answer we do not understand would make every such bug an open door, so
        an unknown answer means ``needs_approval``. The reason is logged as a warning and returned, so the
        approval a person sees can say why they are being asked.
        """
        policy = self.policy
        if not callable(policy):
            return policy, ""
        answer: object = policy(args)  # type: ignore[arg-type]
        if isinstance(answer, str) and answer in POLICIES:
            return answer, ""  # type: ignore[return-value]
        shown = repr(answer) if len(repr(answer)) <= 80 else repr(answer)[:80] + "..."
        reason = (
            f"the policy function of {self.name} returned {shown}, not one of {', '.join(sorted(POLICIES))}; "
            f"treated as {FAIL_CLOSED} (fail closed): fix the policy function"
        )
        logger.warning(reason)
        return FAIL_CLOSED, reason

    def validate(self, raw: Mapping[str, Any]) -> A:
        if self.check is not None:
            self.check(dict(raw))
        return self.args.model_validate(dict(raw))

    def run(self, args: BaseModel, ctx: ToolContext) -> JSON:
        if self.fn is None:
            raise RuntimeError(f"tool {self.name} is an intent handled by the runtime, not a function")
        return self.fn(args, ctx)  # type: ignore[arg-type]


# --- built-in intents ------------------------------------------------------------------------------


class RequestHumanInput(BaseModel):
    """Ask a person a question and wait for the answer (Factor 7)."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=2000, description="What you need to know, in one question.")
    context: str = Field(default="", max_length=4000, description="What the person needs to answer well.")
    urgency: Literal["low", "medium", "high"] = "medium"
    format: Literal["free_text", "yes_no", "multiple_choice"] = "free_text"
    choices: list[str] = Field(default_factory=list, max_length=20, description="Options, for multiple_choice.")


class DoneForNow(BaseModel):
    """Finish with a final answer for the person who asked."""

    model_config = ConfigDict(extra="forbid")

    answer: str = Field(min_length=1, max_length=20_000, description="The final answer, in plain words.")


REQUEST_HUMAN_INPUT: Tool[RequestHumanInput] = Tool(
    ASK_TOOL,
    "Ask a human a question when the request is ambiguous, information is missing, or you are stuck.",
    RequestHumanInput,
    None,
)
DONE_FOR_NOW: Tool[DoneForNow] = Tool(
    DONE_TOOL, "Finish: give the final answer to the person who asked.", DoneForNow, None
)
INTENTS = (REQUEST_HUMAN_INPUT, DONE_FOR_NOW)

ANSWER_TEXT = "answer"
"""The field of ``done_for_now`` that holds the answer in plain words, typed answer or not (the ``done`` event's
``answer``: what people and readers of older events see)."""


@cache
def done_tool(answer: type[BaseModel] | None = None) -> Tool[Any]:
    """The ``done_for_now`` intent of an agent: :data:`DONE_FOR_NOW`, or, for an agent that declares the schema of its
    final answer (``Agent(answer=Model)``), one whose arguments are that model's fields plus the answer in plain words
    (:data:`ANSWER_TEXT`). Validated like any tool call: a bad answer is an ``invalid_args`` error the model sees and
    fixes (ARCHITECTURE.md "An agent as a step")."""
    if answer is None:
        return DONE_FOR_NOW
    if ANSWER_TEXT in answer.model_fields:
        raise ValueError(
            f"answer model {answer.__name__} has a field {ANSWER_TEXT!r}: done_for_now adds it (the answer in plain "
            "words); name the model's field otherwise"
        )
    if answer.model_config.get("extra") != "forbid":
        raise ValueError(
            f"answer model {answer.__name__} must forbid extra fields (model_config = ConfigDict(extra='forbid')): "
            "a parent branches on its fields, so a misspelt one must be refused, not dropped"
        )
    args: type[BaseModel] = create_model(
        f"DoneForNow{answer.__name__}",
        __base__=answer,
        __doc__=f"Finish with a final answer: {answer.__doc__ or answer.__name__}",
        answer=(str, DoneForNow.model_fields[ANSWER_TEXT]),
    )
    return Tool(
        DONE_TOOL,
        "Finish: give the final answer, in plain words (answer) and as the structured fields, to whoever asked.",
        args,
        None,
    )


def typed_answer(args: BaseModel) -> dict[str, JSON] | None:
    """The structured part of a validated ``done_for_now`` call (everything but the text), or None when the agent
    declares no answer model."""
    if type(args) is DoneForNow:
        return None
    data: dict[str, JSON] = args.model_dump(mode="json", exclude={ANSWER_TEXT})
    return data


# --- validation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidCall:
    tool: Tool[Any]
    args: BaseModel

    @property
    def args_json(self) -> dict[str, JSON]:
        dumped: dict[str, JSON] = self.args.model_dump(mode="json")
        return dumped


@dataclass(frozen=True)
class InvalidCall:
    kind: ErrorKind
    message: str
    tool: str | None = None
    args: dict[str, JSON] = field(default_factory=dict)


def parse_arguments(raw: str | Mapping[str, Any]) -> dict[str, Any] | InvalidCall:
    """The model's arguments as a JSON object, or why they are not one."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if len(raw) > MAX_ARGS_CHARS:
        return InvalidCall("invalid_json", f"arguments are {len(raw)} characters; the limit is {MAX_ARGS_CHARS}")
    text = raw.strip() or "{}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return InvalidCall("invalid_json", f"arguments are not valid JSON: {exc.msg} at position {exc.pos}")
    if not isinstance(value, dict):
        return InvalidCall("invalid_json", f"arguments must be a JSON object, got {type(value).__name__}")
    return value


class ToolRegistry:
    """The tools one agent may use, plus the built-in intents. Explicit: nothing registers itself."""

    def __init__(self, tools: Iterable[Tool[Any]], *, done: Tool[Any] = DONE_FOR_NOW) -> None:
        """``done``: the agent's ``done_for_now`` (:func:`done_tool`, typed when the agent declares its answer)."""
        self._specs: tuple[ToolSpec, ...] | None = None
        self._tools: dict[str, Tool[Any]] = {}
        for tool in (*tools, REQUEST_HUMAN_INPUT, done):
            if tool.name in self._tools:
                raise ValueError(f"tool {tool.name!r} is registered twice")
            self._tools[tool.name] = tool

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __getitem__(self, name: str) -> Tool[Any]:
        return self._tools[name]

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def specs(self) -> list[ToolSpec]:
        """JSON schemas for the model: denied tools are not offered at all. Built once per registry (an agent
        keeps its registry), not once per step."""
        if self._specs is None:
            self._specs = tuple(t.spec() for t in self._tools.values() if t.policy != "deny")
        return list(self._specs)

    def validate(self, name: str | None, raw: str | Mapping[str, Any]) -> ValidCall | InvalidCall:
        """Check the model's tool call; every failure is an :class:`InvalidCall` with a short reason."""
        if not name:
            return InvalidCall("no_tool_call", "you must answer with exactly one tool call")
        tool = self._tools.get(name)
        if tool is None:
            shown = name if len(name) <= 80 else name[:80] + "..."
            return InvalidCall("unknown_tool", f"unknown tool {shown!r}; available: {', '.join(self.names)}", shown)
        parsed = parse_arguments(raw)
        if isinstance(parsed, InvalidCall):
            return InvalidCall(parsed.kind, parsed.message, name)
        try:
            args = tool.validate(parsed)
        except ValidationError as exc:
            return InvalidCall("invalid_args", compact_validation_error(exc), name, _jsonable(parsed))
        except InvalidArgsError as exc:
            return InvalidCall("invalid_args", clip(str(exc)), name, _jsonable(parsed))
        return ValidCall(tool, args)

    def run(self, call: ValidCall, ctx: ToolContext) -> tuple[bool, JSON]:
        """Run a validated call: ``(True, result)`` or ``(False, compacted error message)``."""
        try:
            result = call.tool.run(call.args, ctx)
        except ToolUnavailableError:
            raise  # a system error: the step is retried (ARCHITECTURE.md "Errors")
        except Exception as exc:  # noqa: BLE001 - any tool failure is shown to the model, never crashes a step
            return False, compact_exception(exc)
        return True, _jsonable(result)


def _jsonable(value: Any) -> JSON:
    """Make a tool's return value JSON (pydantic models and other objects are converted, not rejected).

    Always a round trip through ``json``, so the result in memory is exactly what a store reads back:
    tuples become lists and non-string keys become strings (a dict mixing int and str keys would
    otherwise break the sorted rendering of every later context).
    """
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=str))
