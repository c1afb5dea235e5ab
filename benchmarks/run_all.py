"""Run every benchmark, print ONE table and rewrite the table section of benchmarks/README.md.

Run: ``make bench`` (sets up .venv-bench with the peers, then runs this with it), or
``.venv-bench/bin/python benchmarks/run_all.py``. ``--no-write`` leaves the README alone; ``--only 1,4`` runs a
subset (the README is then left alone too).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import (
    bytes_per_step,
    cold_start,
    context_size,
    mcp_cold_start,
    package_size,
    step_overhead,
    throughput,
    transitions,
)
from benchmarks._common import ROOT, Report, machine_line, render_table

README = ROOT / "benchmarks" / "README.md"
START = "<!-- bench:table:start -->"
END = "<!-- bench:table:end -->"
BENCHES: dict[str, Callable[[], Report]] = {
    "1": bytes_per_step.run,
    "2": cold_start.run,
    "3": package_size.run,
    "4": step_overhead.run,
    "5": context_size.run,
    "6": throughput.run,
    "7": mcp_cold_start.run,
    "8": transitions.run,
}


def checkout() -> str:
    """The commit the benchmarks ran at, and whether the tree had changes (figures are only published from a clean
    checkout: anything else says so in the table's first line)."""
    git = ("git", "-C", str(ROOT))
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    if head.returncode != 0:
        return "outside a git checkout"
    changed = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return f"at commit {head.stdout.strip()}" + (" WITH UNCOMMITTED CHANGES" if changed else ", a clean checkout")


def section(table: str, seconds: float, where: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            START,
            f"Run {stamp} {where} with `make bench`: {seconds / 60:.1f} min of benchmarks (installs not included).",
            f"Machine: {machine_line()}.",
            "",
            table,
            END,
        ]
    )


def write_readme(text: str) -> None:
    current = README.read_text() if README.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in current or END not in current:
        current += f"\n{START}\n{END}\n"
    head, rest = current.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(head + text + tail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-write", action="store_true", help="print the table, leave README.md alone")
    parser.add_argument("--only", default="", help="comma-separated benchmark numbers, e.g. 1,4")
    args = parser.parse_args(argv)
    chosen = [n for n in args.only.split(",") if n] or list(BENCHES)
    where = checkout()  # before the run: the run itself rewrites README.md
    started = time.perf_counter()
    reports: list[Report] = []
    for number in chosen:
        print(f"\n== {number}: {BENCHES[number].__module__}", flush=True)
        begun = time.perf_counter()
        reports.append(BENCHES[number]())
        print(f"({time.perf_counter() - begun:.0f}s)", flush=True)
    seconds = time.perf_counter() - started
    table = render_table(reports)
    print("\n" + table)
    missed = [m for r in reports for m in r.missed]
    print(f"\n{len(reports)} benchmarks in {seconds / 60:.1f} min; targets missed: {', '.join(missed) or 'none'}")
    if not args.no_write and not args.only:
        write_readme(section(table, seconds, where))
        print(f"wrote the table to {README.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
