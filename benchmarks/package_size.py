"""3. Package size: stepfold's deployable vs each peer's installed footprint with its dependencies.

stepfold: ``bash .ci/sam.sh`` (sam build with the Makefile builder) and the ``StepFunction`` artifact it leaves in
``.aws-sam/build/StepFunction``: core/, functions/, prompts/ and requirements-lambda.txt for arm64 / CPython 3.12,
no boto3/botocore (the Lambda runtime provides them). Peers: their ``pip install --target`` directories
(``benchmarks/_targets.py``), in full and without what the Lambda runtime provides (boto3 and its dependencies),
which is what a peer's function package would ship. Sizes are the bytes of the files (bytecode caches left
out); "zip" is the same tree deflated, as a Lambda upload is.

Run: ``python benchmarks/package_size.py`` (``BENCH_SKIP_SAM=1`` reuses an existing .aws-sam build).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT, Report, human_bytes, print_report, verdict
from benchmarks._targets import LAMBDA_PROVIDED, footprint, install, targets

ARTIFACT = ROOT / ".aws-sam" / "build" / "StepFunction"
TARGET_BYTES = 5_000_000
KEYS = ("ours", "boto3", "langgraph", "pydantic_ai", "openai_agents", "strands", "durable")


def build_artifact(report: Report) -> None:
    if os.environ.get("BENCH_SKIP_SAM") == "1" and ARTIFACT.is_dir():
        report.say("BENCH_SKIP_SAM=1: measuring the existing .aws-sam build")
        return
    started = time.perf_counter()
    done = subprocess.run(["bash", str(ROOT / ".ci" / "sam.sh")], cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f".ci/sam.sh failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    report.say(f".ci/sam.sh built the artifact in {time.perf_counter() - started:.0f}s")


def zipped(directory: Path, *, exclude: tuple[str, ...] = ()) -> int:
    """Bytes of the tree as a deflated zip (bytecode caches and ``exclude`` top-level names left out)."""
    skip = set(exclude)
    with tempfile.TemporaryFile() as raw:
        with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(directory.rglob("*")):
                rel = path.relative_to(directory)
                top = rel.parts[0].split("-", 1)[0].removesuffix(".py").removeprefix("python_")
                if top in skip or "__pycache__" in rel.parts or path.suffix == ".pyc" or not path.is_file():
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
    build_artifact(report)
    artifact, files = footprint(ARTIFACT)
    artifact_zip = zipped(ARTIFACT)
    report.say(f"stepfold artifact: {artifact} bytes in {files} files, {artifact_zip} zipped")
    parts = largest_parts(ARTIFACT)
    report.say("largest parts: " + ", ".join(f"{name} {human_bytes(size)}" for name, size in parts))
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
    ok = artifact < TARGET_BYTES
    report.row(
        "deployable without boto3/botocore (zipped)",
        target="< 5 MB",
        verdict=verdict(ok) + ("" if ok else f" (zip {'met' if artifact_zip < TARGET_BYTES else 'MISSED'})"),
        **shipped,
    )
    report.row("installed footprint with all dependencies (incl. boto3)", **full)
    report.notes.append(
        "stepfold's cell is the real `sam build` artifact (arm64, CPython 3.12); the rest are x86_64 installs for "
        "this machine's CPython (the compiled wheels differ by a few per cent between the two); largest parts of the "
        "artifact: " + ", ".join(f"{name} {human_bytes(size)}" for name, size in parts)
    )
    return report


def main() -> int:
    report = run()
    print_report(report)
    return 0 if not report.missed else 1


if __name__ == "__main__":
    sys.exit(main())
