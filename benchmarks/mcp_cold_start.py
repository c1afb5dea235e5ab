"""The step's first invocation with and without an MCP agent (ARCHITECTURE.md "MCP tools").

Each sample is a fresh interpreter that imports ``functions.step``, builds the runtime (``runtime()``) and makes one
``handler`` call on the memory store, as ``benchmarks/cold_start.py`` does: without MCP, a thread of ``calculator``
(its scripted model); with MCP, a thread of ``oncall``, whose first step lists the tools of the example ops MCP server
(infra/local/mcp_server.py, run by this script on a local port, so the network is loopback) through our client,
pins them in the thread, validates nothing yet and runs its local ``recent_deploys``. The two kinds of sample are
interleaved, ``ROUNDS`` of each, so drift on a shared machine hits both alike. It prints the medians, their ratio, and
the modules only the MCP step imports. Unlike cold_start.py it runs from the source tree with this interpreter's
packages (the built package needs ``fastjsonschema`` in the Makefile's ``LAMBDA_NEEDS_StepFunction``).

Run: ``python benchmarks/mcp_cold_start.py``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import Report, print_report

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 15

FIRST_INVOCATION = """
import time as _t
_start = _t.perf_counter()
import functions.step
from functions._wiring import runtime
rt = runtime()
from core.adapters.store.memory import MemoryThreadStore
from core.kernel.events import utcnow
from core.kernel.thread import start_thread
rt.threads = MemoryThreadStore()
rt.spend = None
thread = rt.threads.create(start_thread("t", {agent!r}, {text!r}, now=utcnow()))
class Context:
    function_name = "step"; memory_limit_in_mb = 1024; aws_request_id = "r1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:step"
out = functions.step.handler({{"thread_id": "t", "seq": thread.version}}, Context())
_elapsed = _t.perf_counter() - _start
assert out["route"] == "continue", out
import sys
print(json.dumps({{"seconds": _elapsed, "modules": sorted(sys.modules), "events": rt.threads.load("t").version}}))
"""
CASES = {
    "without MCP (calculator)": ("calculator", "add 2 and 3"),
    "with MCP (oncall, ops server)": ("oncall", "alert: checkout error rate above 25%"),
}


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "STEPFOLD_"))}
    env.update(
        {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "STEPFOLD_MCP_OPS_URL": url,  # oncall's URL setting (infra/local/mcp_server.URL_SETTING)
        }
    )
    return env


def _sample(agent: str, text: str, env: dict[str, str]) -> dict[str, object]:
    code = "import json\n" + FIRST_INVOCATION.format(agent=agent, text=text)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"{agent}: {done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


DEV_PYTHON = ROOT / ".venv" / "bin" / "python"
"""Where the mcp SDK is: .venv-bench cannot have it (its peers pin mcp < 2; our example server is on mcp 2)."""


def run() -> Report:
    """Benchmark 7: the step's first invocation with and without an MCP agent, side by side.

    The samples are fresh processes of .venv's interpreter (``make setup``): the example MCP server needs the mcp SDK
    at the version pyproject's ``local`` extra pins, which .venv-bench cannot install beside its peers (they pin
    mcp < 2.3). Run from any other interpreter, this script re-runs itself with .venv's and reads its report."""
    if Path(sys.prefix).resolve() != DEV_PYTHON.parent.parent.resolve():
        return _report_from(DEV_PYTHON)
    from infra.local.mcp_server import LocalMcpServer, ops_server

    report = Report("7 MCP cold start")
    server, _ = ops_server()
    with LocalMcpServer(server) as running:
        env = _env(running.url)
        samples: dict[str, list[float]] = {name: [] for name in CASES}
        modules: dict[str, set[str]] = {}
        for round_ in range(ROUNDS):
            order = list(CASES.items()) if round_ % 2 == 0 else list(reversed(CASES.items()))
            for name, (agent, text) in order:
                result = _sample(agent, text, env)
                samples[name].append(float(result["seconds"]))  # type: ignore[arg-type]
                modules[name] = set(result["modules"])  # type: ignore[call-overload]
    without, with_mcp = (statistics.median(samples[name]) * 1000 for name in CASES)
    report.say(f"step first invocation, {ROUNDS} fresh processes each, interleaved ({sys.executable})")
    for name in CASES:
        values = sorted(v * 1000 for v in samples[name])
        report.say(
            f"  {name:<32} median {statistics.median(values):7.1f} ms  (min {values[0]:.1f}, max {values[-1]:.1f})"
        )
    report.say(f"  ratio with/without MCP: {with_mcp / without:.2f}")
    names = list(CASES)
    extra = sorted({m.split(".")[0] for m in modules[names[1]] - modules[names[0]]})
    report.say(f"  top-level packages only the MCP step imports: {', '.join(extra)}")
    first, second = names
    report.row(f"first invocation, step: {first} (ms, median)", ours=f"{without:.0f}")
    report.row(
        f"first invocation, step: {second} (ms, median; incl. 3 loopback HTTP calls)",
        ours=f"{with_mcp:.0f} ({with_mcp / without:.2f}x)",
    )
    report.notes.append(
        "the source tree with .venv's packages (not the built package, so httpx's CLI dependencies click, rich and "
        "pygments, absent from the Lambda package, are imported too); the MCP sample lists the tools of the example "
        "ops server on a loopback port (initialize, initialized, tools/list) and pins them"
    )
    return report


def _report_from(python: Path) -> Report:
    """This benchmark's report as ``python`` (an interpreter with the mcp SDK) runs it."""
    if not python.exists():
        report = Report("7 MCP cold start")
        report.row("first invocation, step: with / without an MCP agent", ours=f"n/a: no {python} (make setup)")
        return report
    done = subprocess.run(
        [str(python), __file__, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=1800, check=True
    )
    data = json.loads(done.stdout.splitlines()[-1])
    report = Report(data["title"], notes=data["notes"], missed=data["missed"])
    for line in data["lines"]:
        report.say(line)
    for row in data["rows"]:
        report.row(row["measure"], row["target"], row["verdict"], ours=row["ours"])
    report.notes.append(f"run with {python.relative_to(ROOT)} (.venv-bench cannot have the mcp SDK version it needs)")
    return report


def main() -> None:
    if "--json" in sys.argv:
        report = run()
        rows = [
            {"measure": r.measure, "target": r.target, "verdict": r.verdict, "ours": next(iter(r.cells.values()), "")}
            for r in report.rows
        ]
        keep = {"title": report.title, "notes": report.notes, "missed": report.missed, "lines": report.lines}
        print(json.dumps({**keep, "rows": rows}))
        return
    print_report(run())


if __name__ == "__main__":
    main()
