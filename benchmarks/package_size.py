"""3. Package size: stepfold's deployables, one per function, vs each peer's installed footprint with its dependencies.

stepfold: one package per function of template.yaml, as ``sam build`` makes them with the Makefile builder
(``build-<LogicalId>``: of core/, agents/ and functions/ only the modules that function's handler imports, prompts/
and the HTML templates only where they are read (``infra/lambda_package.py``), and of requirements-lambda.txt only the
packages that function imports, without anyio, for arm64 / CPython 3.12, with the ``.pyc`` compiled for 3.12). With
SAM CLI in ``.venv-sam``,
``bash .ci/sam.sh`` builds them into ``.aws-sam/build/<LogicalId>``; without it, ``make lambda-packages`` runs the
same recipe for every function into the same place (the report says which). No boto3/botocore: the Lambda runtime
provides them. Peers: their ``pip install --target`` directories (``benchmarks/_targets.py``), in full and without
what the Lambda runtime provides (boto3 and its dependencies), which is what a peer's function package would ship.
Sizes are the bytes of the files; "zip" is the same tree deflated, as a Lambda upload is. stepfold's sizes include
the shipped bytecode (and are given without it too); the peers' are without bytecode, as before.

Powertools, pydantic and the X-Ray SDK are in no package: the functions import them from AWS's Powertools layer
(template.yaml ``PowertoolsVersion``). The layer is reported on its own line, rebuilt the way AWS builds it
(``benchmarks/cold_start.py`` ``powertools_layer``: ``aws-lambda-powertools[all]`` at the pinned versions, for arm64 /
3.12, with bytecode): it is AWS's, published once per region and shared by every function that names it, so no
deploy uploads it, and it counts once, not once per function.

Run: ``python benchmarks/package_size.py`` (``BENCH_SKIP_SAM=1`` reuses an existing .aws-sam build).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT, Report, human_bytes, print_report, verdict
from benchmarks._targets import LAMBDA_PROVIDED, footprint, install, targets
from benchmarks.cold_start import powertools_layer

BUILD = ROOT / ".aws-sam" / "build"
FUNCTIONS = (
    "StepFunction",
    "RequestHumanFunction",
    "RecordEndFunction",
    "ApiFunction",
    "ApprovalsFunction",
    "AuthorizerFunction",
    "TriggersFunction",
    "LaunchFunction",
)
ARTIFACT = BUILD / "StepFunction"
TARGET_BYTES = 5_000_000
STEP_TARGET_BYTES = 2_000_000
KEYS = ("ours", "boto3", "langgraph", "pydantic_ai", "openai_agents", "strands", "durable")
SAM = ROOT / ".venv-sam" / "bin" / "sam"


def build_artifacts(report: Report) -> str:
    """Build every function's package; returns how."""
    if os.environ.get("BENCH_SKIP_SAM") == "1" and all((BUILD / f).is_dir() for f in FUNCTIONS):
        report.say("BENCH_SKIP_SAM=1: measuring the existing .aws-sam build")
        return "an existing .aws-sam build"
    started = time.perf_counter()
    if SAM.exists():
        command, how = ["bash", str(ROOT / ".ci" / "sam.sh")], "`sam build` (.ci/sam.sh)"
    else:
        pip = f"{sys.executable} -m pip"
        command = ["make", "--no-print-directory", "-s", "lambda-packages", f"LAMBDA_OUT={BUILD}", f"LAMBDA_PIP={pip}"]
        how = "`make lambda-packages` (no SAM CLI in .venv-sam: the same build-<LogicalId> recipe, run by make)"
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{how} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    report.say(f"{how} built the packages in {time.perf_counter() - started:.0f}s")
    return how


def with_bytecode(directory: Path) -> tuple[int, int]:
    """(bytes, files) of everything under ``directory``, bytecode included (what the function ships)."""
    total = files = 0
    for path in directory.rglob("*"):
        if path.is_file():
            total += path.stat().st_size
            files += 1
    return total, files


def zipped(directory: Path, *, exclude: tuple[str, ...] = (), bytecode: bool = False) -> int:
    """Bytes of the tree as a deflated zip (``exclude`` top-level names left out, bytecode too unless ``bytecode``)."""
    skip = set(exclude)
    with tempfile.TemporaryFile() as raw:
        with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(directory.rglob("*")):
                rel = path.relative_to(directory)
                top = rel.parts[0].split("-", 1)[0].removesuffix(".py").removeprefix("python_")
                cache = "__pycache__" in rel.parts or path.suffix == ".pyc"
                if top in skip or (cache and not bytecode) or not path.is_file():
                    continue
                if rel.parts[0] == ".complete":
                    continue
                archive.write(path, str(rel))
        return raw.tell()


def largest_parts(directory: Path, n: int = 5) -> list[tuple[str, int]]:
    sizes = []
    for child in directory.iterdir():
        if child.name.endswith(".dist-info"):
            continue
        size = footprint(child)[0] if child.is_dir() else child.stat().st_size
        sizes.append((child.name, size))
    return sorted(sizes, key=lambda pair: -pair[1])[:n]


def run() -> Report:
    report = Report("3 package size")
    how = build_artifacts(report)
    sizes: dict[str, tuple[int, int, int]] = {}
    for function in FUNCTIONS:
        shipped_bytes, files = with_bytecode(BUILD / function)
        sources, _ = footprint(BUILD / function)
        sizes[function] = (shipped_bytes, sources, zipped(BUILD / function, bytecode=True))
        report.say(
            f"{function}: {human_bytes(shipped_bytes)} unzipped in {files} files ({human_bytes(sources)} without "
            f".pyc), zip {human_bytes(sizes[function][2])}"
        )
    python312 = shutil.which("python3.12") or ""
    layer = powertools_layer(platform_tag="manylinux2014_aarch64", version="3.12", compile_with=python312)
    layer_bytes, layer_files = with_bytecode(layer)
    layer_zip = zipped(layer, bytecode=True)
    report.say(
        f"AWS's Powertools layer (rebuilt, arm64 / 3.12, {'with' if python312 else 'WITHOUT'} .pyc): "
        f"{human_bytes(layer_bytes)} unzipped in {layer_files} files, zip {human_bytes(layer_zip)}; largest parts: "
        + ", ".join(f"{name} {human_bytes(size)}" for name, size in largest_parts(layer))
    )
    artifact, _, artifact_zip = sizes["StepFunction"]
    parts = largest_parts(ARTIFACT)
    report.say("largest parts of the step package: " + ", ".join(f"{name} {human_bytes(size)}" for name, size in parts))
    shipped: dict[str, str] = {"ours": f"{human_bytes(artifact)} (zip {human_bytes(artifact_zip)})"}
    full: dict[str, str] = {}
    for key, target in zip(KEYS, targets(), strict=True):
        directory = install(target)
        total, _ = footprint(directory)
        if target.source:
            total += sum(footprint(ROOT / name)[0] for name in ("core", "agents", "functions", "prompts"))
        full[key] = human_bytes(total)
        if key == "ours":
            continue
        if key == "boto3":
            shipped[key] = "0 (in the runtime)"
            continue
        without, _ = footprint(directory, exclude=LAMBDA_PROVIDED)
        shipped[key] = f"{human_bytes(without)} (zip {human_bytes(zipped(directory, exclude=LAMBDA_PROVIDED))})"
        report.say(f"{target.contender}: {total} bytes installed, {without} without boto3 & co")
    step_ok = artifact <= STEP_TARGET_BYTES
    report.row(
        "step function's package, unzipped with its .pyc, without boto3/botocore (zip)",
        target="<= 2 MB",
        verdict=verdict(step_ok),
        **shipped,
    )
    largest = max(FUNCTIONS, key=lambda f: sizes[f][0])
    report.row(
        f"largest function package, unzipped with its .pyc ({largest})",
        target="<= 5 MB each",
        verdict=verdict(sizes[largest][0] <= TARGET_BYTES),
        ours=f"{human_bytes(sizes[largest][0])} (zip {human_bytes(sizes[largest][2])})",
    )
    report.row(
        "AWS's Powertools layer the functions import Powertools, pydantic, aws-xray-sdk from (once per region, shared)",
        ours=f"{human_bytes(layer_bytes)} (zip {human_bytes(layer_zip)})",
    )
    report.row("installed footprint with all dependencies (incl. boto3)", **full)
    report.notes.append(
        f"stepfold's packages: {how}, arm64 / CPython 3.12, one per function: "
        + "; ".join(
            f"{f.removesuffix('Function')} {human_bytes(b)} ({human_bytes(src)} without .pyc, zip {human_bytes(z)})"
            for f, (b, src, z) in sizes.items()
        )
        + "; the peers are x86_64 installs for this machine's CPython without bytecode (the compiled wheels differ by "
        "a few per cent between the two); largest parts of the step package: "
        + ", ".join(f"{name} {human_bytes(size)}" for name, size in parts)
    )
    return report


def main() -> int:
    report = run()
    print_report(report)
    return 0 if not report.missed else 1


if __name__ == "__main__":
    sys.exit(main())
