"""4. Step overhead: one step without the model call, on threads of 10, 100 and 1,000 events.

A step is ``core.kernel.runner.advance`` (load, fold, render, one scripted model call, validate, commit the intent,
run the tool, commit the result). The scripted model answers at once; its own time is measured through a
wrapper and subtracted, so what is left is stepfold's overhead. The store's ``load`` and ``append`` are timed
through a wrapper too, and ``render`` is timed on its own on the same thread, to show where the time goes.

- memory store: the thread is reset to exactly N events before every step, ``REPS`` steps per length. Its events
  are the objects the previous step rendered, as in a warm container, so the render memo renders only what is new;
  as many steps then run on a fresh copy of the thread each, as a cold container's first step does (every event
  rendered again, and nothing else of the thread seen before either), side by side in the same run.
- moto store (DynamoDB + S3 in this process, warm container): ``MOTO_STEPS`` consecutive steps from N events;
  moto's own request handling is in these figures.
- LangGraph on its in-memory saver and on its DynamoDB saver (same moto), same conversation, one ``invoke``
  per step with a function as the model, for comparison.

Prints ``p50 at 100 events ms:`` and ``growth 1000/10:`` (memory store, warm) and the same two figures for the
cold steps. Run: ``python benchmarks/step_overhead.py``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    BENCH_AGENT,
    LANGGRAPH,
    Report,
    bench_context,
    bench_llm,
    fake_aws_env,
    peer_missing,
    percentile,
    print_report,
    profile,
    verdict,
)
from benchmarks.bytes_per_step import _kernel_thread, _seed_dynamodb, steps_for
from core.adapters.store.memory import MemoryThreadStore
from core.kernel.context import render
from core.kernel.events import Event
from core.kernel.model import LLM, LLMRequest, LLMResponse
from core.kernel.runner import advance
from core.kernel.store import ThreadStore
from core.kernel.thread import Thread

LENGTHS = (10, 100, 1000)
REPS = 200
MOTO_STEPS = 15
LANGGRAPH_REPS = 30
TARGET_MS = 2.0
TARGET_GROWTH = 2.0
"""Issue 14: a step at 1,000 events at most twice the time of one at 10 (warm container)."""
AGENTS = {BENCH_AGENT.name: BENCH_AGENT}


@dataclass
class Clock:
    """Seconds spent in each timed part of the current step."""

    parts: dict[str, float] = field(default_factory=dict)

    def add(self, part: str, seconds: float) -> None:
        self.parts[part] = self.parts.get(part, 0.0) + seconds


class TimedStore:
    """A store wrapper that times load and append (the commits)."""

    def __init__(self, inner: ThreadStore, clock: Clock) -> None:
        self.inner, self.clock = inner, clock

    def create(self, thread: Thread) -> Thread:
        return self.inner.create(thread)

    def load(self, thread_id: str) -> Thread:
        started = time.perf_counter()
        try:
            return self.inner.load(thread_id)
        finally:
            self.clock.add("load", time.perf_counter() - started)

    def append(self, thread_id: str, expected_version: int, events: Sequence[Event]) -> Thread:
        started = time.perf_counter()
        try:
            return self.inner.append(thread_id, expected_version, events)
        finally:
            self.clock.add("commit", time.perf_counter() - started)


class TimedLLM:
    def __init__(self, inner: LLM, clock: Clock) -> None:
        self.inner, self.clock, self.name = inner, clock, "bench"

    def complete(self, request: LLMRequest) -> LLMResponse:
        started = time.perf_counter()
        try:
            return self.inner.complete(request)
        finally:
            self.clock.add("model", time.perf_counter() - started)


@dataclass
class Samples:
    total: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)

    def add(self, total: float, clock: Clock) -> None:
        self.total.append(total - clock.parts.get("model", 0.0))
        for part, seconds in clock.parts.items():
            self.parts.setdefault(part, []).append(seconds)

    def ms(self, q: float, part: str | None = None) -> float:
        return percentile(self.parts.get(part, [0.0]) if part else self.total, q) * 1000


def _step(store: ThreadStore, thread_id: str, seq: int, clock: Clock, llm: LLM) -> tuple[float, int]:
    timed = TimedStore(store, clock)
    ctx = bench_context()
    started = time.perf_counter()
    result = advance(timed, thread_id, seq, agents=AGENTS, llm_for=lambda _: TimedLLM(llm, clock), ctx=ctx)
    elapsed = time.perf_counter() - started
    assert result.route == "continue", result
    return elapsed, result.seq


def memory_store(threads: dict[int, Thread]) -> dict[int, tuple[Samples, Samples]]:
    """(warm, cold) steps on each thread reset to exactly N events, ``REPS`` of each.

    warm: the thread's events are the objects the last step rendered, as in a warm container (its store keeps the
    thread and extends it), so the render memo renders only what is new. cold: a fresh copy of the thread under an
    id of its own every time, as a cold container's first step sees it: every event is rendered again. The lengths
    are interleaved, one step of each in turn, so drift on this shared machine hits them alike and the growth ratio
    compares like with like; warm and cold are not interleaved: the garbage of the cold copies would slow the warm
    steps down.
    """
    llm = bench_llm()
    texts = {n: thread.to_json() for n, thread in threads.items()}
    out = {n: (Samples(), Samples()) for n in threads}
    for which, fresh in ((0, False), (1, True)):
        for _ in range(REPS):
            for n, thread in threads.items():
                start = Thread.from_json(texts[n]).model_copy(update={"id": f"{thread.id}-cold"}) if fresh else thread
                store = MemoryThreadStore()
                store.create(start)
                clock = Clock()
                elapsed, _ = _step(store, start.id, start.version, clock, llm)
                out[n][which].add(elapsed, clock)
    return out


def render_ms(thread: Thread) -> tuple[float, float]:
    """p50 ms of rendering the thread: (warm: rendered before, cold: a fresh copy every time)."""
    text = thread.to_json()
    warm: list[float] = []
    cold: list[float] = []
    for _ in range(50):
        fresh = Thread.from_json(text).model_copy(update={"id": f"{thread.id}-cold"})
        for times, subject in ((warm, thread), (cold, fresh)):
            started = time.perf_counter()
            render(subject, BENCH_AGENT.context)
            times.append(time.perf_counter() - started)
    return percentile(warm, 50) * 1000, percentile(cold, 50) * 1000


def moto_store(threads: dict[int, Thread]) -> dict[int, Samples]:
    import boto3
    from moto import mock_aws

    from core.adapters.store.dynamodb import DynamoThreadStore, create_table

    out: dict[int, Samples] = {}
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        llm = bench_llm()
        for length, thread in threads.items():
            table = f"overhead-{length}"
            create_table(ddb, table, ttl_attribute=None)
            _seed_dynamodb(ddb, table, thread)
            store = DynamoThreadStore(table, ddb, s3, "bench")
            seq = store.load(thread.id).version  # a warm container
            samples = Samples()
            for _ in range(MOTO_STEPS):
                clock = Clock()
                elapsed, seq = _step(store, thread.id, seq, clock, llm)
                samples.add(elapsed, clock)
            out[length] = samples
    return out


def langgraph_steps(make_saver: Callable[[str], Any]) -> dict[int, list[float]]:
    from benchmarks import _langgraph as lg

    out: dict[int, list[float]] = {}
    for length in LENGTHS:
        app = lg.graph(make_saver(f"lg-overhead-{length}"))
        times = []
        for rep in range(LANGGRAPH_REPS):
            thread_id = f"t{length}-{rep}"
            lg.seed(app, thread_id, steps_for(length))
            started = time.perf_counter()
            lg.step(app, thread_id)
            times.append(time.perf_counter() - started)
        out[length] = times
    return out


def langgraph(report: Report) -> tuple[dict[int, list[float]], dict[int, list[float]]]:
    from langgraph.checkpoint.memory import InMemorySaver  # type: ignore[import-not-found, unused-ignore]
    from moto import mock_aws

    from benchmarks import _langgraph as lg

    started = time.perf_counter()
    memory = langgraph_steps(lambda _: InMemorySaver())
    with mock_aws():
        dynamo = langgraph_steps(lg.saver)
    report.say(f"LangGraph measured in {time.perf_counter() - started:.0f}s")
    return memory, dynamo


def _share(cumulative: dict[str, float], file: str, name: str) -> float:
    return max((v for k, v in cumulative.items() if k.startswith(f"{file}:") and k.endswith(f"({name})")), default=0.0)


def profile_note(thread: Thread) -> str:
    """Where a step's time goes at 100 events on the memory store (cProfile, 100 steps)."""
    llm = bench_llm()

    def steps() -> None:
        for _ in range(100):
            store = MemoryThreadStore()
            store.create(thread)
            _step(store, thread.id, thread.version, Clock(), llm)

    top, cumulative = profile(steps)
    parts = {
        "render (context.py)": _share(cumulative, "context.py", "render"),
        "fold (thread.py)": _share(cumulative, "thread.py", "fold"),
        "Thread.extend (thread.py)": _share(cumulative, "thread.py", "extend"),
        "prompt load + render (prompts.py)": _share(cumulative, "prompts.py", "load"),
        "pydantic validation of new events": _share(cumulative, "main.py", "__init__"),
    }
    spent = ", ".join(f"{name} {share:.0%}" for name, share in parts.items())
    return (
        f"profile of one step at 100 events, memory store (cProfile, 100 steps; shares of the step, cumulative): "
        f"{spent}; top own time: {'; '.join(top)}"
    )


def run() -> Report:
    fake_aws_env()
    report = Report("4 step overhead")
    threads = {n: _kernel_thread(f"t{n}", steps_for(n)) for n in LENGTHS}
    started = time.perf_counter()
    both = memory_store(threads)
    memory = {n: warm for n, (warm, _) in both.items()}
    cold = {n: cold for n, (_, cold) in both.items()}
    renders = {n: render_ms(t) for n, t in threads.items()}
    moto = moto_store(threads)
    report.say(f"stepfold measured in {time.perf_counter() - started:.0f}s")
    missing = peer_missing(LANGGRAPH)
    lg_memory, lg_dynamo = langgraph(report) if missing is None else ({}, {})

    def lg_cell(data: dict[int, list[float]], n: int) -> str:
        if not data:
            return f"n/a: {missing}"
        return f"{percentile(data[n], 50) * 1000:.2f} / {percentile(data[n], 95) * 1000:.2f}"

    na_others = "n/a: no thread store of its own (the caller keeps the message history)"
    for n in LENGTHS:
        m = memory[n]
        line = (
            f"memory store, {n:>4} events: p50 {m.ms(50):.3f} ms, p95 {m.ms(95):.3f} ms "
            f"(load {m.ms(50, 'load'):.3f}, commit {m.ms(50, 'commit'):.3f}, render {renders[n][0]:.3f}, "
            f"model {m.ms(50, 'model'):.3f} excluded); every event rendered again: p50 {cold[n].ms(50):.3f} ms "
            f"(render {renders[n][1]:.3f})"
        )
        report.say(line)
        target = n == 100
        report.row(
            f"one step, memory store, {n} events: p50 / p95 ms",
            target=f"p50 < {TARGET_MS} ms" if target else "",
            verdict=verdict(m.ms(50) < TARGET_MS) if target else "",
            ours=f"{m.ms(50):.2f} / {m.ms(95):.2f}",
            langgraph=lg_cell(lg_memory, n) + (" (InMemorySaver)" if lg_memory else ""),
            pydantic_ai=na_others if n == LENGTHS[0] else "",
        )
    for n in LENGTHS:
        report.row(
            f"  of which render / load / commit, {n} events (p50 ms)",
            ours=f"{renders[n][0]:.2f} / {memory[n].ms(50, 'load'):.3f} / {memory[n].ms(50, 'commit'):.3f}",
        )
    for n in LENGTHS:
        report.row(
            f"  the same step rendering every event again (a cold container), {n} events: p50 ms (of which render)",
            ours=f"{cold[n].ms(50):.2f} ({renders[n][1]:.2f})",
        )
    for n in LENGTHS:
        s = moto[n]
        report.say(
            f"moto store, {n:>4} events: p50 {s.ms(50):.1f} ms, p95 {s.ms(95):.1f} ms "
            f"(load {s.ms(50, 'load'):.1f}, commit {s.ms(50, 'commit'):.1f})"
        )
        report.row(
            f"one step, moto DynamoDB, {n} events: p50 / p95 ms",
            ours=f"{s.ms(50):.1f} / {s.ms(95):.1f}",
            langgraph=lg_cell(lg_dynamo, n) + (" (DynamoDB saver)" if lg_dynamo else ""),
        )
    growth = memory[LENGTHS[-1]].ms(50) / memory[LENGTHS[0]].ms(50)
    cold_growth = cold[LENGTHS[-1]].ms(50) / cold[LENGTHS[0]].ms(50)
    report.say(f"p50 at 100 events ms: {memory[100].ms(50):.3f}")
    report.say(f"growth {LENGTHS[-1]}/{LENGTHS[0]}: {growth:.1f}")
    report.say(
        f"cold container (a fresh copy of the thread, every event rendered again): p50 at 100 events ms: "
        f"{cold[100].ms(50):.3f}, growth {LENGTHS[-1]}/{LENGTHS[0]}: {cold_growth:.1f}"
    )
    report.row(
        f"growth, memory store, {LENGTHS[-1]} / {LENGTHS[0]} events (p50; the lengths interleaved)",
        target=f"<= {TARGET_GROWTH:g}x",
        verdict=verdict(growth <= TARGET_GROWTH),
        ours=f"{growth:.1f}x",
        langgraph=(
            f"{percentile(lg_memory[LENGTHS[-1]], 50) / percentile(lg_memory[LENGTHS[0]], 50):.1f}x"
            if lg_memory
            else f"n/a: {missing}"
        ),
    )
    report.notes.append(profile_note(threads[100]))
    report.row(
        f"  growth rendering every event again, {LENGTHS[-1]} / {LENGTHS[0]} events (p50)", ours=f"{cold_growth:.1f}x"
    )
    report.notes.append(
        f"memory store: {REPS} steps per length on a thread reset to exactly N events, its events the objects the "
        "previous step rendered, as in a warm container, so the render memo (core/kernel/context.py) renders only "
        "what is new; the 'every event rendered again' rows take a fresh copy of the thread each step instead, as a "
        f"cold container's first step does, right after the warm ones; moto: {MOTO_STEPS} "
        "consecutive steps from N events on a warm container (moto's request handling, including the table copy it "
        f"makes for every transaction item, is inside these figures); LangGraph: {LANGGRAPH_REPS} steps per length, "
        "each on a freshly seeded thread; the model's own time is excluded for stepfold and negligible (a function) "
        "for LangGraph"
    )
    return report


def main() -> int:
    report = run()
    print_report(report)
    return 0 if not report.missed else 1


if __name__ == "__main__":
    sys.exit(main())
