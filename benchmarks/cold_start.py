"""2. Cold start, measured the way Lambda runs it: the built package, a read-only bytecode cache, the first invocation.

stepfold: the step function's package as the Makefile's ``lambda-package`` recipe builds it (the recipe ``sam build``
runs), plus AWS's Powertools layer the package leaves Powertools, pydantic and the X-Ray SDK to
(:func:`powertools_layer`: ``aws-lambda-powertools[all]`` at the pinned versions, as AWS builds the layer, with
bytecode, as recent layers ship it: the same bytes as the layer's, so the same import cost; only their location
differs), built for this machine's CPU and Python (``LAMBDA_PLATFORM``/``LAMBDA_PY_VERSION``; the wheels for arm64 /
3.12 would not load here) under ``.venv-bench/lambda/``, once with its shipped ``.pyc`` and once without
(``LAMBDA_PYC=0``, what the package shipped before) to show what the bytecode buys. One sample is a fresh ``python -S``
process whose path is the package, the layer, then boto3's directory (as Lambda's ``/var/task``, ``/opt/python``, then
``/var/runtime``), with ``PYTHONDONTWRITEBYTECODE=1``: like Lambda's read-only file system, nothing it compiles is kept
for the next sample. It times the import of ``functions.step``, the first invocation's setup (``runtime()``: settings,
clients) and one ``handler`` call that runs one agent step (the calculator agent and its scripted model) on the memory
store, which is swapped in after ``runtime()`` built the DynamoDB one (this machine has no AWS).

The same first invocation is also timed with X-Ray tracing active (``TRACING_ENV``: what Lambda sets for the
template's ``Tracing: Active``), which builds Powertools' Tracer. The floor is ``import boto3;
boto3.client("dynamodb")``, measured the same way. The peers (each in its own ``pip install
--target`` directory, ``benchmarks/_targets.py``) time their imports only (no first invocation is counted for them), the
same way; every directory but the source-only stepfold build is compiled once with ``compileall --invalidation-mode
unchecked-hash``, as a pip-installed package ships bytecode. Before timing, each peer runs one agent step with a fake
model through its public API (the smoke in ``_targets.py``). ``ROUNDS`` rounds run every contender once each, in a
rotated order, so drift on this shared machine hits them all alike. A peer whose directory cannot be installed (no
network, no wheel) is reported as such, never given a number.



Run: ``python benchmarks/cold_start.py`` (builds the packages and installs the contenders' directories on first use).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import BOTO3, FAKE_AWS_ENV, OURS, ROOT, Report, median, print_report, verdict
from benchmarks._targets import Target, install, prologue, smoke, targets

ROUNDS = 15
TARGET_VS_BOTO3 = 1.3
TARGET_VS_PEER = 0.5
FULL_PEERS = 4
"""The first four peers are agent frameworks; the durable SDK is a workflow SDK (no model or tool layer)."""
PACKAGES = ROOT / ".venv-bench" / "lambda"
FUNCTION = "StepFunction"
SOURCE_ONLY = "stepfold, no .pyc"
KERNEL = "stepfold kernel alone"
KERNEL_CODE = "import core.kernel.agent, core.kernel.model, core.kernel.prompts, core.kernel.thread, core.kernel.tools"
"""What an existing Python app imports to use the kernel with no AWS (README "Use the kernel on its own")."""
"""The same package without bytecode (``LAMBDA_PYC=0``): every cold start compiles what it imports."""

_TIMER = """
import time as _t
_start = _t.perf_counter()
{code}
_elapsed = _t.perf_counter() - _start
_hwm = [l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(_elapsed, _hwm)
"""

FIRST_INVOCATION = """
import functions.step
from functions._wiring import runtime
rt = runtime()  # the first invocation's setup: settings, clients, agents (the handler would call it)
from core.adapters.store.memory import MemoryThreadStore
from core.kernel.events import utcnow
from core.kernel.thread import start_thread
rt.threads = MemoryThreadStore()  # no AWS here: the step runs on the memory store
rt.spend = None
thread = rt.threads.create(start_thread("t", "calculator", "add 2 and 3", now=utcnow()))
class Context:
    function_name = "step"; memory_limit_in_mb = 1024; aws_request_id = "r1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:step"
out = functions.step.handler({"thread_id": "t", "seq": thread.version}, Context())
assert out["route"] == "continue", out
assert functions.step.__file__.startswith(os.getcwd()), functions.step.__file__  # the package, not the repo
"""
FIRST_INVOCATION_ENV = {"STEPFOLD_MODEL": "scripted:calculator", "POWERTOOLS_LOG_LEVEL": "WARNING"}
BOTO3_CODE = "import boto3\nboto3.client('dynamodb')\n"


@dataclass(frozen=True)
class Contender:
    name: str
    paths: tuple[Path, ...]
    code: str
    target: Target | None = None
    env: tuple[tuple[str, str], ...] = ()
    """Environment on top of the first invocation's (stepfold's contenders only)."""


TRACED = "stepfold, X-Ray tracing active"
TRACING_ENV = (("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:2000"), ("AWS_XRAY_CONTEXT_MISSING", "IGNORE_ERROR"))
"""What Lambda sets when a function's tracing is active (template.yaml: ``Tracing: Active``): the first invocation
then builds Powertools' Tracer (the X-Ray SDK, botocore and httpx patched). No daemon listens: segments are UDP
datagrams nobody reads, and outside Lambda there is no facade segment, whose absence is ignored."""


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "STEPFOLD_"))}
    env.update(FAKE_AWS_ENV)
    env["OTEL_SDK_DISABLED"] = "true"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # Lambda's file system is read-only: no cache survives a sample
    return env


def host_platform() -> str:
    return "manylinux2014_aarch64" if platform.machine() in ("aarch64", "arm64") else "manylinux2014_x86_64"


def build_package(*, pyc: bool) -> Path:
    """The step function's package, by the Makefile's recipe, for this machine's CPU and this interpreter."""
    version = "{}.{}".format(*sys.version_info[:2])
    directory = PACKAGES / f"{FUNCTION}-py{version}-{'pyc' if pyc else 'source'}"
    done = subprocess.run(
        [
            *("make", "--no-print-directory", "-s", "lambda-package", f"LAMBDA_FUNCTION={FUNCTION}"),
            *(f"ARTIFACTS_DIR={directory}", f"LAMBDA_PLATFORM={host_platform()}", f"LAMBDA_PY_VERSION={version}"),
            *(f"LAMBDA_PYTHON={sys.executable}", f"LAMBDA_PIP={sys.executable} -m pip", f"LAMBDA_PYC={int(pyc)}"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"make lambda-package failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return directory


LAYER_RUNTIME_HAS = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")
"""What AWS's layer build removes (the Lambda runtime has them)."""


def _pin(name: str) -> str:
    for line in (ROOT / "requirements-lambda.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith(f"{name}=="):
            return line.strip()
    raise RuntimeError(f"requirements-lambda.txt pins no {name}")


def powertools_layer(*, platform_tag: str, version: str, python: str = sys.executable, compile_with: str = "") -> Path:
    """AWS's Powertools layer, rebuilt the way AWS builds it (``pip install aws-lambda-powertools[all]==<version>``,
    boto3 & co removed), at requirements-lambda.txt's pins of Powertools and pydantic (the layer's pydantic is the one
    AWS resolved when it built the layer; the pin is what the tests run), for ``platform_tag``/``version``. Bytecode
    is compiled by ``compile_with`` (an interpreter of ``version``), or not at all without one."""
    directory = PACKAGES / f"powertools-layer-{platform_tag}-py{version}{'-pyc' if compile_with else ''}"
    stamp = directory / ".complete"
    if stamp.exists():
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    pins = [_pin("aws-lambda-powertools").replace("==", "[all]=="), _pin("pydantic"), _pin("aws-xray-sdk")]
    done = subprocess.run(
        [
            *(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"),
            *("--platform", platform_tag, "--only-binary=:all:", "--implementation", "cp", "--python-version", version),
            *("--target", str(directory), *pins),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the Powertools layer could not be installed:\n{done.stderr[-2000:]}")
    for path in directory.iterdir():
        if path.name.removesuffix(".py").split("-")[0] in (*LAYER_RUNTIME_HAS, "python_dateutil", "bin"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if compile_with:
        subprocess.run(
            [compile_with, "-m", "compileall", "-q", "-j0", "--invalidation-mode", "unchecked-hash", str(directory)],
            capture_output=True,
            check=False,
        )
    stamp.write_text("")
    return directory


def compile_directory(directory: Path) -> None:
    """Bytecode for a pip-installed directory, once (as ``pip install`` would ship it; unchecked, as ours is)."""
    stamp = directory / ".compiled"
    if stamp.exists():
        return
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j0", "--invalidation-mode", "unchecked-hash", str(directory)],
        capture_output=True,
        check=False,  # a peer's test data may not compile; what is imported does
    )
    stamp.write_text("")


def program(contender: Contender) -> str:
    # Lambda's working directory is the package (/var/task); `-c` puts it first on the path, so nothing of the repo
    # (its sources and their bytecode) can stand in for the package's.
    lines = ["import sys, os", f"os.chdir({str(contender.paths[0])!r})"]
    lines.append("sys.path[:] = [p for p in sys.path if p not in ('', '.')]")
    lines += [f"sys.path.append({str(p)!r})" for p in contender.paths]
    if contender.target is not None:
        return prologue(contender.target) + _TIMER.format(code=contender.target.imports)
    return "\n".join(lines) + "\n" + _TIMER.format(code=contender.code)


def run_child(code: str, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-S", *flags, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def sample(contender: Contender, env: dict[str, str]) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of one fresh process. The peak is ``VmHWM`` of the new process image."""
    done = run_child(program(contender), env)
    if done.returncode != 0:
        raise RuntimeError(f"{contender.name}: failed: {done.stderr.strip().splitlines()[-3:]}")
    seconds, rss = done.stdout.split()[-2:]
    return float(seconds), int(rss)


def import_profile(contender: Contender, env: dict[str, str], runs: int = 5) -> list[tuple[str, float]]:
    """Own import time by top-level package (``-X importtime``, median of ``runs``), heaviest first."""
    per_run: list[dict[str, float]] = []
    for _ in range(runs):
        done = run_child(program(contender), env, "-X", "importtime")
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
    first_env = {**env, **FIRST_INVOCATION_ENV}
    started = time.perf_counter()
    all_targets = targets()
    boto3_target = all_targets[1]
    install(boto3_target)
    compile_directory(boto3_target.directory)
    ours_pyc, ours_source = build_package(pyc=True), build_package(pyc=False)
    version = "{}.{}".format(*sys.version_info[:2])
    layer = powertools_layer(platform_tag=host_platform(), version=version, compile_with=sys.executable)
    report.say(f"step packages built (make lambda-package, {host_platform()}) in {time.perf_counter() - started:.0f}s")
    boto3_dir = boto3_target.directory
    contenders = [
        Contender(OURS, (ours_pyc, layer, boto3_dir), FIRST_INVOCATION),
        Contender(SOURCE_ONLY, (ours_source, layer, boto3_dir), FIRST_INVOCATION),
        Contender(TRACED, (ours_pyc, layer, boto3_dir), FIRST_INVOCATION, env=TRACING_ENV),
        Contender(KERNEL, (ours_pyc, layer), KERNEL_CODE),
        Contender(BOTO3, (boto3_dir,), BOTO3_CODE),
    ]
    unavailable: dict[str, str] = {}
    failed: dict[str, str] = {}
    peer_targets = all_targets[2:]
    for target in peer_targets:
        try:
            install(target)
        except RuntimeError as install_error:
            reason = [line for line in str(install_error).splitlines() if line.strip()][-1:] or ["pip failed"]
            unavailable[target.contender] = f"could not be installed here: {reason[0][:160]}"
            report.say(f"{target.contender}: {unavailable[target.contender]}")
            continue
        compile_directory(target.directory)
        error = smoke(target, env)
        if error is not None:
            failed[target.contender] = error
        report.say(f"{target.contender}: one agent step with a fake model: {error or 'ok'}")
        contenders.append(Contender(target.contender, (target.directory,), target.imports, target))

    def env_of(contender: Contender) -> dict[str, str]:
        return {**first_env, **dict(contender.env)} if contender.code is FIRST_INVOCATION else env

    for contender in contenders:  # warm-up: the disk cache (nothing is written: no bytecode cache)
        sample(contender, env_of(contender))
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    rss: dict[str, list[int]] = {c.name: [] for c in contenders}
    started = time.perf_counter()
    for round_ in range(ROUNDS):
        shift = round_ % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            seconds, kib = sample(contender, env_of(contender))
            times[contender.name].append(seconds)
            rss[contender.name].append(kib)
    report.say(f"{ROUNDS} interleaved rounds in {time.perf_counter() - started:.0f}s")
    med = {name: median(values) * 1000 for name, values in times.items()}
    for name, ms in med.items():
        report.say(f"{name}: median {ms:.0f} ms, peak RSS {median(rss[name]) / 1024:.0f} MiB")
    floor = med[BOTO3]
    report.say(f"first invocation vs boto3: {med[OURS] / floor:.2f}x")
    report.say(f"first invocation without .pyc vs boto3: {med[SOURCE_ONLY] / floor:.2f}x")
    full_peers = [t.contender for t in peer_targets[:FULL_PEERS] if t.contender in med]
    lightest = min(full_peers, key=lambda p: med[p]) if full_peers else None
    if lightest is None:
        report.say("vs lightest peer: n/a (no full peer could be installed here)")
    else:
        report.say(f"vs lightest peer: {med[OURS] / med[lightest]:.2f}x ({lightest}, its imports only)")
    peer_keys = ("langgraph", "pydantic_ai", "openai_agents", "strands", "durable")
    keys = {"ours": OURS, "boto3": BOTO3, **dict(zip(peer_keys, (t.contender for t in peer_targets), strict=True))}

    def cell(contender: str, text: str) -> str:
        return f"n/a: {unavailable[contender]}" if contender in unavailable else text

    report.row(
        f"first invocation (stepfold) / imports (peers), median of {ROUNDS} fresh processes, no bytecode cache (ms)",
        **{k: cell(c, f"{med[c]:.0f}") if c in med or c in unavailable else "" for k, c in keys.items()},
    )
    report.row(
        "the same / boto3 alone (`import boto3; boto3.client('dynamodb')`)",
        target=f"stepfold <= {TARGET_VS_BOTO3}x",
        verdict=verdict(med[OURS] / floor <= TARGET_VS_BOTO3),
        **{k: cell(c, f"{med[c] / floor:.2f}x") for k, c in keys.items() if c in med or c in unavailable},
    )
    report.row(
        f"stepfold without shipped .pyc (ms; / boto3): what every cold start cost before ({SOURCE_ONLY})",
        ours=f"{med[SOURCE_ONLY]:.0f} ({med[SOURCE_ONLY] / floor:.2f}x)",
    )
    report.row(
        f"{TRACED} (template.yaml's `Tracing: Active`: the first invocation also builds Powertools' Tracer; ms; "
        "/ boto3)",
        ours=f"{med[TRACED]:.0f} ({med[TRACED] / floor:.2f}x)",
    )
    report.say(f"first invocation with X-Ray tracing active vs boto3: {med[TRACED] / floor:.2f}x")
    report.row(
        f"the kernel alone, no AWS ({KERNEL_CODE.removeprefix('import ')}; ms; / boto3)",
        ours=f"{med[KERNEL]:.0f} ({med[KERNEL] / floor:.2f}x)",
    )
    if lightest is not None:
        report.row(
            f"stepfold / this peer (lightest full peer: {lightest})",
            target=f"<= {TARGET_VS_PEER}x the lightest",
            verdict=verdict(med[OURS] / med[lightest] <= TARGET_VS_PEER),
            **{k: cell(c, f"{med[OURS] / med[c]:.2f}x") for k, c in keys.items() if k not in ("ours", "boto3")},
        )
    report.row(
        "peak RSS (MiB)",
        **{k: cell(c, f"{median(rss[c]) / 1024:.0f}") for k, c in keys.items() if c in rss or c in unavailable},
    )
    report.row(
        "one agent step with a fake model, public API",
        **{
            k: cell(c, "ok" if c not in failed else f"failed: {failed[c]}")
            for k, c in keys.items()
            if k != "boto3" and (c in med or c in unavailable)
        },
    )
    report.notes.append(
        "stepfold: the step function's package (make lambda-package, built for this machine's CPU and Python) with "
        "Powertools, pydantic and the X-Ray SDK imported from a rebuild of AWS's Powertools layer on the path after it "
        "(as /opt/python; the same bytes, so the same import cost as bundling them), "
        "`import functions.step`, `runtime()` and one `handler` call (one calculator step, scripted model, memory "
        "store) in a fresh `python -S` with PYTHONDONTWRITEBYTECODE=1; boto3: `import boto3; "
        "boto3.client('dynamodb')`; peers: their imports only (LangGraph: langgraph.graph, langgraph.prebuilt, "
        "langchain_core messages/tools and the DynamoDB saver; Pydantic AI: Agent + FunctionModel; OpenAI Agents: "
        "Agent/Runner/function_tool + the Model interface; Strands: Agent, tool, Model; durable SDK: "
        "durable_execution, DurableContext, durable_step), each in its own `pip install --target` directory with "
        "bytecode compiled once"
    )
    shares = import_profile(contenders[0], first_env)
    total = sum(ms for _, ms in shares) or 1.0
    own = sum(ms for name, ms in shares if name in ("core", "agents", "functions"))
    top = ", ".join(f"{name} {ms / total:.0%}" for name, ms in shares[:8])
    report.say(f"stepfold first-invocation import profile (-X importtime, own time by package): {top}")
    report.notes.append(
        f"where stepfold's import time goes (-X importtime, own time by top-level package, median of 5): {top}; "
        f"stepfold's own modules (core, agents, functions) {own / total:.0%}"
    )
    report.notes.append(
        "the durable SDK is a workflow SDK (durable steps and waits), not an agent framework: it is not counted "
        "as a 'full peer'; its one-step smoke runs a model step and a tool step under its local test runner"
    )
    return report


def clean() -> None:
    """Forget the built packages (the next run builds them again)."""
    shutil.rmtree(PACKAGES, ignore_errors=True)


def main() -> int:
    if "--rebuild" in sys.argv:
        clean()
    report = run()
    print_report(report)
    return 0 if not report.missed else 1


if __name__ == "__main__":
    sys.exit(main())
