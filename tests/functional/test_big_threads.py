"""A 10,000-event thread with several 1 MB tool results: it loads, steps and renders within limits.

The thread is a long research run: a user input, then steps of (model call, tool call, tool result), and every 20
steps the agent's step limit asks a person, who says to go on (so the default limits hold all the way). Four of
the tool results are 1 MB each.

It lives in the real :class:`~core.adapters.store.dynamodb.DynamoThreadStore` on moto. moto copies the whole table for
each
item of a transaction, so 10,000 events by appends would take minutes: most events are seeded in the store's
documented layout with BatchWriteItem (as ``test_store_dynamodb.py`` does), while the 1 MB results go through
``store.append`` and so the store's own S3 offload. Loading the thread back from a fresh store (no cache) proves the
seeded items are ones the store reads as its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from core.adapters.llm.scripted import Say, ScriptedLLM
from core.adapters.store.dynamodb import DynamoThreadStore
from core.kernel.agent import Agent, StepContext
from core.kernel.context import LEGEND, approx_tokens, notation, render
from core.kernel.events import (
    Error,
    Event,
    HumanRequest,
    HumanResponse,
    LLMCall,
    ToolCall,
    ToolResult,
    dump_event,
    parse_event,
)
from core.kernel.model import LLMRequest
from core.kernel.runner import advance
from core.kernel.thread import Thread, fold, start_thread
from core.kernel.tools import Tool, ToolContext
from tests.functional.conftest import scratch_aws

THREAD = "th_big"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
EVENTS = 10_000
REVIEW_EVERY = 20
"""Steps between two reviews: under the default ``Limits.max_steps`` (25), so the agent's own limits hold."""
STEPS = 3_175
"""1 + 3 x 3,175 + 3 x 158 reviews = 10,000 events; it ends 15 steps after a review, still under the limit."""
BIG_STEPS = (800, 1_600, 2_400, 3_150)
"""The steps whose tool result is 1 MB; the last is recent enough to be in the model's context."""
MB = 1_000_000
Item = dict[str, Any]


class Fetch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    page: int


def fetch(args: Fetch, _: ToolContext) -> dict[str, Any]:
    return {"page": args.page, "text": f"page {args.page}: nothing new"}


AGENT = Agent(
    name="researcher",
    description="reads page after page",
    prompt_id="calculator",
    prompt_version=1,
    tools=(Tool("fetch", "Fetch page n.", Fetch, fetch, idempotent=True),),
    model="scripted:researcher",
)


def next_page(request: LLMRequest) -> Say:
    """The next page: a new argument every step, so no repeat limit is hit."""
    return Say("fetch", {"page": sum(isinstance(e, ToolResult) for e in request.events) + 1})


# --- the thread ---------------------------------------------------------------------------------------------


@dataclass
class Builder:
    """Events of a long run with contiguous seqs and a clock that ticks a second per event."""

    events: list[Event] = field(default_factory=list)
    ticks: Iterator[int] = field(default_factory=lambda: count(1))

    def add(self, cls: type[Event], **fields: Any) -> None:
        self.events.append(cls(seq=len(self.events) + 1, ts=T0 + timedelta(seconds=next(self.ticks)), **fields))

    def step(self, n: int, result: Any) -> None:
        self.add(
            LLMCall,
            model="scripted:researcher",
            prompt_id="calculator/v1",
            prompt_hash="0" * 64,
            input_tokens=9_000,
            output_tokens=20,
            cost_usd=0.0,
            latency_ms=400,
            output={"name": "fetch", "arguments": {"page": n}},
        )
        self.add(ToolCall, call_id=f"call_{n}", tool="fetch", args={"page": n})
        self.add(ToolResult, call_id=f"call_{n}", tool="fetch", result=result)

    def review(self, n: int) -> None:
        why = f"reached the limit of {REVIEW_EVERY} model calls"
        self.add(Error, kind="limit", message=why)
        self.add(HumanRequest, kind="question", approval_id=f"apr_{n}", question=why, origin="limit")
        self.add(HumanResponse, approval_id=f"apr_{n}", decision="answer", by="ann", answer="go on")


def big_result(n: int) -> dict[str, Any]:
    return {"page": n, "text": f"page {n} " + "x" * MB}


def long_thread() -> Thread:
    """A user input, ``STEPS`` steps and a review after every ``REVIEW_EVERY``: ``EVENTS`` events in all."""
    b = Builder()
    for n in range(1, STEPS + 1):
        b.step(n, big_result(n) if n in BIG_STEPS else {"page": n, "text": f"page {n}: {n * 7919 % 10007}"})
        if n % REVIEW_EVERY == 0:
            b.review(n)
    return start_thread(THREAD, AGENT.name, "read every page and tell me what changed", now=T0).extend(b.events)


# --- the store ----------------------------------------------------------------------------------------------


class Meter:
    """Bytes of write requests and read responses, through botocore's event hooks (as bytes_per_step.py)."""

    WRITES = ("TransactWriteItems", "PutItem", "UpdateItem", "BatchWriteItem", "PutObject")
    READS = ("Query", "GetItem", "BatchGetItem", "GetObject")

    def __init__(self, *clients: Any) -> None:
        self.written = self.read = 0
        self.writes: list[str] = []
        for client in clients:
            service = client.meta.service_model.service_id.hyphenize()
            for op in self.WRITES:
                client.meta.events.register(f"before-send.{service}.{op}", self._sent)
            for op in self.READS:
                client.meta.events.register(f"after-call.{service}.{op}", self._received)

    def _sent(self, request: Any, event_name: str, **_: Any) -> None:
        body = request.body
        self.written += len(body) if isinstance(body, bytes | str) else int(request.headers.get("Content-Length", 0))
        self.writes.append(event_name.rsplit(".", 1)[-1])

    def _received(self, http_response: Any, model: Any, **_: Any) -> None:
        if model.has_streaming_output:  # S3 GetObject: reading .content here would consume the body
            self.read += int(http_response.headers.get("content-length", 0))
        else:
            self.read += len(http_response.content or b"")

    def reset(self) -> None:
        self.written = self.read = 0
        self.writes = []


@dataclass
class Aws:
    dynamodb: Any
    s3: Any
    table: str
    bucket: str

    def store(self, **options: Any) -> DynamoThreadStore:
        return DynamoThreadStore(self.table, self.dynamodb, self.s3, self.bucket, **options)

    def items_from(self, thread_id: str, seq: int) -> list[Item]:
        """The header, then the event items from ``seq`` on, read straight from the table."""
        items: list[Item] = self.dynamodb.query(
            TableName=self.table,
            KeyConditionExpression="PK = :pk AND SK BETWEEN :from AND :to",
            ExpressionAttributeValues={
                ":pk": {"S": f"THREAD#{thread_id}"},
                ":from": {"S": f"EV#{seq:010d}"},
                ":to": {"S": "META"},
            },
            ConsistentRead=True,
        )["Items"]
        return [items[-1], *items[:-1]]

    def seed(self, thread: Thread, events: Sequence[Event]) -> None:
        """Write ``events`` (already in ``thread``) and ``thread``'s header in the documented layout."""
        pk = {"S": f"THREAD#{thread.id}"}
        items: list[Item] = [
            {
                "PK": pk,
                "SK": {"S": f"EV#{event.seq:010d}"},
                "t": {"S": event.type},
                "e": {"S": json.dumps(dump_event(event), separators=(",", ":"), ensure_ascii=False)},
            }
            for event in events
        ]
        stamp = {"S": T0.isoformat()}
        header = {"status": {"S": fold(thread).status}, "created_at": stamp, "updated_at": stamp}
        header |= {"agent": {"S": thread.agent}, "labels": {"M": {k: {"S": v} for k, v in thread.labels.items()}}}
        items.append({"PK": pk, "SK": {"S": "META"}, "version": {"N": str(thread.version)}, **header})
        for start in range(0, len(items), 25):
            chunk = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            self.dynamodb.batch_write_item(RequestItems={self.table: chunk})


@pytest.fixture(scope="module")
def aws() -> Iterator[Aws]:
    with scratch_aws() as scratch:
        yield Aws(scratch.dynamodb, scratch.s3, scratch.table, scratch.bucket)


@dataclass(frozen=True)
class Stored:
    thread: Thread
    seconds: float


@pytest.fixture(scope="module")
def stored(aws: Aws) -> Stored:
    """The long thread in DynamoDB and S3: seeded in between, each 1 MB result appended by the store itself."""
    started = time.perf_counter()
    thread = long_thread()
    writer = aws.store()
    writer.create(Thread(id=thread.id, agent=thread.agent, events=thread.events[:1], labels=thread.labels))
    done = 1
    big = [e.seq for e in thread.events if isinstance(e, ToolResult) and e.seq and len(str(e.result)) > MB]
    assert len(big) == len(BIG_STEPS)
    for seq in [*big, thread.version]:
        head = Thread(id=thread.id, agent=thread.agent, events=thread.events[:seq], labels=thread.labels)
        aws.seed(head, thread.events[done:seq])
        done = seq
        if seq < thread.version:
            writer.append(thread.id, seq, [thread.events[seq]])
            done += 1
    return Stored(thread, time.perf_counter() - started)


def test_the_thread_is_as_big_as_promised(stored: Stored) -> None:
    thread = stored.thread
    assert thread.version == EVENTS
    big = [e for e in thread.events if isinstance(e, ToolResult) and len(json.dumps(e.result)) > MB]
    assert len(big) == len(BIG_STEPS) >= 3
    state = fold(thread)
    assert (state.status, state.pending, state.steps) == ("running", None, STEPS)
    assert state.steps_since_review < AGENT.limits.max_steps


def test_it_loads_back_intact_from_a_fresh_store(aws: Aws, stored: Stored) -> None:
    meter = Meter(aws.dynamodb, aws.s3)
    started = time.perf_counter()

    loaded = aws.store(cache=False).load(THREAD)

    seconds = time.perf_counter() - started
    assert loaded.version >= EVENTS  # the step test may have run first and added its events
    assert Thread(id=THREAD, agent=AGENT.name, events=loaded.events[:EVENTS], labels=loaded.labels) == stored.thread
    offloaded = [k["Key"] for k in aws.s3.list_objects_v2(Bucket=aws.bucket).get("Contents", [])]
    assert len(offloaded) == len(BIG_STEPS)  # only the 1 MB results left DynamoDB
    assert meter.read > len(BIG_STEPS) * MB
    print(f"\nseeded in {stored.seconds:.1f}s; a cold load read {meter.read / MB:.1f} MB in {seconds:.1f}s")


def test_it_steps_and_a_step_writes_only_what_it_adds(aws: Aws, stored: Stored) -> None:
    store = aws.store()
    meter = Meter(aws.dynamodb, aws.s3)
    llm = ScriptedLLM(next_page, name="researcher")
    ticks = count()
    ctx = StepContext(clock=lambda: T0 + timedelta(days=1, milliseconds=next(ticks)))

    result = advance(store, THREAD, EVENTS, agents={AGENT.name: AGENT}, llm_for=lambda _: llm, ctx=ctx)

    assert (result.route, result.llm_calls, result.tool_runs, result.seq) == ("continue", 1, 1, EVENTS + 3)
    header, intent, added = aws.items_from(THREAD, EVENTS)
    assert header["version"] == {"N": str(EVENTS + 2)}  # written with the intent: its updated_at was a day old
    llm_call, call = (parse_event(event) for event in json.loads(intent["e"]["S"]))
    tool_result = parse_event(added["e"]["S"])
    assert isinstance(llm_call, LLMCall)
    assert isinstance(call, ToolCall)
    assert call.args == {"page": STEPS + 1}
    assert isinstance(tool_result, ToolResult)
    assert tool_result.result == fetch(Fetch(page=STEPS + 1), ToolContext(THREAD, call.call_id, AGENT.name))
    # The step wrote its intent with the header (one transaction), its result (one PutItem) and, the thread having
    # none yet, a snapshot: kilobytes, not the thread.
    assert meter.writes == ["TransactWriteItems", "PutItem", "PutItem"], meter.writes
    snapshot = aws.dynamodb.get_item(TableName=aws.table, Key={"PK": {"S": f"THREAD#{THREAD}"}, "SK": {"S": "SNAP"}})
    assert int(snapshot["Item"]["version"]["N"]) == EVENTS + 2  # after the intent: the first append it could
    assert meter.written < 8_000 + 2 * len(snapshot["Item"]["b"]["B"]), meter.written
    (request,) = llm.calls
    assert approx_tokens(request.context) <= AGENT.context.max_tokens
    cold_read, cold_written = meter.read, meter.written
    meter.reset()

    warm = advance(store, THREAD, result.seq, agents={AGENT.name: AGENT}, llm_for=lambda _: llm, ctx=ctx)

    assert (warm.route, warm.seq) == ("continue", EVENTS + 6)
    assert meter.written < 8_000, meter.written
    assert meter.read < 8_000, meter.read  # a warm container reads only the header and what is new
    print(
        f"\na cold step read {cold_read / MB:.1f} MB and wrote {cold_written:,} bytes; "
        f"a warm one read {meter.read:,} and wrote {meter.written:,} bytes"
    )


def test_it_renders_within_the_agents_token_budget(stored: Stored) -> None:
    options = AGENT.context
    started = time.perf_counter()

    text = render(stored.thread, options)

    seconds = time.perf_counter() - started
    assert options.count_tokens(text) <= options.max_tokens
    assert approx_tokens(text) <= options.max_tokens
    assert text.startswith(f"{LEGEND}\n<user_input>read every page and tell me what changed</user_input>\n<omitted ")
    last_big = max(BIG_STEPS)
    clipped = f"\n→ fetch(page={last_big})\n← "
    assert clipped in text, "the newest 1 MB result is recent enough to be in the context"
    line = text[text.index(clipped) + len(clipped) :].split("\n", 1)[0]
    full = len(notation(big_result(last_big)))
    assert line.endswith(f"...[truncated: {full - options.max_result_chars} more chars]")
    assert len(line) < options.max_result_chars + 200
    for n in BIG_STEPS[:-1]:
        assert f"→ fetch(page={n})\n" not in text  # older results were dropped whole, not cut mid-line
    print(f"\nrendered {len(text):,} chars (~{approx_tokens(text):,} tokens) in {seconds:.2f}s")
