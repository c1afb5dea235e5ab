"""6. Throughput of the local stack: 1,000 threads of 10 steps each, launched at once, run for real; 50 beside it.

The local stack (``infra/local/stack.py``) is the deployed code on moto: the real ``agent_loop.asl.json`` run by
moto's Step Functions engine, every Lambda task routed to ``functions.step.handler``, DynamoDB and S3 in this
process. All threads of a run are launched at once, as the API's launch does (thread + execution); moto runs each
execution on its own Python thread, so as many steps are in flight as the stack allows (one process, one GIL). A
scripted model makes 9 lookups and then calls ``done_for_now``: 10 model calls, 10 step invocations a thread.

Each size in ``SIZES`` (50 and 1,000 by default) is a fresh stack, run to the end, and reports:

- steps/s: step invocations over the wall time from the first launch until every thread has ended;
- errors: invocations that raised plus threads that did not end ``done`` (a thread still running after
  ``TIMEOUT`` counts too);
- retries: the ASL's Retry waits the runs took (``LocalStack.retry_waits``; a ConcurrentWrite would show here);
- peak memory: the process's ``ru_maxrss`` after the run (a high-water mark: the small run goes first, so the
  large run's figure is its own peak);
- GC: the wall time Python's cyclic garbage collector ran over the same span as steps/s (``gc.callbacks``).

Nothing is extrapolated. What the local stack changes in moto for speed (ARCHITECTURE.md, "The local stack") is
what makes the 1,000-thread run possible here; every change answers as moto's own code does. The figures are moto
in one Python process on this machine, not the services: on AWS, Lambda runs the steps in parallel and DynamoDB's
cost per request does not grow with the table (SCALE.md).

Run: ``python benchmarks/throughput.py`` (``BENCH_THREADS=25`` for a quick look; sizes are comma-separated).
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import BENCH_AGENT, Report, print_report, verdict
from core.adapters.llm import ProviderConfig
from core.adapters.llm.scripted import Say, ScriptedLLM
from core.kernel.events import LLMCall
from core.kernel.model import LLMRequest

STEPS = 10
FULL = 1000
SIZES = tuple(int(n) for n in os.environ.get("BENCH_THREADS", f"50,{FULL}").split(","))
TIMEOUT = 1800.0
"""Seconds a run may take before its unfinished threads count as errors."""
AGENT = replace(BENCH_AGENT, name="bench10")


def ten_steps(request: LLMRequest) -> Say:
    calls = sum(isinstance(e, LLMCall) for e in request.events)
    if calls >= STEPS - 1:
        return Say("done_for_now", {"answer": f"looked up {calls} records"})
    return Say("lookup", {"n": calls})


@dataclass(frozen=True)
class Run:
    threads: int
    seconds: float
    steps: int
    errors: int
    retries: int
    items: int
    peak_mib: float
    gc_seconds: float

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds


@contextmanager
def quiet_stdout() -> Iterator[None]:
    """The handlers' JSON logs and metrics go to stdout, as in Lambda; here they go to /dev/null (fd level)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def timed_gc(spent: list[float]) -> Iterator[None]:
    """Add the seconds Python's cyclic garbage collector runs (on any thread; it holds the GIL) to ``spent[0]``."""
    started: list[float] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        del info
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            spent[0] += time.perf_counter() - started.pop()

    gc.callbacks.append(callback)
    try:
        yield
    finally:
        gc.callbacks.remove(callback)


def run_stack(threads: int) -> Run:
    with quiet_stdout():
        result = _run_stack(threads)
    return replace(result, peak_mib=peak_mib())


def _run_stack(threads: int) -> Run:
    from core.kernel.thread import fold
    from infra.local.stack import LocalStack

    with LocalStack() as stack:
        stack.rt.agents = {AGENT.name: AGENT}
        stack.rt.provider_config = ProviderConfig(scripted=lambda name: ScriptedLLM(ten_steps, name=name))
        gc_spent = [0.0]
        with timed_gc(gc_spent):  # over the same span as ``seconds``
            started = time.perf_counter()
            ids = [stack.launch(AGENT.name, f"look up batch {i}").id for i in range(threads)]
            deadline = time.monotonic() + TIMEOUT
            pending = list(ids)
            while pending and time.monotonic() < deadline:
                # oldest first, and stop at the first one still running: a poll costs one load, not one per thread
                while pending and fold(stack.thread(pending[0])).status != "running":
                    pending.pop(0)
                time.sleep(0.2)
            seconds = time.perf_counter() - started
        stack.wait_idle(timeout=60)
        steps = sum(1 for i in stack.invocations if i.function.endswith("step") or "Step" in i.function)
        errors = sum(1 for i in stack.invocations if i.error is not None)
        not_done = [t for t in ids if fold(stack.thread(t)).status != "done"]
        items, _ = stack.items()
        retries = len(stack.retry_waits)
    return Run(threads, seconds, steps, errors + len(not_done), retries, items, 0.0, gc_spent[0])


def run() -> Report:
    report = Report("6 throughput")
    before_mib = peak_mib()
    runs: list[Run] = []
    for size in SIZES:
        result = run_stack(size)
        runs.append(result)
        report.say(
            f"{size} threads x {STEPS} steps: {result.steps} steps in {result.seconds:.1f}s = "
            f"{result.steps_per_second:.1f} steps/s, {result.errors} errors, {result.retries} retries, "
            f"{result.items} items, peak RSS {result.peak_mib:.0f} MiB, GC {result.gc_seconds:.1f}s"
        )
    for r in runs:
        report.row(
            f"{r.threads} threads x {STEPS} steps, all launched at once",
            target="0 errors" if r.threads < FULL else "run for real, 0 errors",
            verdict=verdict(r.errors == 0),
            ours=(
                f"{r.steps_per_second:.1f} steps/s ({r.steps} steps in {r.seconds:.0f} s), {r.errors} errors, "
                f"{r.retries} retries, peak RSS {r.peak_mib:.0f} MiB, {r.gc_seconds / r.seconds:.0%} of the wall "
                "time in GC"
            ),
        )
    if not any(r.threads >= FULL for r in runs):
        report.row(
            f"{FULL} threads x {STEPS} steps",
            target="run for real, 0 errors",
            verdict=verdict(False),
            ours=f"not run (BENCH_THREADS={','.join(map(str, SIZES))})",
        )
        report.missed.append(f"6 throughput: {FULL} threads not run")
    na = "n/a: no local stack (no Step Functions/Lambda emulation of its own)"
    report.rows[0].cells.update({c: na if c.startswith("LangGraph") else "" for c in ("LangGraph + DDB saver",)})
    small, large = runs[0], runs[-1]
    if large is not small:
        ratio = large.steps_per_second / small.steps_per_second
        report.notes.append(
            f"steps/s goes from {small.steps_per_second:.1f} with {small.threads} threads to "
            f"{large.steps_per_second:.1f} with {large.threads} (x{ratio:.2f}). One Python process runs every "
            "execution and every step on one GIL and keeps every execution moto's engine ran (its program and "
            f"history: peak RSS {small.peak_mib:.0f} MiB, then {large.peak_mib:.0f} MiB); Python's cyclic garbage "
            f"collector takes {small.gc_seconds / small.seconds:.0%} and {large.gc_seconds / large.seconds:.0%} of "
            f"the runs' wall time ({small.gc_seconds / small.steps * 1000:.1f} and "
            f"{large.gc_seconds / large.steps * 1000:.1f} ms a step); the rest of the difference is not broken down "
            "here. A step's reads no longer grow with the table (the local stack queries one partition, not the "
            "whole table). "
            f"Peak RSS is ru_maxrss after each run ({before_mib:.0f} MiB before the first). On AWS each step is its "
            "own Lambda invocation and DynamoDB's cost per request does not depend on the table's size (see SCALE.md)"
        )
    if any(r.errors for r in runs):
        report.missed.append("6 throughput: errors")
    return report


def main() -> int:
    report = run()
    print_report(report)
    return 0 if not report.missed else 1


if __name__ == "__main__":
    sys.exit(main())
