"""What the benchmark scripts share: the bench agent, byte metering, statistics and the one results table.

Every script returns a :class:`Report` from ``run()`` and prints it when run alone; ``run_all.py`` merges
the reports into one table. Peers live only in ``.venv-bench`` (``make bench``): a script run from ``.venv``
still measures stepfold and says, in the peer's cell, that the peer is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from core.adapters.llm.scripted import Say, ScriptedLLM
from core.kernel.agent import Agent, Limits, StepContext
from core.kernel.events import ToolResult
from core.kernel.model import LLMRequest
from core.kernel.tools import Tool, ToolContext

ROOT = Path(__file__).resolve().parents[1]

# --- the contenders (the table's columns) ---------------------------------------------------------------------

OURS = "stepfold"
BOTO3 = "boto3 alone"
LANGGRAPH = "LangGraph + DDB saver"
PYDANTIC_AI = "Pydantic AI"
OPENAI_AGENTS = "OpenAI Agents"
STRANDS = "Strands"
DURABLE = "Lambda durable SDK"
COLUMNS = (OURS, BOTO3, LANGGRAPH, PYDANTIC_AI, OPENAI_AGENTS, STRANDS, DURABLE)
PEER_MODULES = {
    LANGGRAPH: "langgraph_checkpoint_dynamodb",
    PYDANTIC_AI: "pydantic_ai",
    OPENAI_AGENTS: "agents",
    STRANDS: "strands",
}

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def fake_aws_env() -> None:
    """Credentials moto accepts, so nothing can reach a real account."""
    for key, value in FAKE_AWS_ENV.items():
        os.environ.setdefault(key, value)


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def peer_missing(contender: str) -> str | None:
    """Why a peer cannot be measured in this interpreter, or None when it can."""
    module = PEER_MODULES.get(contender)
    if module is None or installed(module):
        return None
    return "not installed here (peers live in .venv-bench: `make bench`)"


# --- the bench agent: one tool, never done ----------------------------------------------------------------------


class Lookup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int


def lookup_result(n: int) -> dict[str, Any]:
    """What the lookup tool returns: the same value for every contender."""
    return {"n": n, "value": f"record {n}", "tags": ["a", "b", "c"]}


def lookup(args: Lookup, _: ToolContext) -> dict[str, Any]:
    return lookup_result(args.n)


BENCH_TASK = "look everything up"
BENCH_AGENT = Agent(
    name="bench",
    description="looks things up, forever",
    prompt_id="calculator",
    prompt_version=1,
    tools=(Tool("lookup", "Look up record n.", Lookup, lookup, idempotent=True),),
    model="scripted:bench",
    limits=Limits(max_steps=1_000_000, max_repeats=1_000_000),
)
EVENTS_PER_STEP = 3
"""A bench step appends llm_call, tool_call and tool_result."""


def brain(request: LLMRequest) -> Say:
    """Look up the next record: a new argument every step, so no repeat limit is ever hit."""
    done = sum(isinstance(e, ToolResult) for e in request.events)
    return Say("lookup", {"n": done})


def bench_llm() -> ScriptedLLM:
    return ScriptedLLM(brain, name="bench")


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def bench_context() -> StepContext:
    """A deterministic clock (one millisecond a tick) and the repo's prompts."""
    ticks = count()
    return StepContext(clock=lambda: T0 + timedelta(milliseconds=next(ticks)))


# --- byte metering ------------------------------------------------------------------------------------------------

WRITES = ("TransactWriteItems", "PutItem", "UpdateItem", "BatchWriteItem", "PutObject")
READS = ("Query", "GetItem", "BatchGetItem", "GetObject")


class Meter:
    """Counts request bytes (writes) and response bytes (reads) through botocore's event hooks."""

    def __init__(self) -> None:
        self.bytes: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self.largest_write = 0
        """The largest single write request since the last take."""

    def attach(self, client: Any) -> Meter:
        service = client.meta.service_model.service_id.hyphenize()
        for op in WRITES:
            client.meta.events.register(f"before-send.{service}.{op}", self._sent)
        for op in READS:
            client.meta.events.register(f"after-call.{service}.{op}", self._received)
        return self

    def _sent(self, request: Any, **_: Any) -> None:
        body = request.body
        size = len(body) if isinstance(body, bytes | str) else int(request.headers.get("Content-Length", 0))
        self.bytes["write"] += size  # a streamed S3 body counts its declared length
        self.largest_write = max(self.largest_write, size)
        self.calls["write"] += 1

    def _received(self, http_response: Any, **_: Any) -> None:
        self.bytes["read"] += len(http_response.content or b"")
        self.calls["read"] += 1

    def take(self) -> tuple[int, int]:
        """(bytes written, bytes read) since the last take."""
        out = (self.bytes["write"], self.bytes["read"])
        self.bytes.clear()
        self.calls.clear()
        self.largest_write = 0
        return out


# --- statistics ---------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def human_bytes(n: float) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} MB"
    if n >= 10_000:
        return f"{n / 1000:.0f} kB"
    return f"{n:,.0f} B"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


# --- the report -----------------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: a measure, a cell per contender, the target and whether we met it."""

    measure: str
    cells: dict[str, str] = field(default_factory=dict)
    target: str = ""
    verdict: str = ""


@dataclass
class Report:
    """What one benchmark script found: its rows, its notes and the lines it prints when run alone."""

    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)

    def row(self, measure: str, target: str = "", verdict: str = "", **cells: str) -> Row:
        row = Row(measure, {COLUMN_OF[k]: v for k, v in cells.items()}, target, verdict)
        self.rows.append(row)
        if verdict.startswith("MISSED"):
            self.missed.append(f"{self.title}: {measure}")
        return row


COLUMN_OF = {
    "ours": OURS,
    "boto3": BOTO3,
    "langgraph": LANGGRAPH,
    "pydantic_ai": PYDANTIC_AI,
    "openai_agents": OPENAI_AGENTS,
    "strands": STRANDS,
    "durable": DURABLE,
}


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def render_table(reports: Sequence[Report]) -> str:
    """One markdown table for every report. A cell "n/a: why" becomes "n/a [k]", with the reason in a note."""
    head = ["#", "measure", *COLUMNS, "target", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    reasons: dict[str, int] = {}

    def cell(text: str) -> str:
        if text.startswith("n/a: "):
            key = reasons.setdefault(text.removeprefix("n/a: "), len(reasons) + 1)
            text = f"n/a [{key}]"
        return text.replace("|", "/")

    for report in reports:
        for row in report.rows:
            cells = [report.title.split(" ", 1)[0], row.measure, *(row.cells.get(c, "") for c in COLUMNS)]
            lines.append("| " + " | ".join(cell(c) for c in [*cells, row.target, row.verdict]) + " |")
    notes = [f"- [{key}] n/a: {why}" for why, key in reasons.items()]
    notes += [f"- {report.title}: {note}" for report in reports for note in report.notes]
    return "\n".join(lines + (["", *notes] if notes else []))


def print_report(report: Report) -> None:
    print()
    print(render_table([report]))


def machine_line() -> str:
    """The machine a run happened on, for the README."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}){mem}, "
        f"CPython {platform.python_version()}"
    )


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` takes."""
    import time

    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def profile(fn: Callable[[], Any], top: int = 6) -> tuple[list[str], dict[str, float]]:
    """cProfile ``fn``: the ``top`` functions by own time as short lines, and the share of the total per function."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values()) or 1.0
    shares: dict[str, float] = {}
    for (filename, line, name), entry in raw.items():
        shares[f"{Path(filename).name}:{line}({name})"] = entry[2] / total
    cumulative: dict[str, float] = {}
    for (filename, line, name), entry in raw.items():
        cumulative[f"{Path(filename).name}:{line}({name})"] = entry[3] / total
    ranked = sorted(shares.items(), key=lambda pair: -pair[1])[:top]
    return [f"{name} {share:.0%}" for name, share in ranked], cumulative
