"""1. Bytes written and read per step vs thread length: stepfold's DynamoDB store vs LangGraph's DynamoDB saver.

Both run on the same moto, in this process, and every byte is counted through botocore's event hooks: the body
of every write request (TransactWriteItems, PutItem, UpdateItem, BatchWriteItem, S3 PutObject) and of every read
response (Query, GetItem, BatchGetItem, S3 GetObject).

- stepfold: ``core.kernel.runner.advance`` (what the step Lambda runs) on ``DynamoThreadStore``, warm container.
- LangGraph: the equivalent tool-calling graph (``benchmarks/_langgraph.py``) on
  ``langgraph-checkpoint-amazon-dynamodb``, one ``invoke`` per step.

At 10, 100, 500 and 2,000 events (stepfold's count; the LangGraph thread holds the same conversation, two
messages a step) the thread is seeded, then ``MEASURED`` real steps are metered and averaged. moto deep-copies a
table for every item of a transaction, so writing 2,000 events one step at a time gets slow: stepfold's threads
are seeded through the store's documented layout (module docstring of ``core/adapters/store/dynamodb.py``) with events
made by the real kernel on the memory store, LangGraph's through ``update_state`` (its public API). Totals for
the whole thread come from a real run to ``REAL_EVENTS`` events for both, and are extrapolated to 2,000 events
from the measured per-step bytes (marked est.).

Run: ``python benchmarks/bytes_per_step.py`` (about two minutes).
"""

from __future__ import annotations

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
from core.adapters.store.memory import MemoryThreadStore
from core.kernel.events import dump_event
from core.kernel.runner import advance
from core.kernel.thread import Thread, fold, start_thread

LENGTHS = (10, 100, 500, 2000)
MEASURED = 3
REAL_EVENTS = 500
TARGET = 1.1
ITEM_LIMIT = 400 * 1024
AGENTS = {BENCH_AGENT.name: BENCH_AGENT}


def steps_for(events: int) -> int:
    """Steps that bring a new thread (one user input) to about ``events`` events."""
    return max(1, round((events - 1) / EVENTS_PER_STEP))


@dataclass(frozen=True)
class PerStep:
    write: float
    read: float
    cold_read: int = 0
    largest_write: int = 0


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
    import json

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
        ctx, llm = bench_context(), bench_llm()

        def run(store: DynamoThreadStore, thread_id: str, seq: int) -> int:
            result = advance(store, thread_id, seq, agents=AGENTS, llm_for=lambda _: llm, ctx=ctx)
            assert result.route == "continue", result
            return result.seq

        for length in LENGTHS:
            table = f"ours-{length}"
            create_table(ddb, table, ttl_attribute=None)
            thread = _kernel_thread(f"t{length}", steps_for(length))
            _seed_dynamodb(ddb, table, thread)
            store = DynamoThreadStore(table, ddb, s3, "bench")  # a new container
            meter.take()
            seq = store.load(thread.id).version
            _, cold = meter.take()
            writes, reads, largest = [], [], 0
            for _ in range(MEASURED):
                seq = run(store, thread.id, seq)
                largest = max(largest, meter.largest_write)
                w, r = meter.take()
                writes.append(w)
                reads.append(r)
            per_length[length] = PerStep(sum(writes) / MEASURED, sum(reads) / MEASURED, cold, largest)

        # The whole thread, for real, from the first step.
        create_table(ddb, "ours-real", ttl_attribute=None)
        store = DynamoThreadStore("ours-real", ddb, s3, "bench")
        meter.take()
        seq = store.create(start_thread("real", BENCH_AGENT.name, BENCH_TASK, now=T0)).version
        steps = steps_for(REAL_EVENTS)
        for _ in range(steps):
            seq = run(store, "real", seq)
        total_w, total_r = meter.take()
    return Contender(per_length, total_w, total_r, steps)


# --- LangGraph --------------------------------------------------------------------------------------------------


def measure_langgraph() -> Contender:
    import boto3  # noqa: F401 - the saver builds its own clients; moto must patch botocore first
    from moto import mock_aws

    from benchmarks import _langgraph as lg

    per_length: dict[int, PerStep] = {}
    with mock_aws():
        for length in LENGTHS:
            checkpointer = lg.saver(f"lg-{length}")
            meter = Meter()
            for client in lg.clients(checkpointer):
                meter.attach(client)
            app = lg.graph(checkpointer)
            thread_id = f"t{length}"
            lg.seed(app, thread_id, steps_for(length))
            meter.take()
            writes, reads, largest = [], [], 0
            for _ in range(MEASURED):
                lg.step(app, thread_id)
                largest = max(largest, meter.largest_write)
                w, r = meter.take()
                writes.append(w)
                reads.append(r)
            per_length[length] = PerStep(sum(writes) / MEASURED, sum(reads) / MEASURED, reads[0], largest)

        checkpointer = lg.saver("lg-real")
        meter = Meter()
        for client in lg.clients(checkpointer):
            meter.attach(client)
        app = lg.graph(checkpointer)
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
        report.say(f"step at {length:>4} events: wrote {o.write:.0f} bytes, read {o.read:.0f} bytes")
        if theirs is not None:
            t = theirs.per_length[length]
            report.say(f"  LangGraph at {length:>4} events: wrote {t.write:.0f} bytes, read {t.read:.0f} bytes")
    for kind in ("write", "read"):
        for length in LENGTHS:
            report.row(
                f"{kind} bytes per step at {length} events",
                ours=f"{getattr(ours.per_length[length], kind):,.0f}",
                langgraph=cell(theirs, partial(_bytes_at, kind=kind, length=length)),
            )
        first, last = LENGTHS[0], LENGTHS[-1]
        g = _growth(ours, kind)
        report.say(f"{kind} ratio: {g:.3f}")
        report.row(
            f"{kind} growth, step at {last} / step at {first} events" + (" (warm container)" if kind == "read" else ""),
            target=f"<= {TARGET}",
            verdict=verdict(g <= TARGET),
            ours=f"{g:.2f}",
            langgraph=cell(theirs, partial(_growth_cell, kind=kind)),
        )
    last = LENGTHS[-1]
    report.row(
        f"first read in a new container at {last} events",
        ours=human_bytes(ours.per_length[last].cold_read),
        langgraph=cell(theirs, lambda c: human_bytes(c.per_length[last].cold_read)),
    )
    report.row(
        f"largest write request at {last} events",
        ours=f"{human_bytes(ours.per_length[last].largest_write)} (one transaction)",
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
            ours="unbounded (one item per event; payloads > 32 KB go to S3)",
            langgraph=f"fails at {at}: checkpoint item > 400 KB",
        )
    report.notes.append(
        f"each per-step figure is the mean of {MEASURED} real steps on a thread seeded to that length. A stepfold "
        "step writes two transactions (the intent, then the result: header update + new events) and reads one "
        f"Query (the header; a warm container caches the events). {EVENTS_PER_STEP} events a step (llm_call, "
        "tool_call, tool_result); LangGraph's thread holds the same conversation, 2 messages a step, and writes "
        "the whole checkpoint (every message) as one item per super-step (2 a step) plus its pending writes"
    )
    if theirs is None:
        report.notes.append(f"{LANGGRAPH}: {missing}")
    return report


def _bytes_at(c: Contender, *, kind: str, length: int) -> str:
    return f"{getattr(c.per_length[length], kind):,.0f}"


def _growth(c: Contender, kind: str) -> float:
    return float(getattr(c.per_length[LENGTHS[-1]], kind) / getattr(c.per_length[LENGTHS[0]], kind))


def _growth_cell(c: Contender, *, kind: str) -> str:
    return f"{_growth(c, kind):.1f}"


def main() -> int:
    report = run()
    print_report(report)
    return 0 if not report.missed else 1


if __name__ == "__main__":
    sys.exit(main())
