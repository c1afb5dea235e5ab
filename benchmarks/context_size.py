"""5. Context size: stepfold's rendered context vs the same thread as OpenAI chat-messages JSON.

The threads are made by the real kernel (memory store, scripted model) and rendered by ``core.kernel.context.render``
with the agent's options (pruning on: resolved errors and the failed calls behind them left out, tool results
cut at 2,000 characters). The baseline is what a framework sends to an OpenAI-compatible API for the same
conversation: ``messages`` with the user turn, one assistant message with ``tool_calls`` per call and one ``tool``
message per result or error, serialised with ``json.dumps`` (the system prompt and tool schemas are the same
on both sides and left out).

Tokens are counted with two vocabularies that ship inside a PyPI package, so nothing is downloaded at run time:
``o200k_base`` (GPT-4o; tiktoken reading the file litellm's wheel ships, ``TIKTOKEN_CACHE_DIR`` pointed at it)
and Claude's ``anthropic_tokenizer.json`` (HuggingFace ``tokenizers``), both from ``litellm==1.110.2``, fetched
with ``pip download --no-deps`` and read from the wheel.

Run: ``python benchmarks/context_size.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import BaseModel, ConfigDict

from benchmarks._common import (
    BENCH_AGENT,
    BENCH_TASK,
    ROOT,
    T0,
    Report,
    bench_context,
    installed,
    print_report,
    verdict,
)
from core.adapters.llm.scripted import Say, ScriptedLLM
from core.adapters.store.memory import MemoryThreadStore
from core.kernel.agent import Agent
from core.kernel.context import ContextOptions, approx_tokens, render
from core.kernel.events import Error, LLMCall, ToolCall, ToolResult, UserInput
from core.kernel.model import LLMRequest
from core.kernel.runner import advance
from core.kernel.thread import Thread, start_thread
from core.kernel.tools import Tool, ToolContext

TARGET_SAVING = 0.30
LITELLM = "litellm==1.110.2"
WHEELS = ROOT / ".venv-bench" / "wheels"
VOCABS = ROOT / ".venv-bench" / "tokenizers"
O200K_FILE = "fb374d419588a4632f3f557e76b4b70aebbca790"
"""tiktoken's cache name for o200k_base (the sha1 of its download URL)."""
CLAUDE_FILE = "anthropic_tokenizer.json"

# --- a thread with what real ones have: small results, big documents, errors the model then fixes -------------


class Fetch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str


def fetch(args: Fetch, _: ToolContext) -> dict[str, Any]:
    body = " ".join(f"Paragraph {i} of {args.url}: the quick brown fox jumps over the lazy dog." for i in range(80))
    return {"url": args.url, "status": 200, "text": body}


MIXED_AGENT = replace(
    BENCH_AGENT,
    name="mixed",
    tools=(*BENCH_AGENT.tools, Tool("fetch_page", "Fetch a web page.", Fetch, fetch, idempotent=True)),
)


def mixed_brain(request: LLMRequest) -> Say:
    """Lookups; every fourth step a page fetch; every fifth model call a bad argument, fixed on the next call."""
    calls = sum(isinstance(e, LLMCall) for e in request.events)
    results = sum(isinstance(e, ToolResult) for e in request.events)
    if calls % 5 == 4:
        return Say("lookup", {"n": "not a number"})
    if results % 4 == 3:
        return Say("fetch_page", {"url": f"https://example.com/{results}"})
    return Say("lookup", {"n": results})


def make_thread(agent: Agent, brain: Callable[[LLMRequest], Say], events: int) -> Thread:
    store, ctx = MemoryThreadStore(), bench_context()
    llm = ScriptedLLM(brain, name=agent.name)
    thread = store.create(start_thread(f"{agent.name}-{events}", agent.name, BENCH_TASK, now=T0))
    seq = thread.version
    while seq < events:
        seq = advance(store, thread.id, seq, agents={agent.name: agent}, llm_for=lambda _: llm, ctx=ctx).seq
    return store.load(thread.id)


def openai_messages(thread: Thread) -> list[dict[str, Any]]:
    """The thread as chat-completions messages: what an OpenAI-compatible framework keeps and sends."""
    messages: list[dict[str, Any]] = []
    for event in thread.events:
        match event:
            case UserInput():
                messages.append({"role": "user", "content": event.text})
            case ToolCall():
                call = {
                    "id": event.call_id,
                    "type": "function",
                    "function": {"name": event.tool, "arguments": json.dumps(event.args)},
                }
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            case ToolResult():
                content = event.result if isinstance(event.result, str) else json.dumps(event.result)
                messages.append({"role": "tool", "tool_call_id": event.call_id, "content": content})
            case LLMCall() if event.output.get("name") and not _called(thread, event.seq):
                # a call that failed validation never became a tool_call: the model's raw call and the error
                call = {
                    "id": f"call_{event.seq}",
                    "type": "function",
                    "function": {"name": event.output["name"], "arguments": json.dumps(event.output.get("arguments"))},
                }
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            case Error():
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": event.call_id or f"call_{event.seq - 1}",
                        "content": f"Error: {event.message}",
                    }
                )
            case _:
                pass
    return messages


def _called(thread: Thread, llm_seq: int) -> bool:
    following = thread.events[llm_seq + 1] if llm_seq + 1 < len(thread.events) else None
    return isinstance(following, ToolCall)


# --- tokenizers -----------------------------------------------------------------------------------------------


def vocabularies() -> Path:
    """The two vocabulary files, unpacked from the litellm wheel (downloaded once with pip, no dependencies)."""
    if (VOCABS / O200K_FILE).exists() and (VOCABS / CLAUDE_FILE).exists():
        return VOCABS
    wheels = sorted(WHEELS.glob("litellm-*.whl"))
    if not wheels:
        WHEELS.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", LITELLM, "-d", str(WHEELS)],
            check=True,
            capture_output=True,
        )
        wheels = sorted(WHEELS.glob("litellm-*.whl"))
    VOCABS.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[-1]) as wheel:
        for name in (O200K_FILE, CLAUDE_FILE):
            (VOCABS / name).write_bytes(wheel.read(f"litellm/litellm_core_utils/tokenizers/{name}"))
    return VOCABS


def counters() -> dict[str, Callable[[str], int]]:
    """Token counters by name; the ~4 chars/token estimate when the tokenizer packages are absent."""
    if not (installed("tiktoken") and installed("tokenizers")):
        return {"chars/4 (no tokenizer installed)": approx_tokens}
    folder = vocabularies()
    os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
    import tiktoken  # type: ignore[import-not-found, unused-ignore]
    from tokenizers import Tokenizer  # type: ignore[import-not-found, unused-ignore]

    o200k = tiktoken.get_encoding("o200k_base")
    claude = Tokenizer.from_file(str(folder / CLAUDE_FILE))
    return {
        "o200k_base": lambda text: len(o200k.encode(text, disallowed_special=())),
        "Claude tokenizer.json": lambda text: len(claude.encode(text).ids),
    }


def run() -> Report:
    report = Report("5 context size")
    count = counters()
    names = list(count)
    threads = {
        "lookups, 100 events": make_thread(BENCH_AGENT, _bench_brain(), 100),
        "lookups, 1,000 events": make_thread(BENCH_AGENT, _bench_brain(), 1000),
        "fetches + fixed errors, 100 events": make_thread(MIXED_AGENT, mixed_brain, 100),
        "fetches + fixed errors, 1,000 events": make_thread(MIXED_AGENT, mixed_brain, 1000),
    }
    unbounded = ContextOptions(max_tokens=10**9)  # the budget would drop whole blocks: compare like with like
    pruned = replace(unbounded, max_result_chars=BENCH_AGENT.context.max_result_chars)
    unpruned = replace(unbounded, drop_resolved_errors=False, max_result_chars=10**9)
    worst = 1.0
    for label, thread in threads.items():
        ours = render(thread, pruned)
        raw = render(thread, unpruned)
        theirs = json.dumps(openai_messages(thread))
        cells: list[str] = []
        for name in names:
            a, b, c = count[name](ours), count[name](theirs), count[name](raw)
            saving = 1 - a / b
            worst = min(worst, saving)
            cells.append(f"{a:,} vs {b:,} ({saving:.0%} fewer; {1 - c / b:.0%} without pruning)")
            report.say(f"{label}: {name}: ours {a} tokens, OpenAI JSON {b}, unpruned render {c}")
        report.row(
            f"tokens, {label} ({' / '.join(names)})",
            ours=" / ".join(cells),
        )
        report.row(
            f"characters, {label}",
            ours=f"{len(ours):,} vs {len(theirs):,} ({1 - len(ours) / len(theirs):.0%} fewer)",
        )
    report.rows[0].target = f">= {TARGET_SAVING:.0%} fewer tokens"
    report.rows[0].verdict = verdict(worst >= TARGET_SAVING) + f" (worst case {worst:.0%})"
    if worst < TARGET_SAVING:
        report.missed.append("5 context size: tokens")
    peers = "n/a: the peers send this same chat-messages JSON (their own serialisation) to the model"
    for key in ("langgraph", "pydantic_ai", "openai_agents", "strands"):
        report.rows[0].cells[_column(key)] = peers if key == "langgraph" else ""
    report.notes.append(
        "cells read 'stepfold render vs OpenAI chat-messages JSON'; both without the system prompt and tool schemas; "
        "no token budget (the 12,000-token budget would drop old blocks, which is not a like-for-like comparison); "
        + (
            "tokenizers: o200k_base via tiktoken from the file litellm==1.110.2 ships, and Claude's tokenizer.json "
            "from the same wheel via HuggingFace tokenizers"
            if "o200k_base" in count
            else "no tokenizer package here, so tokens are the ~4 characters a token estimate (`make bench` counts "
            "them with real vocabularies)"
        )
    )
    return report


def _column(key: str) -> str:
    from benchmarks._common import COLUMN_OF

    return COLUMN_OF[key]


def _bench_brain() -> Callable[[LLMRequest], Say]:
    from benchmarks._common import brain

    return brain


def main() -> int:
    report = run()
    print_report(report)
    return 0 if not report.missed else 1


if __name__ == "__main__":
    sys.exit(main())
