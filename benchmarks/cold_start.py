"""2. Cold start: fresh-process import time of what one agent step needs, stepfold vs boto3 alone vs each peer.

Each contender runs in a new ``python -S`` process that sees only its own ``pip install --target`` directory
(``benchmarks/_targets.py``), times its imports with ``perf_counter`` and reports its peak RSS. stepfold's
imports are what the step Lambda loads by its first invocation: ``functions.step`` at init, then boto3 and the
DynamoDB stores that ``functions._wiring.build_runtime`` imports lazily. Every contender is imported once to
warm the disk cache and write bytecode (a Lambda package has none: see the note), then ``ROUNDS`` rounds run
every contender once each, in a rotated order, so drift on this shared machine hits them all alike. Before
timing, each contender runs one agent step with a fake model through its public API (the smoke in
``_targets.py``) to prove the imports suffice.

Run: ``python benchmarks/cold_start.py`` (installs the contenders' directories on first use).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import BOTO3, FAKE_AWS_ENV, OURS, Report, median, print_report, verdict
from benchmarks._targets import Target, install, prologue, run_python, smoke, targets

ROUNDS = 15
TARGET_VS_BOTO3 = 1.2
TARGET_VS_PEER = 0.5
FULL_PEERS = 4
"""The first four peers are agent frameworks; the durable SDK is a workflow SDK (no model or tool layer)."""

_TIMER = """
import time as _t
_start = _t.perf_counter()
{imports}
_elapsed = _t.perf_counter() - _start
_hwm = [l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(_elapsed, _hwm)
"""


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(FAKE_AWS_ENV)
    env["OTEL_SDK_DISABLED"] = "true"
    return env


def sample(target: Target, env: dict[str, str]) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of one fresh process importing the contender.

    The peak is ``VmHWM`` of the new process image: ``ru_maxrss`` would carry the parent's peak across the exec.
    """
    done = run_python(prologue(target) + _TIMER.format(imports=target.imports), env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{target.contender}: import failed: {done.stderr.strip().splitlines()[-1:]}")
    seconds, rss = done.stdout.split()[-2:]
    return float(seconds), int(rss)


def import_profile(target: Target, env: dict[str, str], runs: int = 5) -> list[tuple[str, float]]:
    """Own import time by top-level package (``-X importtime``, median of ``runs``), heaviest first."""
    import re
    import subprocess
    import textwrap

    per_run: list[dict[str, float]] = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-S", "-X", "importtime", "-c", textwrap.dedent(prologue(target) + target.imports)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        totals: dict[str, float] = {}
        for line in done.stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
            if match:
                top = match[2].split(".")[0]
                totals[top] = totals.get(top, 0.0) + int(match[1]) / 1000
        per_run.append(totals)
    names = {name for totals in per_run for name in totals}
    medians = {name: median(t.get(name, 0.0) for t in per_run) for name in names}
    return sorted(medians.items(), key=lambda pair: -pair[1])


def run() -> Report:
    report = Report("2 cold start")
    env = child_env()
    started = time.perf_counter()
    contenders = targets()
    for target in contenders:
        install(target)
    report.say(f"contenders installed in {time.perf_counter() - started:.0f}s")
    failed: dict[str, str] = {}
    for target in contenders:
        error = smoke(target, env)
        if error is not None:
            failed[target.contender] = error
        report.say(f"{target.contender}: one agent step with a fake model: {error or 'ok'}")
        sample(target, env)  # warm-up: disk cache and bytecode
    times: dict[str, list[float]] = {t.contender: [] for t in contenders}
    rss: dict[str, list[int]] = {t.contender: [] for t in contenders}
    started = time.perf_counter()
    for round_ in range(ROUNDS):
        shift = round_ % len(contenders)
        for target in contenders[shift:] + contenders[:shift]:
            seconds, kib = sample(target, env)
            times[target.contender].append(seconds)
            rss[target.contender].append(kib)
    report.say(f"{ROUNDS} interleaved rounds in {time.perf_counter() - started:.0f}s")
    med = {name: median(values) * 1000 for name, values in times.items()}
    for name, ms in med.items():
        report.say(f"{name}: median import {ms:.0f} ms, peak RSS {median(rss[name]) / 1024:.0f} MiB")
    floor = med[BOTO3]
    peers = [t.contender for t in contenders[2 : 2 + FULL_PEERS]]
    lightest = min(peers, key=lambda p: med[p])
    keys = ["ours", "boto3", "langgraph", "pydantic_ai", "openai_agents", "strands", "durable"]
    by_key = dict(zip(keys, [t.contender for t in contenders], strict=True))
    report.row(
        f"import time, median of {ROUNDS} fresh processes (ms)",
        **{k: f"{med[c]:.0f}" for k, c in by_key.items()},
    )
    report.row(
        "import time / boto3 alone",
        target=f"stepfold <= {TARGET_VS_BOTO3}x",
        verdict=verdict(med[OURS] / floor <= TARGET_VS_BOTO3),
        **{k: f"{med[c] / floor:.2f}x" for k, c in by_key.items()},
    )
    report.row(
        f"stepfold / this peer (lightest full peer: {lightest})",
        target=f"<= {TARGET_VS_PEER}x the lightest",
        verdict=verdict(med[OURS] / med[lightest] <= TARGET_VS_PEER),
        **{k: f"{med[OURS] / med[c]:.2f}x" for k, c in by_key.items() if k not in ("ours", "boto3")},
    )
    report.row(
        "peak RSS after the imports (MiB)",
        **{k: f"{median(rss[c]) / 1024:.0f}" for k, c in by_key.items()},
    )
    report.row(
        "one agent step with a fake model, public API",
        **{k: ("ok" if c not in failed else f"failed: {failed[c]}") for k, c in by_key.items()},
    )
    report.notes.append(
        "imports timed: stepfold `import functions.step, boto3, core.adapters.store.dynamodb, "
        "core.adapters.store.approvals_dynamodb`; "
        "LangGraph: langgraph.graph, langgraph.prebuilt, langchain_core messages/tools and the DynamoDB saver; "
        "Pydantic AI: Agent + FunctionModel; OpenAI Agents: Agent/Runner/function_tool + the Model interface; "
        "Strands: Agent, tool, Model; durable SDK: durable_execution, DurableContext, durable_step. No provider SDK "
        "(each uses a fake model); each contender in its own `pip install --target` directory with `python -S`"
    )
    ours = contenders[0]
    shares = import_profile(ours, env)
    total = sum(ms for _, ms in shares) or 1.0
    own = sum(ms for name, ms in shares if name in ("core", "agents", "functions"))
    boto = sum(
        ms for name, ms in shares if name in ("boto3", "botocore", "s3transfer", "urllib3", "dateutil", "jmespath")
    )
    top = ", ".join(f"{name} {ms / total:.0%}" for name, ms in shares[:8])
    report.say(f"stepfold import profile (-X importtime, own time by package): {top}")
    report.notes.append(
        f"where stepfold's import time goes (-X importtime, own time by top-level package, median of 5): {top}; "
        f"stepfold's own modules (core, agents, functions) {own / total:.0%}, "
        f"boto3 and its dependencies {boto / total:.0%}"
    )
    report.notes.append(
        "the durable SDK is a workflow SDK (durable steps and waits), not an agent framework: it is not counted "
        "as a 'full peer'; its one-step smoke runs a model step and a tool step under its local test runner"
    )
    return report


def main() -> int:
    report = run()
    print_report(report)
    return 0 if not report.missed else 1


if __name__ == "__main__":
    sys.exit(main())
