"""1. Bytes and write units per step vs thread length: stepfold's DynamoDB store vs LangGraph's DynamoDB saver.

Both run on the same moto, in this process, and every byte is counted through botocore's event hooks: the body
of every write request (TransactWriteItems, PutItem, UpdateItem, BatchWriteItem, S3 PutObject) and of every read
response (Query, GetItem, BatchGetItem, S3 GetObject). Write units (WRU) are counted from the same write requests
by DynamoDB's item-size rules (moto does not meter capacity): each item written costs one unit per started KB, two
in a transaction; an UpdateItem is counted at the size of what it sets (the items it updates here are well under
1 KB either way). Base-table units; the status index's writes are counted apart.

- stepfold: ``core.kernel.runner.advance`` (what the step Lambda runs) on ``DynamoThreadStore``, twice per length:
  in a warm container (one store, which keeps the thread) and with a cache miss every step (a new store each step,
  as a new container reads it: the header, the latest snapshot and the events after it).
- LangGraph: the equivalent tool-calling graph (``benchmarks/_langgraph.py``) on
  ``langgraph-checkpoint-amazon-dynamodb``, one ``invoke`` per step; its "cache miss" steps use a new saver (new
  clients) each step. It keeps no thread between invokes, so the two read the same.

At 10, 100, 500 and 2,000 events (stepfold's count; the LangGraph thread holds the same conversation, two
messages a step) the thread is seeded, then real steps are metered and averaged. moto deep-copies a table for every
item of a transaction, so writing 2,000 events one step at a time gets slow: stepfold's threads are seeded through
the store's documented layout (module docstring of ``core/adapters/store/dynamodb.py``: one item per event and a
header, no snapshot) with events made by the real kernel on the memory store, LangGraph's through ``update_state``
(its public API). stepfold: one step, not measured, writes the snapshot the seeded log lacks (as the steps that
made the thread would have); then ``MEASURED`` warm steps, then cache-miss steps over one snapshot period (from
the step after a snapshot to the step that writes the next, at most ``CYCLE``; ``MEASURED`` where the thread is
too short to have one), so the snapshot a period writes and the events it lets a new container skip are in the
write, WRU and cache-miss averages. LangGraph: ``MEASURED`` steps of each kind (its cost per step does not
cycle). Totals for the whole thread come from a real run to ``REAL_EVENTS`` events for both, and are extrapolated
to 2,000 events from the measured per-step bytes (marked est.).

The scripted model reads only the rendered context, as a real model does (a model that reads ``request.events``
makes a step on a snapshot read the whole log: see ``core/kernel/compaction.py``).

Run: ``python benchmarks/bytes_per_step.py`` (a few minutes).
"""

from __future__ import annotations

import base64
import json
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    BENCH_AGENT,
    BENCH_TASK,
    EVENTS_PER_STEP,
    LANGGRAPH,
    T0,
    Meter,
    Report,
    bench_context,
    bench_llm,
    fake_aws_env,
    human_bytes,
    peer_missing,
    print_report,
    verdict,
)
from core.adapters.llm.scripted import Say, ScriptedLLM
from core.adapters.store.memory import MemoryThreadStore
from core.kernel.events import dump_event
from core.kernel.model import LLMRequest
from core.kernel.runner import advance
from core.kernel.thread import Thread, fold, start_thread

LENGTHS = (10, 100, 500, 2000)
CYCLE = 60
"""At most this many cache-miss steps per length: one snapshot period (about 30 steps at 2,000 events)."""
MEASURED = 3
REAL_EVENTS = 500
TARGET = 1.1
COLD_TARGET = 1.5
WRU_TARGET = 5.0
ITEM_LIMIT = 400 * 1024
AGENTS = {BENCH_AGENT.name: BENCH_AGENT}
_LOOKUP = re.compile(r"lookup\(n=(\d+)\)")


def steps_for(events: int) -> int:
    """Steps that bring a new thread (one user input) to about ``events`` events."""
    return max(1, round((events - 1) / EVENTS_PER_STEP))


def context_brain(request: LLMRequest) -> Say:
    """The bench brain, reading what a real model reads (the context), not ``request.events``: look up the record
    after the last one looked up."""
    done = _LOOKUP.findall(request.context)
    return Say("lookup", {"n": int(done[-1]) + 1 if done else 0})


# --- write units ------------------------------------------------------------------------------------------------


def attribute_bytes(value: dict[str, Any]) -> int:
    """An attribute value's size by DynamoDB's rules (docs: "Item sizes and formats")."""
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = inner.lstrip("-").replace(".", "").lstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1 + int(inner.startswith("-"))
    if kind == "B":
        return len(base64.b64decode(inner))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_bytes(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(attribute_bytes(v) + 1 for v in inner)
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    if kind == "NS":
        return sum(attribute_bytes({"N": n}) for n in inner)
    if kind == "BS":
        return sum(len(base64.b64decode(b)) for b in inner)
    raise ValueError(f"unknown attribute type {kind}")


def item_bytes(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + attribute_bytes(value) for name, value in item.items())


def units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


class WriteUnits:
    """Base-table write units of every write request, by DynamoDB's item-size rules; header writes that move the
    status index's keys (``status``/``updated_at``) are counted apart, as the index's delete + put."""

    def __init__(self) -> None:
        self.table = 0
        self.index = 0

    def attach(self, client: Any) -> WriteUnits:
        for op in ("PutItem", "UpdateItem", "TransactWriteItems", "BatchWriteItem", "DeleteItem"):
            client.meta.events.register(f"before-send.dynamodb.{op}", self._sent)
        return self

    def _sent(self, request: Any, event_name: str, **_: Any) -> None:
        body = json.loads(request.body or b"{}")
        op = event_name.rsplit(".", 1)[-1]
        if op == "PutItem":
            self.table += units(item_bytes(body["Item"]))
        elif op == "UpdateItem":
            self._update(body, 1)
        elif op == "DeleteItem":
            self.table += 1
        elif op == "BatchWriteItem":
            for requests in body["RequestItems"].values():
                for one in requests:
                    put = one.get("PutRequest")
                    self.table += units(item_bytes(put["Item"])) if put else 1
        else:
            for action in body["TransactItems"]:
                if "Put" in action:
                    self.table += 2 * units(item_bytes(action["Put"]["Item"]))
                elif "Update" in action:
                    self._update(action["Update"], 2)
                else:
                    self.table += 2

    def _update(self, update: dict[str, Any], price: int) -> None:
        values = update.get("ExpressionAttributeValues", {})
        size = item_bytes(update["Key"]) + sum(attribute_bytes(v) for v in values.values())
        self.table += price * units(size)
        names = set(update.get("ExpressionAttributeNames", {}).values())
        if {"status", "updated_at"} & names:
            self.index += 2 * units(size)  # the index's old entry deleted, the new one put

    def take(self) -> tuple[int, int]:
        out = (self.table, self.index)
        self.table = self.index = 0
        return out


# --- the contenders' figures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerStep:
    write: float
    read: float
    cold_read: float
    wru: float
    index_wru: float = 0.0
    largest_write: int = 0
    first_cold_read: int = 0
    steps: int = MEASURED
    """How many steps the cache-miss, write and WRU figures average."""


@dataclass(frozen=True)
class Contender:
    per_length: dict[int, PerStep]
    real_total_write: int
    real_total_read: int
    real_steps: int

    def estimated_total(self, events: int) -> tuple[float, float]:
        """Bytes for a whole thread of ``events`` events: the real run, then the measured per-step bytes
        interpolated linearly in the step number up to ``events``."""
        points = sorted((steps_for(n), s) for n, s in self.per_length.items())
        write, read = float(self.real_total_write), float(self.real_total_read)
        for step in range(self.real_steps + 1, steps_for(events) + 1):
            w, r = _interpolate(points, step)
            write, read = write + w, read + r
        return write, read


def _interpolate(points: list[tuple[int, PerStep]], step: int) -> tuple[float, float]:
    for (s0, p0), (s1, p1) in pairwise(points):
        if s0 <= step <= s1:
            f = (step - s0) / (s1 - s0)
            return p0.write + f * (p1.write - p0.write), p0.read + f * (p1.read - p0.read)
    last = points[-1][1]
    return last.write, last.read


def _mean(values: list[float] | list[int]) -> float:
    return sum(values) / len(values)


# --- stepfold ---------------------------------------------------------------------------------------------------


def _kernel_thread(thread_id: str, steps: int) -> Thread:
    """A thread as the real kernel writes it, made fast on the memory store."""
    store = MemoryThreadStore()
    ctx, llm = bench_context(), bench_llm()
    thread = store.create(start_thread(thread_id, BENCH_AGENT.name, BENCH_TASK, now=T0))
    seq = thread.version
    for _ in range(steps):
        seq = advance(store, thread_id, seq, agents=AGENTS, llm_for=lambda _: llm, ctx=ctx).seq
    return store.load(thread_id)


def _seed_dynamodb(ddb: Any, table: str, thread: Thread) -> None:
    """Write ``thread`` in the store's documented layout: a META header and one ``EV#<seq>`` item per event."""
    pk = {"S": f"THREAD#{thread.id}"}
    stamp = {"S": T0.isoformat()}
    items: list[dict[str, Any]] = [
        {
            "PK": pk,
            "SK": {"S": "META"},
            "agent": {"S": thread.agent},
            "labels": {"M": {k: {"S": v} for k, v in thread.labels.items()}},
            "version": {"N": str(thread.version)},
            "status": {"S": fold(thread).status},
            "created_at": stamp,
            "updated_at": stamp,
        }
    ]
    for event in thread.events:
        text = json.dumps(dump_event(event), separators=(",", ":"), ensure_ascii=False)
        items.append({"PK": pk, "SK": {"S": f"EV#{event.seq:010d}"}, "t": {"S": event.type}, "e": {"S": text}})
    for i in range(0, len(items), 25):
        ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": item}} for item in items[i : i + 25]]})


def measure_ours() -> Contender:
    import boto3
    from moto import mock_aws

    from core.adapters.store.dynamodb import DynamoThreadStore, create_table

    per_length: dict[int, PerStep] = {}
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        meter = Meter().attach(ddb)
        meter.attach(s3)
        wru = WriteUnits().attach(ddb)
        look = boto3.client("dynamodb", region_name="us-east-1")  # unmetered: which snapshot is stored
        ctx, llm = bench_context(), ScriptedLLM(context_brain, name="bench")

        def run(store: DynamoThreadStore, thread_id: str, seq: int) -> int:
            result = advance(store, thread_id, seq, agents=AGENTS, llm_for=lambda _: llm, ctx=ctx)
            assert result.route == "continue", result
            return result.seq

        def new_store(table: str) -> DynamoThreadStore:
            return DynamoThreadStore(table, ddb, s3, "bench")

        def snapshot_at(table: str, thread_id: str) -> int | None:
            key = {"PK": {"S": f"THREAD#{thread_id}"}, "SK": {"S": "SNAP"}}
            item = look.get_item(TableName=table, Key=key, ProjectionExpression="version").get("Item")
            return int(item["version"]["N"]) if item else None

        for length in LENGTHS:
            table = f"ours-{length}"
            create_table(ddb, table, ttl_attribute=None)
            thread = _kernel_thread(f"t{length}", steps_for(length))
            _seed_dynamodb(ddb, table, thread)
            meter.take()
            cold_store = new_store(table)
            first_cold = getattr(cold_store, "load_recent", cold_store.load)(thread.id)  # the seeded log
            _, first_cold_read = meter.take()
            store = new_store(table)
            seq = run(store, thread.id, first_cold.version)  # not measured: the snapshot the seeded log lacks
            meter.take()
            wru.take()
            reads = []
            for _ in range(MEASURED):
                seq = run(store, thread.id, seq)
                reads.append(meter.take()[1])
            wru.take()
            # A new container every step, for one snapshot period: from the step after one snapshot to the step
            # that writes the next (or CYCLE steps when there is none), so its write is in the averages.
            writes, cold_reads, table_units, index_units, largest = [], [], [], [], 0
            snapshot = snapshot_at(table, thread.id)
            for _ in range(CYCLE if snapshot is not None else MEASURED):
                seq = run(new_store(table), thread.id, seq)
                largest = max(largest, meter.largest_write)
                w, r = meter.take()
                t, i = wru.take()
                writes.append(w)
                cold_reads.append(r)
                table_units.append(t)
                index_units.append(i)
                if snapshot is not None and snapshot_at(table, thread.id) != snapshot:
                    break
            per_length[length] = PerStep(
                _mean(writes),
                _mean(reads),
                _mean(cold_reads),
                _mean(table_units),
                _mean(index_units),
                largest,
                first_cold_read,
                len(cold_reads),
            )

        # The whole thread, for real, from the first step.
        create_table(ddb, "ours-real", ttl_attribute=None)
        store = new_store("ours-real")
        meter.take()
        seq = store.create(start_thread("real", BENCH_AGENT.name, BENCH_TASK, now=T0)).version
        steps = steps_for(REAL_EVENTS)
        for _ in range(steps):
            seq = run(store, "real", seq)
        total_w, total_r = meter.take()
    return Contender(per_length, total_w, total_r, steps)


# --- snapshot compression on a realistic thread -------------------------------------------------------------------

_PAGE_CHARS = 6_800
_DOCS = ("README.md", "ARCHITECTURE.md", "benchmarks/README.md", "benchmarks/SCALE.md")


def realistic_thread(events: int = 150) -> Thread:
    """A thread less regular than the bench's, made by the real kernel: every fourth call fetches a page of real
    prose (distinct slices of this repo's docs, none fetched twice), the others look up records with random ids,
    names and amounts; call ids are random and the clock moves 0.2-9 s a tick."""
    import random
    from dataclasses import replace
    from datetime import timedelta

    from pydantic import BaseModel, ConfigDict

    from core.kernel.events import ToolResult
    from core.kernel.tools import Tool

    root = Path(__file__).resolve().parents[1]
    text = "\n".join((root / name).read_text() for name in _DOCS)

    class Page(BaseModel):
        model_config = ConfigDict(extra="forbid")
        url: str

    class Record(BaseModel):
        model_config = ConfigDict(extra="forbid")
        n: int

    def page(args: Page, _: Any) -> dict[str, Any]:
        at = int(args.url.rsplit("/", 1)[1]) * _PAGE_CHARS % max(1, len(text) - _PAGE_CHARS)
        return {"url": args.url, "status": 200, "text": text[at : at + _PAGE_CHARS]}

    def record(args: Record, _: Any) -> dict[str, Any]:
        r = random.Random(args.n)
        return {
            "n": args.n,
            "id": f"{r.getrandbits(128):032x}",
            "name": f"customer {r.randint(1000, 99999)}",
            "balance": round(r.uniform(-500, 50_000), 2),
            "status": r.choice(["open", "closed", "overdue"]),
        }

    agent = replace(
        BENCH_AGENT,
        name="realistic",
        tools=(
            Tool("lookup", "Look up record n.", Record, record, idempotent=True),
            Tool("fetch_page", "Fetch a web page.", Page, page, idempotent=True),
        ),
    )

    def brain(request: LLMRequest) -> Say:
        results = sum(isinstance(e, ToolResult) for e in request.events)
        if results % 4 == 3:
            return Say("fetch_page", {"url": f"https://example.com/{results // 4}"})
        return Say("lookup", {"n": results})

    rng = random.Random(7)
    now = [T0]

    def clock() -> Any:
        now[0] += timedelta(milliseconds=rng.randint(200, 9_000))
        return now[0]

    store = MemoryThreadStore()
    ctx = replace(bench_context(), clock=clock)
    llm = ScriptedLLM(brain, name="realistic")
    seq = store.create(start_thread("realistic", agent.name, BENCH_TASK, now=T0)).version
    while seq < events:
        seq = advance(store, "realistic", seq, agents={agent.name: agent}, llm_for=lambda _: llm, ctx=ctx).seq
    return store.load("realistic")


def snapshot_compression(thread: Thread) -> tuple[int, int]:
    """(JSON bytes, stored bytes) of the snapshot the DynamoDB store would write of ``thread`` now."""
    import zlib

    from core.adapters.store.dynamodb import _snapshot_blob
    from core.kernel.compaction import compact
    from core.kernel.context import ContextOptions

    window = ContextOptions().max_tokens * 5 // 4  # DynamoThreadStore's default snapshot_window_tokens
    compacted = compact(thread, window_tokens=window)
    if compacted is None:
        raise RuntimeError(f"thread {thread.id} does not compact")
    blob = _snapshot_blob(compacted)
    return len(zlib.decompress(blob)), len(blob)


# --- LangGraph --------------------------------------------------------------------------------------------------


def measure_langgraph() -> Contender:
    import boto3  # noqa: F401 - the saver builds its own clients; moto must patch botocore first
    from moto import mock_aws

    from benchmarks import _langgraph as lg

    def metered(table: str, meter: Meter, wru: WriteUnits) -> Any:
        checkpointer = lg.saver(table)
        for client in lg.clients(checkpointer):
            meter.attach(client)
            wru.attach(client)
        return lg.graph(checkpointer)

    per_length: dict[int, PerStep] = {}
    with mock_aws():
        for length in LENGTHS:
            meter, wru = Meter(), WriteUnits()
            app = metered(f"lg-{length}", meter, wru)
            thread_id = f"t{length}"
            lg.seed(app, thread_id, steps_for(length))
            meter.take()
            wru.take()
            writes: list[int] = []
            reads: list[int] = []
            cold_reads: list[int] = []
            table_units: list[int] = []
            largest = 0
            for warm in (True, False):
                for _ in range(MEASURED):
                    if not warm:
                        meter, wru = Meter(), WriteUnits()
                        app = metered(f"lg-{length}", meter, wru)  # a new saver: what a new container builds
                    lg.step(app, thread_id)
                    largest = max(largest, meter.largest_write)
                    w, r = meter.take()
                    writes.append(w)
                    (reads if warm else cold_reads).append(r)
                    table_units.append(wru.take()[0])
            per_length[length] = PerStep(
                _mean(writes), _mean(reads), _mean(cold_reads), _mean(table_units), 0.0, largest, cold_reads[0]
            )

        meter, wru = Meter(), WriteUnits()
        app = metered("lg-real", meter, wru)
        steps = steps_for(REAL_EVENTS)
        lg.start(app, "real")
        for _ in range(steps - 1):
            lg.step(app, "real")
        total_w, total_r = meter.take()
    return Contender(per_length, total_w, total_r, steps)


def first_failing_steps(low: int, high: int) -> int | None:
    """The fewest steps at which LangGraph's saver can no longer write the thread (None: ``high`` still works)."""
    from moto import mock_aws

    from benchmarks import _langgraph as lg

    def fails(steps: int) -> bool:
        try:
            lg.seed(app, f"limit-{steps}", steps)
            lg.step(app, f"limit-{steps}")
        except Exception:  # the saver wraps DynamoDB's ValidationException (item over 400 KB)
            return True
        return False

    with mock_aws():
        app = lg.graph(lg.saver("lg-limit"))
        if not fails(high):
            return None
        while high - low > 1:  # low works, high fails
            mid = (low + high) // 2
            low, high = (low, mid) if fails(mid) else (mid, high)
        return high


# --- report -----------------------------------------------------------------------------------------------------

KINDS = {
    "write": ("write bytes", "write"),
    "read": ("read bytes (warm container)", "read"),
    "cold_read": ("read bytes (cache miss: a new container)", "cold_read"),
}


def run() -> Report:
    fake_aws_env()
    report = Report("1 bytes/step")
    started = time.perf_counter()
    ours = measure_ours()
    report.say(f"stepfold measured in {time.perf_counter() - started:.0f}s")
    missing = peer_missing(LANGGRAPH)
    theirs: Contender | None = None
    if missing is None:
        started = time.perf_counter()
        theirs = measure_langgraph()
        report.say(f"LangGraph measured in {time.perf_counter() - started:.0f}s")

    def cell(c: Contender | None, pick: Callable[[Contender], str]) -> str:
        return pick(c) if c is not None else f"n/a: {missing}"

    for length in LENGTHS:
        o = ours.per_length[length]
        report.say(
            f"step at {length:>4} events: wrote {o.write:.0f} bytes ({o.wru:.2f} WRU), read {o.read:.0f} bytes "
            f"warm, {o.cold_read:.0f} bytes on a cache miss"
        )
        if theirs is not None:
            t = theirs.per_length[length]
            report.say(
                f"  LangGraph at {length:>4} events: wrote {t.write:.0f} bytes ({t.wru:.2f} WRU), read "
                f"{t.read:.0f} bytes warm, {t.cold_read:.0f} bytes on a cache miss"
            )
    first, last = LENGTHS[0], LENGTHS[-1]
    for kind, (label, attr) in KINDS.items():
        for length in LENGTHS:
            report.row(
                f"{label} per step at {length} events",
                ours=f"{getattr(ours.per_length[length], attr):,.0f}",
                langgraph=cell(theirs, partial(_figure, attr=attr, length=length)),
            )
        g = _growth(ours, attr)
        line = {"write": "write ratio", "read": "read ratio", "cold_read": "cold read ratio"}[kind]
        report.say(f"{line}: {g:.3f}")
        goal = COLD_TARGET if kind == "cold_read" else TARGET
        report.row(
            f"{label} growth, step at {last} / step at {first} events",
            target=f"<= {goal}",
            verdict=verdict(g <= goal),
            ours=f"{g:.2f}",
            langgraph=cell(theirs, partial(_growth_cell, attr=attr)),
        )
    for length in LENGTHS:
        o = ours.per_length[length]
        report.row(
            f"write units (WRU) per step at {length} events",
            ours=f"{o.wru:.2f}" + (f" (+{o.index_wru:.2f} status index)" if o.index_wru else ""),
            langgraph=cell(theirs, partial(_wru_cell, length=length)),
            target=f"<= {WRU_TARGET}" if length == last else "",
            verdict=verdict(o.wru <= WRU_TARGET) if length == last else "",
        )
    report.say(f"wru per step: {ours.per_length[last].wru:.2f}")
    for label, thread in (
        (f"the bench thread at {last} events", _kernel_thread("compression", steps_for(last))),
        ("a realistic sample (real prose pages, random ids)", realistic_thread()),
    ):
        raw, stored = snapshot_compression(thread)
        report.say(f"snapshot compression, {label}: {raw / stored:.2f}x ({raw:,} bytes of JSON stored in {stored:,})")
        report.row(f"snapshot compression (zlib), {label}", ours=f"{raw / stored:.2f}x ({human_bytes(stored)})")
    report.row(
        f"first read in a new container at {last} events, before any snapshot (stepfold: the whole log)",
        ours=human_bytes(ours.per_length[last].first_cold_read),
        langgraph=cell(theirs, lambda c: human_bytes(c.per_length[last].first_cold_read)),
    )
    report.row(
        f"largest write request at {last} events",
        ours=f"{human_bytes(ours.per_length[last].largest_write)} (a snapshot PutItem)",
        langgraph=cell(theirs, lambda c: f"{human_bytes(c.per_length[last].largest_write)} (one checkpoint PutItem)"),
    )
    report.row(
        f"total written, whole thread of {REAL_EVENTS} events (real run)",
        ours=human_bytes(ours.real_total_write),
        langgraph=cell(theirs, lambda c: human_bytes(c.real_total_write)),
    )
    report.row(
        f"total read, whole thread of {REAL_EVENTS} events (real run)",
        ours=human_bytes(ours.real_total_read),
        langgraph=cell(theirs, lambda c: human_bytes(c.real_total_read)),
    )
    report.row(
        f"total written + read, whole thread of {last} events (est. from the measured steps)",
        ours=human_bytes(sum(ours.estimated_total(last))),
        langgraph=cell(theirs, lambda c: human_bytes(sum(c.estimated_total(last)))),
    )
    if theirs is not None:
        started = time.perf_counter()
        limit = first_failing_steps(steps_for(last), 3 * steps_for(last))
        report.say(f"LangGraph item-limit search in {time.perf_counter() - started:.0f}s: {limit}")
        at = f"{limit} steps ({1 + EVENTS_PER_STEP * limit:,} stepfold events)" if limit else "none found"
        report.row(
            "longest thread the store can hold",
            ours="unbounded (one item per commit; payloads > 32 KB go to S3)",
            langgraph=f"fails at {at}: checkpoint item > 400 KB",
        )
    report.notes.append(
        f"stepfold: warm reads are the mean of {MEASURED} steps in one store; writes, WRU and cache-miss reads the "
        "mean over one snapshot period, a new store every step ("
        + ", ".join(f"{n} events: {ours.per_length[n].steps} steps" for n in LENGTHS)
        + f"); LangGraph: {MEASURED} steps each. A stepfold step writes two items (the intent: llm_call + "
        "tool_call; then the result), each one conditional PutItem, and a snapshot when the events since the last "
        "one outweigh it; the header only when the status changes or its updated_at is a minute old (then with "
        "the item, in one transaction). A warm step reads the header and what is new; a cache miss reads the "
        f"header, the snapshot and the events after it. {EVENTS_PER_STEP} events a step (llm_call, tool_call, "
        "tool_result); LangGraph's thread holds the same conversation, 2 messages a step, and writes the whole "
        "checkpoint (every message) as one item per super-step (2 a step) plus its pending writes. WRU by "
        "DynamoDB's item-size rules (1 per started KB, x2 in a transaction), base table only; the status index's "
        "writes, where any, in brackets"
    )
    if theirs is None:
        report.notes.append(f"{LANGGRAPH}: {missing}")
    return report


def _figure(c: Contender, *, attr: str, length: int) -> str:
    return f"{getattr(c.per_length[length], attr):,.0f}"


def _wru_cell(c: Contender, *, length: int) -> str:
    return f"{c.per_length[length].wru:.2f}"


def _growth(c: Contender, attr: str) -> float:
    return float(getattr(c.per_length[LENGTHS[-1]], attr) / getattr(c.per_length[LENGTHS[0]], attr))


def _growth_cell(c: Contender, *, attr: str) -> str:
    return f"{_growth(c, attr):.1f}"


def main() -> int:
    report = run()
    print_report(report)
    return 0 if not report.missed else 1


if __name__ == "__main__":
    sys.exit(main())
