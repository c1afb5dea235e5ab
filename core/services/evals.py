"""Eval cases and eval runs: prompts are tested like code (Factor 2).

A case is one decision of an agent: the thread as it stood just before a model call, and what the
model should call next. Cases are exported from real threads (:func:`export`) or written by hand, and
live in ``evals/<agent>/<name>.json``; the file name is the case's name. :func:`run_eval` renders each
case's context with a chosen prompt version, makes ONE model call per case (no step, no tools, no
store: nothing is written anywhere), validates the call with the agent's tool registry and compares
it with the expectation.

Case file (JSON)::

    {
      "agent": "release",                         # the agent the case belongs to
      "description": "staging deploys run without asking",
      "events": [ ...stored events, seq 0..n-1... ],   # exactly as the thread store keeps them
      "expect": {
        "tool": "deploy_frontend",                # required: the tool the model must call
        "args": {"environment": "staging"},       # optional: an exact subset of the validated arguments
        "predicate": "args.tag in ['v1.5.0']"     # optional: see below
      },
      "source": {                                 # optional, written by export: where the case came from
        "thread_id": "th_...", "at": 3, "prompt_id": "release/v1", "prompt_hash": "...",
        "model": "scripted:release"
      }
    }

``expect.args`` lists top-level argument names whose values must equal the model's (JSON equality,
so ``3 == 3.0``); arguments it does not list may be anything.

``expect.predicate`` is a tiny expression language over ``args`` (the validated arguments) and ``tool``
(the tool's name), parsed with :mod:`ast` and evaluated by walking a whitelist of nodes (never
``eval``): literals (strings, numbers, ``True``/``False``/``None``, lists), ``args.name`` and
``args['name']`` (a missing name is ``None``), comparisons (``==``, ``!=``, ``<``, ``<=``, ``>``,
``>=``, ``in``, ``not in``), and ``and`` / ``or`` / ``not``. For example::

    args.environment == 'staging' and not args.tag in ['v1.4.0', 'v1.4.1']

Cassettes: recorded model behaviour
-----------------------------------

The scripted brains play each agent deterministically, but they are not a model. :func:`record_eval` runs the
cases against a real provider, through the real adapter, and keeps each case's raw HTTP exchanges (the request
body sent, the response status, headers and body received) as a :class:`Cassette`, one JSON file per case in
``evals/<agent>/cassettes/<case>.json`` with the model, the prompt (id, version, hash) and the time it was
recorded. :func:`replay_eval` runs the cases again with the SAME adapter, whose HTTP client answers from the
cassette instead of the network (the caller builds it: ``llm_for_tape``), so parsing, validation and each case's
expectation run on what the model really answered. Request headers are never kept (they carry the API key).

What a replay proves depends on whether today's request is the one that was recorded:

- **fresh** (the request body and URL equal the recorded ones): this prompt, context and tool schemas got this
  answer from that model on that day, and today's adapter, tool registry and expectations accept it. It is one
  recorded sample, not a guarantee the model answers the same way today.
- **stale** (the prompt hash differs, or the request differs anywhere: a prompt edit, a context rendering change,
  a new tool schema, an edited case): the model never saw this request. The replay still runs the recorded answer
  through today's code, which proves only that the code still accepts it; it says nothing about how the model
  treats the new request. The result says ``stale`` with what changed (the prompt hashes, or the first difference
  in the request) and that the case must be re-recorded; it is never shown as a plain pass.
- a case without a cassette is ``missing``; a replay that asks the model more often than the cassette recorded
  fails the case (:class:`CassetteMissError`) saying to re-record.
"""

from __future__ import annotations

import ast
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.kernel.agent import Agent, model_request
from core.kernel.errors import clip
from core.kernel.events import JSON, Error, Event, LLMCall, ToolCall, UserInput, dump_event, parse_event
from core.kernel.mcp import with_pinned_tools
from core.kernel.model import LLM, LLMError, LLMRequestError
from core.kernel.pricing import cost_usd, price_for
from core.kernel.prompts import Prompt, PromptLibrary
from core.kernel.thread import Thread
from core.kernel.tools import InvalidCall, parse_arguments

MAX_PREDICATE_CHARS = 500
DEFAULT_CONCURRENCY = 4


class CaseError(ValueError):
    """A case file that cannot be used, or a thread that cannot be exported; the message says why."""


class PredicateError(CaseError):
    """A predicate outside the expression language, or one that cannot be evaluated."""


# --- predicates ----------------------------------------------------------------------------------------------

_NAMES = ("args", "tool")
_COMPARE_OPS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)
_ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.Compare,
    *_COMPARE_OPS,
    ast.Name,
    ast.Attribute,
    ast.Subscript,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Load,
)


@dataclass(frozen=True)
class Predicate:
    """A compiled predicate: :meth:`parse` checks every node once, :meth:`holds` walks the same tree."""

    source: str
    tree: ast.Expression

    @classmethod
    def parse(cls, source: str) -> Predicate:
        if len(source) > MAX_PREDICATE_CHARS:
            raise PredicateError(f"a predicate is at most {MAX_PREDICATE_CHARS} characters, got {len(source)}")
        try:
            tree = ast.parse(source.strip(), mode="eval")
        except SyntaxError as exc:
            raise PredicateError(f"predicate {source!r} is not an expression: {exc.msg}") from None
        for node in ast.walk(tree):
            if not isinstance(node, _ALLOWED):
                raise PredicateError(
                    f"predicate {source!r} uses {type(node).__name__}, which is not allowed; use args.NAME, "
                    "literals, comparisons (== != < <= > >= in, not in) and and/or/not"
                )
            if isinstance(node, ast.Name) and node.id not in _NAMES:
                raise PredicateError(f"predicate {source!r} names {node.id!r}; only {' and '.join(_NAMES)} exist")
            if isinstance(node, ast.Constant) and not isinstance(node.value, str | int | float | bool | type(None)):
                raise PredicateError(f"predicate {source!r} has a {type(node.value).__name__} literal")
            if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                raise PredicateError(f"predicate {source!r} reads {node.attr!r}; argument names do not start with _")
            if (
                isinstance(node, ast.UnaryOp)
                and isinstance(node.op, ast.USub)
                and not (isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, int | float))
            ):
                raise PredicateError(f"predicate {source!r}: '-' only makes negative number literals")
        return cls(source, tree)

    def holds(self, tool: str, args: Mapping[str, JSON]) -> bool:
        """True if the predicate holds for this call; :class:`PredicateError` if it cannot be evaluated."""
        try:
            return bool(_value(self.tree.body, {"args": dict(args), "tool": tool}))
        except TypeError as exc:
            raise PredicateError(f"predicate {self.source!r} cannot be evaluated for this call: {exc}") from None


def _value(node: ast.expr, names: Mapping[str, Any]) -> Any:
    """Evaluate one whitelisted node (see :meth:`Predicate.parse`)."""
    match node:
        case ast.BoolOp(op=ast.And(), values=values):
            return all(_value(v, names) for v in values)
        case ast.BoolOp(op=ast.Or(), values=values):
            return any(_value(v, names) for v in values)
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return not _value(operand, names)
        case ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=int() | float() as number)):
            return -number
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            current = _value(left, names)
            for op, right_node in zip(ops, comparators, strict=True):
                right = _value(right_node, names)
                if not _compare(op, current, right):
                    return False
                current = right
            return True
        case ast.Name(id=name):
            return names[name]
        case ast.Attribute(value=inner, attr=attr):
            return _field(_value(inner, names), attr)
        case ast.Subscript(value=inner, slice=key):
            return _field(_value(inner, names), _value(key, names))
        case ast.Constant(value=value):
            return value
        case ast.List(elts=items) | ast.Tuple(elts=items):
            return [_value(item, names) for item in items]
        case _:  # pragma: no cover - parse() refuses every other node
            raise PredicateError(f"{type(node).__name__} is not allowed")


def _field(container: Any, key: Any) -> Any:
    if isinstance(container, dict):
        return container.get(key)
    if isinstance(container, list) and isinstance(key, int) and -len(container) <= key < len(container):
        return container[key]
    return None


def _compare(op: ast.cmpop, left: Any, right: Any) -> bool:
    match op:
        case ast.Eq():
            return bool(left == right)
        case ast.NotEq():
            return bool(left != right)
        case ast.Lt():
            return bool(left < right)
        case ast.LtE():
            return bool(left <= right)
        case ast.Gt():
            return bool(left > right)
        case ast.GtE():
            return bool(left >= right)
        case ast.In():
            return right is not None and left in right
        case ast.NotIn():
            return right is None or left not in right
        case _:  # pragma: no cover - parse() refuses every other operator
            raise PredicateError(f"{type(op).__name__} is not allowed")


# --- cases ---------------------------------------------------------------------------------------------------


class Expect(BaseModel):
    """What the model must call next."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: str = Field(min_length=1)
    args: dict[str, JSON] | None = None
    predicate: str | None = None

    @field_validator("predicate")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            Predicate.parse(value)
        return value

    def mismatch(self, tool: str, args: Mapping[str, JSON]) -> str | None:
        """Why a (valid) call does not meet the expectation, or None if it does."""
        if tool != self.tool:
            return f"called {tool}, expected {self.tool}"
        for key, want in (self.args or {}).items():
            if key not in args:
                return f"argument {key} is missing, expected {want!r}"
            if args[key] != want:
                return f"{key}={args[key]!r}, expected {want!r}"
        if self.predicate is not None:
            try:
                holds = Predicate.parse(self.predicate).holds(tool, args)
            except PredicateError as exc:
                return str(exc)
            if not holds:
                return f"predicate is false: {self.predicate}"
        return None

    def describe(self) -> str:
        text = call_text(self.tool, self.args) if self.args else f"{self.tool}(...)"
        return f"{text} where {self.predicate}" if self.predicate else text


class CaseSource(BaseModel):
    """Where an exported case came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    thread_id: str
    at: int = Field(ge=0, description="Seq of the model call whose decision is expected.")
    prompt_id: str
    prompt_hash: str
    model: str


class Case(BaseModel):
    """One decision to check. ``name`` comes from the file name and is not stored in the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="", exclude=True)
    agent: str = Field(min_length=1)
    description: str = ""
    events: tuple[Event, ...] = Field(min_length=1)
    expect: Expect
    source: CaseSource | None = None

    @field_validator("events", mode="before")
    @classmethod
    def _upgrade(cls, value: Any) -> Any:
        """Stored events of an older schema are upgraded, as the thread store does when it reads them."""
        if isinstance(value, list | tuple):
            return [parse_event(e) if isinstance(e, dict) else e for e in value]
        return value

    @model_validator(mode="after")
    def _contiguous(self) -> Case:
        self.thread()  # seqs must be 0..n-1, like any thread
        return self

    def thread(self, **labels: str) -> Thread:
        """The case's events as a thread (never stored)."""
        return Thread(id=f"eval-{self.name or 'case'}", agent=self.agent, events=self.events, labels=labels)

    def to_json(self) -> str:
        """The case file's text: events exactly as a store keeps them, optional keys only when set."""
        data: dict[str, Any] = {
            "agent": self.agent,
            "description": self.description,
            "events": [dump_event(e) for e in self.events],
            "expect": {k: v for k, v in self.expect.model_dump(mode="json").items() if v is not None},
        }
        if self.source is not None:
            data["source"] = self.source.model_dump(mode="json")
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def load_case(path: Path) -> Case:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Case.model_validate({**raw, "name": path.stem} if isinstance(raw, dict) else raw)
    except (ValueError, ValidationError) as exc:
        raise CaseError(f"{path}: not a valid eval case: {exc}") from None


def load_cases(directory: Path) -> list[Case]:
    """Every ``*.json`` case in ``directory``, by name."""
    if not directory.is_dir():
        raise CaseError(f"no eval cases directory {directory}")
    return [load_case(path) for path in sorted(directory.glob("*.json"))]


def export(
    thread: Thread,
    at: int | None = None,
    *,
    keep_args: Sequence[str] | None = None,
    predicate: str | None = None,
    description: str | None = None,
    name: str = "",
) -> Case:
    """A case from a thread: the events before the first model call at or after seq ``at`` (default: the
    first model call), expecting the tool call the model made there.

    ``keep_args`` names the arguments the case pins (default: all of them; ``[]`` pins only the tool).
    The expected arguments are the validated ones the thread recorded in its ``tool_call`` event.
    """
    start = 0 if at is None else at
    calls = [e for e in thread.events if isinstance(e, LLMCall)]
    call = next((c for c in calls if c.seq >= start), None)
    if call is None:
        seqs = ", ".join(str(c.seq) for c in calls) or "none"
        raise CaseError(f"thread {thread.id} has no model call at or after seq {start}; its model calls: {seqs}")
    tool = call.output.get("name")
    if not isinstance(tool, str) or not tool:
        what = "an error" if "error" in call.output else "text"
        raise CaseError(
            f"the model call at seq {call.seq} of thread {thread.id} returned {what}, not a tool call; "
            "export another one with --at"
        )
    after = thread.events[call.seq + 1] if call.seq + 1 < len(thread.events) else None
    if isinstance(after, Error) and after.call_id is None:
        raise CaseError(
            f"the model call at seq {call.seq} of thread {thread.id} was refused ({after.kind}: {after.message}); "
            "a case expects a valid call: write its expectation by hand"
        )
    if isinstance(after, ToolCall) and not after.prefetch and after.tool == tool:
        args: dict[str, JSON] = dict(after.args)
    else:
        parsed = parse_arguments(call.output.get("arguments") or {})
        if isinstance(parsed, InvalidCall):
            raise CaseError(f"the model call at seq {call.seq} has unreadable arguments: {parsed.message}")
        args = parsed
    if keep_args is not None:
        unknown = sorted(set(keep_args) - set(args))
        if unknown:
            raise CaseError(f"--expect-args names {', '.join(unknown)}; the call's arguments are {', '.join(args)}")
        args = {k: v for k, v in args.items() if k in keep_args}
    return Case(
        name=name,
        agent=thread.agent,
        description=description or _default_description(thread, call.seq),
        events=thread.events[: call.seq],
        expect=Expect(tool=tool, args=args or None, predicate=predicate),
        source=CaseSource(
            thread_id=thread.id, at=call.seq, prompt_id=call.prompt_id, prompt_hash=call.prompt_hash, model=call.model
        ),
    )


def _default_description(thread: Thread, seq: int) -> str:
    asked = next((e.text for e in reversed(thread.events[:seq]) if isinstance(e, UserInput)), "")
    return clip(f"exported from {thread.id} at seq {seq}: {' '.join(asked.split())}", 200)


# --- running -------------------------------------------------------------------------------------------------


def call_text(tool: str, args: Mapping[str, JSON]) -> str:
    """``deploy_frontend(environment='staging', tag='v1.5.0')``: a call as the table shows it."""
    return f"{tool}({', '.join(f'{k}={v!r}' for k, v in sorted(args.items()))})"


CassetteState = Literal["", "fresh", "stale", "missing"]
"""How a replayed case relates to its cassette (module docstring); ``""`` for a case run against a live model."""


@dataclass(frozen=True)
class CaseResult:
    """One case's outcome. ``tool``/``args`` are what the model called (validated), None if it did not.

    ``cassette`` and ``note`` are set by a replay: ``stale`` (the request is not the recorded one, ``note`` says
    how) or ``missing`` (no cassette, so nothing ran).
    """

    case: str
    description: str
    expected: str
    got: str
    passed: bool
    reason: str = ""
    tool: str | None = None
    args: dict[str, JSON] | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: int = 0
    cassette: CassetteState = ""
    note: str = ""

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def verdict(self) -> str:
        """What the table's RESULT column says."""
        if self.cassette == "missing":
            return "no cassette"
        word = "pass" if self.passed else "FAIL"
        return f"{word}, STALE" if self.cassette == "stale" else word


@dataclass(frozen=True)
class Report:
    """An eval run of one agent with one prompt version and one model.

    ``source`` says where the answers came from when not from a live model (``replayed from cassettes recorded
    ...``). ``ok`` is about the expectations only; :attr:`unverified` lists the replayed cases whose cassette is
    stale or missing, which a strict run also fails.
    """

    agent: str
    prompt: str
    prompt_hash: str
    model: str
    results: tuple[CaseResult, ...]
    source: str = ""

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed and r.cassette != "missing"]

    @property
    def unverified(self) -> list[CaseResult]:
        """Replayed cases that say nothing about the model's answer to today's request (stale or missing)."""
        return [r for r in self.results if r.cassette in ("stale", "missing")]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def cost_usd(self) -> float:
        return round(sum(r.cost_usd for r in self.results), 10)

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.results)

    def summary(self) -> str:
        missing = sum(r.cassette == "missing" for r in self.results)
        stale = sum(r.cassette == "stale" for r in self.results)
        passed = len(self.results) - len(self.failures) - missing
        source = f" {self.source}" if self.source else ""
        extra = (f", {stale} STALE" if stale else "") + (f", {missing} without a cassette" if missing else "")
        return (
            f"{self.agent}: {self.prompt} ({self.prompt_hash[:12]}) on {self.model}{source}: {passed} passed, "
            f"{len(self.failures)} failed{extra}; {self.tokens} tokens, ${self.cost_usd:.6f}"
        )

    def table(self, *, width: int = 60) -> str:
        """The report as a text table, then one line per failure saying why."""
        rows = [
            (
                r.case,
                r.expected,
                r.got,
                r.verdict,
                f"{r.input_tokens}+{r.output_tokens}",
                f"${r.cost_usd:.6f}",
            )
            for r in self.results
        ]
        lines = _table(("CASE", "EXPECTED", "GOT", "RESULT", "TOKENS", "COST"), rows, width)
        lines += [f"  {r.case}: {r.reason}" for r in self.failures]
        lines += [f"  {r.case}: {r.cassette.upper()}: {r.note}" for r in self.unverified]
        lines.append(self.summary())
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "prompt": self.prompt,
            "prompt_hash": self.prompt_hash,
            "model": self.model,
            "source": self.source,
            "ok": self.ok,
            "unverified": [r.case for r in self.unverified],
            "cost_usd": self.cost_usd,
            "tokens": self.tokens,
            "results": [asdict(r) for r in self.results],
        }


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], width: int) -> list[str]:
    cells = [list(header), *([_cut(c, width) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def run_eval(
    agent: Agent,
    cases: Sequence[Case],
    *,
    prompts: PromptLibrary | None = None,
    llm_for: Callable[[str], LLM],
    prompt_version: int | None = None,
    model: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> Report:
    """Run each case once against ``agent`` with ``prompt_version`` (default: the agent's) and ``model``
    (default: the agent's). ``llm_for`` builds the model; the kernel holds no scripted brains, so a scripted
    model needs the registry's (``agents.build_llm``, ARCHITECTURE.md "User space"). At most ``concurrency``
    model calls run at a time; nothing is written to any thread or store."""
    prompt = _prepare(agent, cases, prompts, prompt_version, concurrency)
    model_name = agent.model_for(model)
    llm = llm_for(model_name)
    results = _each(cases, concurrency, lambda case: _run_case(case, agent, llm, prompt, model_name))
    return Report(agent.name, prompt.ref, prompt.hash, model_name, results)


def _prepare(
    agent: Agent, cases: Sequence[Case], prompts: PromptLibrary | None, prompt_version: int | None, concurrency: int
) -> Prompt:
    """Check the arguments every run takes, and load the prompt it runs with."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    strangers = [c.name or "?" for c in cases if c.agent != agent.name]
    if strangers:
        raise CaseError(f"cases {', '.join(strangers)} are not for agent {agent.name}")
    version = agent.prompt_version if prompt_version is None else prompt_version
    return (prompts or PromptLibrary()).load(agent.prompt_id, version)


def _each(cases: Sequence[Case], concurrency: int, one: Callable[[Case], CaseResult]) -> tuple[CaseResult, ...]:
    """``one`` for every case, at most ``concurrency`` at a time, results in the cases' order."""
    if not cases:
        return ()
    with ThreadPoolExecutor(max_workers=min(concurrency, len(cases)), thread_name_prefix="eval") as pool:
        return tuple(pool.map(one, cases))


def _replayed_cost(model: str, input_tokens: int, output_tokens: int) -> float:
    """What the recorded call cost; silent for an unpriced model (a replay spends nothing, so no warning)."""
    return 0.0 if price_for(model) is None else cost_usd(model, input_tokens, output_tokens)


def _run_case(
    case: Case,
    agent: Agent,
    llm: LLM,
    prompt: Prompt,
    model: str,
    *,
    cost: Callable[[str, int, int], float] = cost_usd,
) -> CaseResult:
    thread = case.thread(prompt_version=str(prompt.version))
    agent = with_pinned_tools(agent, thread)  # a case with a pinned MCP list offers those tools (described only)
    result = CaseResult(case.name, case.description, case.expect.describe(), got="", passed=False)
    started = time.perf_counter()
    try:
        response = llm.complete(model_request(thread, agent, prompt, model))
    except LLMError as exc:
        return replace(result, got="(model error)", reason=clip(str(exc), 300))
    usage = response.usage
    result = replace(
        result,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=cost(model, usage.input_tokens, usage.output_tokens),
        latency_ms=int((time.perf_counter() - started) * 1000),
    )
    checked = agent.registry.validate(response.tool, response.arguments)
    if isinstance(checked, InvalidCall):
        got = f"{response.tool} (invalid)" if response.tool else "(text, no tool call)"
        return replace(result, got=got, reason=f"{checked.kind}: {checked.message}")
    args = checked.args_json
    why = case.expect.mismatch(checked.tool.name, args)
    return replace(
        result,
        got=call_text(checked.tool.name, args),
        passed=why is None,
        reason=why or "",
        tool=checked.tool.name,
        args=args,
    )


# --- cassettes: recorded model behaviour ---------------------------------------------------------------------

CASSETTE_FORMAT = 1
"""The version of the cassette file layout; a newer one fails loudly, as a newer event schema does."""


class RecordedRequest(BaseModel):
    """What was sent: the method, the URL and the JSON body. Request headers are never kept (the API key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str
    url: str
    body: JSON = None


class RecordedResponse(BaseModel):
    """What came back: the status, the headers an adapter reads, and the body (JSON, or ``text`` if it was not)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: int = Field(ge=100, le=599)
    headers: dict[str, str] = Field(default_factory=dict)
    body: JSON = None
    text: str | None = None


class Exchange(BaseModel):
    """One HTTP request to the provider and its response."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request: RecordedRequest
    response: RecordedResponse


class RecordedPrompt(BaseModel):
    """The prompt a cassette was recorded with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="The prompt's ref, e.g. calculator/v1.")
    version: int = Field(ge=1)
    hash: str = Field(min_length=1)


class Cassette(BaseModel):
    """One case's recorded model behaviour (module docstring, "Cassettes")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = CASSETTE_FORMAT
    agent: str = Field(min_length=1)
    case: str = Field(min_length=1)
    model: str = Field(min_length=1, description="provider:model, as given to --record.")
    base_url: str = Field(
        description="The provider base URL it was recorded against; a replay builds the adapter "
        "with it, so the adapter makes the request it made then."
    )
    prompt: RecordedPrompt
    recorded_at: datetime
    exchanges: tuple[Exchange, ...]

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: int) -> int:
        if value != CASSETTE_FORMAT:
            raise ValueError(f"cassette format {value} is not {CASSETTE_FORMAT}, the one this version reads")
        return value

    def to_json(self) -> str:
        """The cassette file's text: the request and response bodies as they were, for a reviewer to read."""
        return json.dumps(self.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False) + "\n"


def load_cassette(path: Path) -> Cassette:
    try:
        cassette = Cassette.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise CaseError(f"{path}: not a valid cassette: {exc}") from None
    if cassette.case != path.stem:
        raise CaseError(f"{path}: the cassette is for case {cassette.case!r}, but its file is named {path.stem!r}")
    return cassette


def load_cassettes(directory: Path) -> dict[str, Cassette]:
    """Every ``*.json`` cassette in ``directory`` by case name; an empty dict when there is no such directory."""
    if not directory.is_dir():
        return {}
    return {path.stem: load_cassette(path) for path in sorted(directory.glob("*.json"))}


class CassetteMissError(LLMRequestError):
    """A replay asked the model something the cassette holds no answer for: the case must be re-recorded."""


class Tape:
    """One case's exchanges: filled by a recording transport (:meth:`add`), or answering a replay (:meth:`answer`).

    A tape belongs to one case, and a case makes its model calls one after another, so it needs no lock.
    """

    def __init__(self, cassette: Cassette | None = None) -> None:
        self.cassette = cassette
        self.exchanges: list[Exchange] = []
        self.differences: list[str] = []
        """For a replay: how each request differs from the recorded one, in words (empty: the same request)."""

    def add(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)

    def answer(self, request: RecordedRequest) -> RecordedResponse:
        """The recorded response to the next request, noting how ``request`` differs from the one recorded.

        Raises:
            CassetteMissError: the cassette has no more exchanges (the code now calls the model more often).
        """
        if self.cassette is None:
            raise ValueError("a recording tape answers nothing; replay a Cassette")
        recorded = self.cassette.exchanges
        n = len(self.exchanges)
        if n >= len(recorded):
            raise CassetteMissError(
                "cassette",
                f"case {self.cassette.case!r} recorded {len(recorded)} model call(s) and this replay made call "
                f"{n + 1}: the code now asks the model something it was never asked; re-record the case "
                f"(--record {self.cassette.model})",
            )
        exchange = recorded[n]
        self.exchanges.append(Exchange(request=request, response=exchange.response))
        where = (
            f"{request.method} {request.url} (recorded {exchange.request.method} {exchange.request.url})"
            if (request.method, request.url) != (exchange.request.method, exchange.request.url)
            else first_difference(exchange.request.body, request.body)
        )
        if where is not None:
            call = f"call {n + 1}: " if len(recorded) > 1 else ""
            self.differences.append(f"{call}{where}")
        return exchange.response


def first_difference(recorded: JSON, now: JSON, path: str = "body") -> str | None:
    """Where two JSON values first differ, in words (``body.messages[1].content: recorded '...', now '...'``)."""
    if isinstance(recorded, dict) and isinstance(now, dict):
        for key in [*recorded, *(k for k in now if k not in recorded)]:
            if key not in now:
                return f"{path}.{key} was recorded, now it is not sent"
            if key not in recorded:
                return f"{path}.{key} is new: {_excerpt(now[key])}"
            found = first_difference(recorded[key], now[key], f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(recorded, list) and isinstance(now, list):
        for i, (a, b) in enumerate(zip(recorded, now, strict=False)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found is not None:
                return found
        if len(recorded) != len(now):
            return f"{path} had {len(recorded)} items, now {len(now)}"
        return None
    if type(recorded) is type(now) and recorded == now:
        return None
    if isinstance(recorded, str) and isinstance(now, str):
        at = next(
            (i for i, (a, b) in enumerate(zip(recorded, now, strict=False)) if a != b), min(len(recorded), len(now))
        )
        start = max(0, at - 20)
        return f"{path} at character {at}: recorded {_excerpt(recorded[start:])}, now {_excerpt(now[start:])}"
    return f"{path}: recorded {_excerpt(recorded)}, now {_excerpt(now)}"


def _excerpt(value: JSON, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return repr(text if len(text) <= width else text[:width] + "...")


def staleness(cassette: Cassette, prompt: Prompt, differences: Sequence[str]) -> str:
    """Why a replay of ``cassette`` with ``prompt`` is not what the model saw, or ``""`` when it is."""
    if cassette.prompt.hash != prompt.hash:
        return (
            f"recorded with prompt {cassette.prompt.id} (hash {cassette.prompt.hash[:12]}), now {prompt.ref} "
            f"(hash {prompt.hash[:12]}): the model never saw this prompt; re-record to test it "
            f"(--record {cassette.model})"
        )
    if differences:
        return (
            f"the request differs from the one recorded ({'; '.join(differences)}): the model never saw it; "
            f"re-record (--record {cassette.model})"
        )
    return ""


@dataclass(frozen=True)
class Recording:
    """What :func:`record_eval` ran: the report, a cassette per recorded case, and why the others were not."""

    report: Report
    cassettes: dict[str, Cassette]
    skipped: dict[str, str] = field(default_factory=dict)


def _named(cases: Sequence[Case]) -> None:
    names = [c.name for c in cases]
    if "" in names or len(set(names)) != len(names):
        raise CaseError("recording and replaying need cases with distinct names (the file names of load_cases)")


def record_eval(
    agent: Agent,
    cases: Sequence[Case],
    *,
    model: str,
    base_url: str,
    llm_for_tape: Callable[[Tape], LLM],
    recorded_at: datetime | None = None,
    prompts: PromptLibrary | None = None,
    prompt_version: int | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> Recording:
    """Run each case against ``model`` (a real provider) and keep its HTTP exchanges as a cassette.

    ``llm_for_tape(tape)`` builds the provider's adapter with an HTTP client that adds every exchange to ``tape``
    (``base_url`` is the one it was built with: the cassette keeps it). A cassette holds what the model answered,
    so a case that reached no provider (a timeout, a refused connection) or whose last answer was not a 2xx (a
    rate limit, a 5xx, a wrong key or model name) gets none: ``skipped`` says why.
    """
    _named(cases)
    prompt = _prepare(agent, cases, prompts, prompt_version, concurrency)
    tapes = {case.name: Tape() for case in cases}
    results = _each(
        cases, concurrency, lambda case: _run_case(case, agent, llm_for_tape(tapes[case.name]), prompt, model)
    )
    when = (recorded_at or datetime.now(UTC)).replace(microsecond=0)
    cassettes: dict[str, Cassette] = {}
    skipped: dict[str, str] = {}
    for case, result in zip(cases, results, strict=True):
        exchanges = tapes[case.name].exchanges
        if not exchanges:
            skipped[case.name] = result.reason or "no HTTP request reached the provider"
            continue
        status = exchanges[-1].response.status
        if not 200 <= status < 300:
            skipped[case.name] = f"the provider answered HTTP {status}, not a model answer: {result.reason}"
            continue
        cassettes[case.name] = Cassette(
            agent=agent.name,
            case=case.name,
            model=model,
            base_url=base_url,
            prompt=RecordedPrompt(id=prompt.ref, version=prompt.version, hash=prompt.hash),
            recorded_at=when,
            exchanges=tuple(exchanges),
        )
    report = Report(agent.name, prompt.ref, prompt.hash, model, results, source="(recording)")
    return Recording(report, cassettes, skipped)


def replay_eval(
    agent: Agent,
    cases: Sequence[Case],
    cassettes: Mapping[str, Cassette],
    *,
    llm_for_tape: Callable[[Tape], LLM],
    prompts: PromptLibrary | None = None,
    prompt_version: int | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> Report:
    """Run each case with its cassette: ``llm_for_tape(tape)`` builds the adapter of ``tape.cassette.model`` with
    ``tape.cassette.base_url`` and an HTTP client that answers from ``tape`` (:meth:`Tape.answer`).

    Every cassette must be of ``agent`` and all of one model (the report's). A case without a cassette is
    ``missing``; one whose request is not the recorded one is ``stale`` (module docstring, "Cassettes").
    Tokens and cost are the recording's (what the model reported then); the replay itself spends nothing.
    """
    _named(cases)
    prompt = _prepare(agent, cases, prompts, prompt_version, concurrency)
    strangers = sorted(name for name, c in cassettes.items() if c.agent != agent.name)
    if strangers:
        raise CaseError(f"cassettes {', '.join(strangers)} were recorded for another agent than {agent.name}")
    used = [cassettes[c.name] for c in cases if c.name in cassettes]
    models = sorted({c.model for c in used})
    if not used:
        raise CaseError(f"no cassette for any of the {len(cases)} cases of {agent.name}; record them with --record")
    if len(models) > 1:
        by_model = ", ".join(f"{m}: {', '.join(c.case for c in used if c.model == m)}" for m in models)
        raise CaseError(
            f"the cassettes of {agent.name} were recorded with different models ({by_model}); "
            "re-record them all with one --record MODEL"
        )

    def one(case: Case) -> CaseResult:
        cassette = cassettes.get(case.name)
        if cassette is None:
            return CaseResult(
                case.name,
                case.description,
                case.expect.describe(),
                got="(no cassette)",
                passed=False,
                cassette="missing",
                note=f"this case has no cassette, so no recorded model answer was checked (--record {models[0]})",
            )
        tape = Tape(cassette)
        result = _run_case(case, agent, llm_for_tape(tape), prompt, cassette.model, cost=_replayed_cost)
        why = staleness(cassette, prompt, tape.differences)
        return replace(result, cassette="stale" if why else "fresh", note=why)

    results = _each(cases, concurrency, one)
    days = sorted({c.recorded_at.date().isoformat() for c in used})
    recorded = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"
    source = f"(replayed from cassettes recorded {recorded})"
    return Report(agent.name, prompt.ref, prompt.hash, models[0], results, source=source)


# --- comparing two runs --------------------------------------------------------------------------------------

ChangeKind = Literal["regression", "fix", "changed"]


@dataclass(frozen=True)
class Change:
    """A case whose decision differs between two runs."""

    case: str
    before: CaseResult
    after: CaseResult

    @property
    def kind(self) -> ChangeKind:
        if self.before.passed and not self.after.passed:
            return "regression"
        if self.after.passed and not self.before.passed:
            return "fix"
        return "changed"


def compare(before: Report, after: Report) -> list[Change]:
    """Cases (by name) where the model's decision or the verdict changed from ``before`` to ``after``."""
    earlier = {r.case: r for r in before.results}
    return [
        Change(r.case, earlier[r.case], r)
        for r in after.results
        if r.case in earlier and (earlier[r.case].got != r.got or earlier[r.case].passed != r.passed)
    ]


def comparison_table(before: Report, after: Report, *, width: int = 60) -> str:
    """The decisions that changed between two runs, and a one-line verdict."""
    changes = compare(before, after)
    head = f"{before.prompt} -> {after.prompt} on {after.model}"
    if not changes:
        return f"{head}: no decision changed in {len(after.results)} cases"
    rows = [(c.case, c.before.got, c.after.got, c.kind.upper() if c.kind == "regression" else c.kind) for c in changes]
    lines = _table(("CASE", before.prompt, after.prompt, "CHANGE"), rows, width)
    regressions = sum(c.kind == "regression" for c in changes)
    lines.append(f"{head}: {len(changes)} of {len(after.results)} decisions changed, {regressions} regressions")
    return "\n".join(lines)
