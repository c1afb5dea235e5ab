"""5. Context size: the tokens a model reads for one step, stepfold's request vs a chat-messages framework's.

The threads are made by the real kernel (memory store, scripted model) and rendered by ``core.kernel.context.render``
with the agent's options (pruning on: resolved errors and the failed calls behind them left out, tool results
cut at 2,000 characters). Two kinds of thread:

- lookups: one small tool result a step, nothing to prune;
- fetches + fixed errors: the same lookups, a 6,800-character page fetched every fourth step and a bad argument
  every fifth model call, fixed on the next.

Both sides are one chat-completions request with the same system prompt and the same tool definitions, counted the
way OpenAI's cookbook counts a request (``benchmarks/_chat_tokens.py`` says exactly how):

- stepfold, as ``core/adapters/llm/openai.py`` sends it: the system message and ONE user message holding the
  rendered context;
- the baseline, as a chat-messages framework sends the same conversation: the user turn, one assistant message per
  tool call (its name and its arguments as compact JSON) and one ``tool`` message per result or error (the result as
  compact JSON). Call ids and the messages' JSON wrappers are not counted: the model does not read them as text,
  so the baseline is the smallest that form can be.

Tokens are counted with tiktoken's ``o200k_base`` (GPT-4o and later; the verdicts) and ``cl100k_base``, read from
the files a PyPI wheel ships, so nothing is downloaded at run time. It also writes ``CONTEXT_SAMPLE.md``: one short
thread both ways.

Run: ``.venv-bench/bin/python benchmarks/context_size.py`` (``make bench`` runs it with the others).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import count
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import BaseModel, ConfigDict

from benchmarks._chat_tokens import (
    Message,
    TokenCount,
    call_message,
    compact,
    encodings,
    message_tokens,
    request_tokens,
    tool_message,
    tool_tokens,
)
from benchmarks._common import (
    BENCH_AGENT,
    BENCH_TASK,
    T0,
    Report,
    bench_context,
    brain,
    print_report,
    verdict,
)
from core.adapters.llm.scripted import Say, ScriptedLLM
from core.adapters.store.memory import MemoryThreadStore
from core.kernel.agent import Agent, system_prompt
from core.kernel.context import ContextOptions, render
from core.kernel.events import Error, Event, LLMCall, ToolCall, ToolResult, ToolStarted, UserInput
from core.kernel.model import LLMRequest
from core.kernel.runner import advance
from core.kernel.thread import Thread, start_thread
from core.kernel.tools import Tool, ToolContext

TARGET_LOOKUP = 0.25
TARGET_BIG = 0.60
VERDICT_ENCODING = "o200k_base"
SAMPLE = Path(__file__).resolve().parent / "CONTEXT_SAMPLE.md"
SAMPLE_EVENTS = 19
"""The sample thread: three lookups, a page fetch, a bad argument and its fix, then one more lookup."""

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
    """A thread of at least ``events`` events, run by the real kernel; ids are numbered, so every run is the same."""
    store = MemoryThreadStore()
    numbers = count(1)
    ctx = replace(bench_context(), ids=lambda prefix: f"{prefix}_{next(numbers):04d}")
    llm = ScriptedLLM(brain, name=agent.name)
    thread = store.create(start_thread(f"{agent.name}-{events}", agent.name, BENCH_TASK, now=T0))
    seq = thread.version
    while seq < events:
        seq = advance(store, thread.id, seq, agents={agent.name: agent}, llm_for=lambda _: llm, ctx=ctx).seq
    return store.load(thread.id)


# --- the two requests -------------------------------------------------------------------------------------------


def chat_messages(thread: Thread) -> list[dict[str, Any]]:
    """The thread as chat-completions messages, as an OpenAI-compatible framework keeps and sends them."""
    messages: list[dict[str, Any]] = []
    events = thread.events
    for event in events:
        match event:
            case UserInput():
                messages.append({"role": "user", "content": event.text})
            case ToolCall():
                messages.append(_assistant_call(event.call_id, event.tool, event.args))
            case ToolResult():
                messages.append({"role": "tool", "tool_call_id": event.call_id, "content": compact(event.result)})
            case LLMCall() if event.output.get("name") and not _followed_by_call(events, event):
                # a call that failed validation never became a tool_call: the model's raw call, then the error
                messages.append(_assistant_call(f"call_{event.seq}", event.output["name"], event.output["arguments"]))
            case Error():
                call_id = event.call_id or f"call_{event.seq - 1}"
                messages.append({"role": "tool", "tool_call_id": call_id, "content": f"Error: {event.message}"})
            case LLMCall() | ToolStarted():
                pass
            case _:
                raise ValueError(f"no chat-messages form for a {event.type} event here")
    return messages


def _assistant_call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": compact(arguments)}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def _followed_by_call(events: tuple[Event, ...], llm_call: LLMCall) -> bool:
    following = events[llm_call.seq + 1] if llm_call.seq + 1 < len(events) else None
    return isinstance(following, ToolCall)


def as_read(messages: list[dict[str, Any]]) -> list[Message]:
    """What the model reads of each message: its content, or the tool call's name and arguments."""
    read: list[Message] = []
    for message in messages:
        if message.get("tool_calls"):
            function = message["tool_calls"][0]["function"]
            read.append(call_message(function["name"], function["arguments"]))
        elif message["role"] == "tool":
            read.append(tool_message(message["content"]))
        else:
            read.append(Message(message["role"], (message["content"],)))
    return read


@dataclass(frozen=True)
class Sides:
    """One thread as both requests: the texts, and how many tokens each costs with one encoding."""

    system: str
    context: str
    unpruned: str
    messages: list[dict[str, Any]]
    agent: Agent

    def ours(self, tokens: TokenCount, context: str | None = None) -> int:
        user = Message("user", (self.context if context is None else context,))
        return request_tokens(self.system, [user], self.agent.registry.specs(), tokens)

    def theirs(self, tokens: TokenCount) -> int:
        return request_tokens(self.system, as_read(self.messages), self.agent.registry.specs(), tokens)

    def saving(self, tokens: TokenCount) -> float:
        return 1 - self.ours(tokens) / self.theirs(tokens)


def sides(thread: Thread, agent: Agent) -> Sides:
    prompt = bench_context().prompts.load(agent.prompt_id, agent.prompt_version)
    unbounded = replace(agent.context, max_tokens=10**9)  # the budget would drop whole blocks: compare like with like
    unpruned = ContextOptions(max_tokens=10**9, max_result_chars=10**9, drop_resolved_errors=False)
    return Sides(
        system_prompt(agent, prompt),
        render(thread, unbounded),
        render(thread, unpruned),
        chat_messages(thread),
        agent,
    )


# --- the sample -----------------------------------------------------------------------------------------------


def write_sample(tokens: TokenCount) -> Path:
    """``CONTEXT_SAMPLE.md``: one short thread as stepfold renders it and as chat messages, with token counts."""
    thread = make_thread(MIXED_AGENT, mixed_brain, SAMPLE_EVENTS)
    both = sides(thread, MIXED_AGENT)
    specs = MIXED_AGENT.registry.specs()
    fixed = message_tokens([Message("system", (both.system,))], tokens) + tool_tokens(specs, tokens)
    ours, theirs = both.ours(tokens), both.theirs(tokens)
    messages = ",\n".join(f"  {json.dumps(m, ensure_ascii=False)}" for m in both.messages)
    text = f"""# What the model reads: one thread, two ways

Written by `benchmarks/context_size.py` (benchmark 5) on every run; do not edit it by hand.

A short thread of the benchmark's "fetches + fixed errors" kind, {len(thread.events)} events made by the real kernel:
three lookups, a page fetch (a 6,800-character result), a call with a bad argument and its fix, one more lookup.
Both requests also carry the same system prompt and the same {len(specs)} tool definitions ({fixed:,} tokens
together). Tokens are {VERDICT_ENCODING}, counted as `benchmarks/_chat_tokens.py` explains.

| request | tokens the model reads |
|---|---|
| stepfold: system + the rendered context as one user message + tools | {ours:,} |
| chat messages: system + one message per turn, call and result + tools | {theirs:,} |
| stepfold / chat messages | {ours / theirs:.2f} ({1 - ours / theirs:.0%} fewer) |

What differs: no call ids and no tool names repeated on results; a call and its result are one line each
(`→ lookup(n=0)`, `← n=0 ...`) instead of a message each; values are written as `key=value` pairs, with quotes
only where a string needs them; the page is cut at 2,000 characters with a marker saying how much more there
was; the bad call and its error are left out once a later call succeeded.

## stepfold: the rendered context (the one user message)

```text
{both.context}
```

## A chat-messages framework: the same thread as chat-completions `messages`

One message a line. The model reads each message's role and content, and a tool call's name and arguments; the
baseline counts exactly that and nothing of the JSON around it (ids, `type`, `function`).

```json
[
{messages}
]
```
"""
    SAMPLE.write_text(text, encoding="utf-8")
    return SAMPLE


# --- the report -----------------------------------------------------------------------------------------------


def run() -> Report:
    report = Report("5 context size")
    tokens = encodings()
    names = list(tokens)
    threads = {
        "lookups, 100 events": (make_thread(BENCH_AGENT, brain, 100), BENCH_AGENT),
        "lookups, 1,000 events": (make_thread(BENCH_AGENT, brain, 1000), BENCH_AGENT),
        "fetches + fixed errors, 100 events": (make_thread(MIXED_AGENT, mixed_brain, 100), MIXED_AGENT),
        "fetches + fixed errors, 1,000 events": (make_thread(MIXED_AGENT, mixed_brain, 1000), MIXED_AGENT),
    }
    worst = {"lookups": 1.0, "fetches": 1.0}
    for label, (thread, agent) in threads.items():
        both = sides(thread, agent)
        cells: list[str] = []
        for name in names:
            count_with = tokens[name]
            ours, theirs = both.ours(count_with), both.theirs(count_with)
            unpruned = both.ours(count_with, both.unpruned)
            saving = 1 - ours / theirs
            if name == VERDICT_ENCODING:
                kind = label.split(",", 1)[0].split(" ", 1)[0]
                worst[kind] = min(worst[kind], saving)
            cells.append(f"{ours:,} vs {theirs:,} ({saving:.0%} fewer; {1 - unpruned / theirs:.0%} without pruning)")
            report.say(f"{label}: {name}: ours {ours} tokens, chat messages {theirs}, ours unpruned {unpruned}")
        report.row(f"tokens the model reads, {label} ({' / '.join(names)})", ours=" / ".join(cells))
    report.say(f"fewer tokens than the model reads, lookup: {worst['lookups']:.0%}")
    report.say(f"with big results: {worst['fetches']:.0%}")
    for key, measure, target in (
        ("lookups", "fewer tokens than the model reads, lookups (nothing to prune; worst of 100 / 1,000 events)", 0),
        ("fetches", "fewer tokens than the model reads, with big results (worst of 100 / 1,000 events)", 1),
    ):
        goal = (TARGET_LOOKUP, TARGET_BIG)[target]
        report.row(
            measure,
            target=f">= {goal:.0%} fewer ({VERDICT_ENCODING})",
            verdict=verdict(worst[key] >= goal),
            ours=f"{worst[key]:.1%}",
            langgraph="n/a: the peers send these chat messages (the baseline), in their own serialisation",
        )
    sample = write_sample(tokens[VERDICT_ENCODING])
    report.say(f"wrote {sample.relative_to(sample.parents[1])}")
    report.notes.append(
        "cells read 'stepfold vs chat messages': the tokens of one whole chat-completions request, system prompt "
        "and tool definitions included (the same on both sides), counted as OpenAI's cookbook counts a request; of "
        "the chat messages only what the model reads is counted (roles, contents, tool names and compact JSON "
        "arguments and results; no call ids), so they are the smallest that form can be; no token budget (the "
        "12,000-token budget would drop old blocks, which is not a like-for-like comparison); 'without pruning' "
        "renders every result whole and keeps resolved errors; tokenizers: tiktoken's o200k_base (the verdicts) and "
        "cl100k_base from the files litellm==1.110.2's wheel ships; sample: benchmarks/CONTEXT_SAMPLE.md"
    )
    return report


def main() -> int:
    report = run()
    print_report(report)
    return 0 if not report.missed else 1


if __name__ == "__main__":
    sys.exit(main())
