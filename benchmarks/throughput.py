"""6. Throughput of the local stack: many threads of 10 steps each, launched at once.

The local stack (``infra/local/stack.py``) is the deployed code on moto: the real ``agent_loop.asl.json`` run by
moto's Step Functions engine, every Lambda task routed to ``functions.step.handler``, DynamoDB and S3 in this
process. All threads are launched at once, as the API's launch does (thread + execution); moto runs each
execution on its own thread, so as many steps are in flight as the stack allows (one process, one GIL). A
scripted model makes 9 lookups and then calls ``done_for_now``: 10 model calls, 10 step invocations a thread.

The issue asks for 1,000 threads x 10 steps. moto copies the whole table for every item of every transaction
(``moto/dynamodb/models/__init__.py``, ``transact_write_items``) and a step commits two transactions, so the
time per step grows with the number of items in the table; runs of ``SIZES`` threads are measured and the
1,000-thread run is extrapolated from them (see the README). Peak memory is the process's ``ru_maxrss``.

Run: ``python benchmarks/throughput.py`` (``BENCH_THREADS=1000`` to attempt the full run).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import BENCH_AGENT, Report, print_report, verdict
from core.adapters.llm import ProviderConfig
from core.adapters.llm.scripted import Say, ScriptedLLM
from core.kernel.events import LLMCall
from core.kernel.model import LLMRequest

STEPS = 10
FULL = 1000
SIZES = tuple(int(n) for n in os.environ.get("BENCH_THREADS", "25,50").split(","))
TIMEOUT = 1800.0
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
    items: int
    copy_seconds: float

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds


@contextmanager
def timed_table_copies(spent: list[float]) -> Iterator[None]:
    """Add the seconds moto's DynamoDB spends deep-copying tables (on every thread) to ``spent[0]``."""
    import copy
    import threading

    import moto.dynamodb.models as models

    lock = threading.Lock()

    class TimedCopy:
        def __getattr__(self, name: str) -> Any:
            return getattr(copy, name)

        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            started = time.perf_counter()
            try:
                return copy.deepcopy(value, memo)
            finally:
                with lock:
                    spent[0] += time.perf_counter() - started

    saved = models.copy  # type: ignore[attr-defined]
    models.copy = TimedCopy()  # type: ignore[attr-defined, assignment]
    try:
        yield
    finally:
        models.copy = saved  # type: ignore[attr-defined]


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


def run_stack(threads: int) -> Run:
    spent = [0.0]
    with quiet_stdout(), timed_table_copies(spent):
        result = _run_stack(threads)
    return replace(result, copy_seconds=spent[0])


def _run_stack(threads: int) -> Run:
    from core.kernel.thread import fold
    from infra.local.stack import LocalStack

    with LocalStack() as stack:
        stack.rt.agents = {AGENT.name: AGENT}
        stack.rt.provider_config = ProviderConfig(scripted=lambda name: ScriptedLLM(ten_steps, name=name))
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
    return Run(threads, seconds, steps, errors + len(not_done), items, 0.0)


def run() -> Report:
    report = Report("6 throughput")
    before_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    runs: list[Run] = []
    for size in SIZES:
        result = run_stack(size)
        runs.append(result)
        report.say(
            f"{size} threads x {STEPS} steps: {result.steps} steps in {result.seconds:.1f}s = "
            f"{result.steps_per_second:.1f} steps/s, {result.errors} errors, {result.items} items, "
            f"{result.copy_seconds / result.seconds:.0%} of the time in moto's table copies"
        )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # seconds per step grows linearly with the table's size (moto's copy per transaction item): fit and extrapolate
    small, large = runs[0], runs[-1]
    per_small, per_large = small.seconds / small.steps, large.seconds / large.steps
    slope = (per_large - per_small) / (large.threads - small.threads) if large.threads != small.threads else 0.0
    per_full = per_small + slope * (FULL - small.threads)
    full_seconds = per_full * FULL * STEPS
    errors = sum(r.errors for r in runs)
    for r in runs:
        report.row(
            f"{r.threads} threads x {STEPS} steps, all launched at once",
            target="0 errors",
            verdict=verdict(r.errors == 0),
            ours=f"{r.steps_per_second:.1f} steps/s ({r.steps} steps in {r.seconds:.0f} s), {r.errors} errors",
        )
    measured_full = next((r for r in runs if r.threads >= FULL), None)
    report.row(
        f"{FULL} threads x {STEPS} steps",
        ours=(
            f"{measured_full.steps_per_second:.1f} steps/s (measured)"
            if measured_full
            else f"est. {1 / per_full:.1f} steps/s, {full_seconds / 3600:.1f} h (extrapolated, not run)"
        ),
    )
    report.row(
        "peak memory of the process (ru_maxrss) over the runs above",
        ours=f"{peak_mib:.0f} MiB ({before_mib:.0f} MiB before the first run)",
    )
    share = large.copy_seconds / large.seconds
    report.row(
        f"{large.threads} threads: steps/s without the time moto spends copying tables",
        ours=f"{large.steps / (large.seconds - large.copy_seconds):.1f} steps/s ({share:.0%} of the run was copies)",
    )
    na = "n/a: no local stack (no Step Functions/Lambda emulation of its own)"
    report.rows[0].cells.update({c: na if c.startswith("LangGraph") else "" for c in ("LangGraph + DDB saver",)})
    report.notes.append(
        f"steps/s falls as the table grows: moto deep-copies the whole table for every item of a transaction, and "
        f"timing those copies (every thread) puts {share:.0%} of the {large.threads}-thread run's wall time in them; "
        "the 1,000-thread "
        "figure extrapolates seconds per step linearly in the number of threads between the smallest and largest "
        "run. On DynamoDB a transaction costs the same whatever the table's size (see SCALE.md)"
    )
    if errors:
        report.missed.append("6 throughput: errors")
    return report


def main() -> int:
    report = run()
    print_report(report)
    return 0 if not report.missed else 1


if __name__ == "__main__":
    sys.exit(main())
