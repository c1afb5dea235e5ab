"""The README's "Write your own agent" is followed verbatim: its prompt, agent and test blocks are run here.

The three files are written into a copy of the tree (never into this one: the registry discovers every module of
agents/, and other test runs share the checkout), and everything the README promises is run there in fresh
interpreters: the registry finds the agent and its brain, its own test passes, the prompt snapshot is missing (a plain
run fails naming the command, and writes nothing) until the documented ``make snapshots`` command writes it where the
README says, the tests that cover every agent pass unchanged, ruff and mypy --strict accept the files, and ``make
demo`` runs a thread of it on the local stack through its scripted brain. When the agent goes again, its snapshot is
unused: a run fails on it and ``make snapshots`` deletes it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests import readme

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TREE = (
    "agents",
    "core",
    "evals",
    "functions",
    "infra",
    "prompts",
    "tests",
    "pyproject.toml",
    "template.yaml",
    "Makefile",
)
"""What the copy needs: the packages, the prompts, the eval cases, the tests that cover every agent (and those that
`make snapshots` runs), and their configuration."""
BIN = Path(sys.executable).parent


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _blocks(title: str) -> list[tuple[str, str]]:
    """The section's fenced blocks that name a language, as (language, body)."""
    return [(b.lang, b.body) for b in readme.blocks() if b.section == title and b.lang]


def _files(section: str) -> dict[str, str]:
    """Each block under the `path`: line that introduces it."""
    found = re.findall(r"^`([\w/.]+)`[^\n]*:\n\n```\w+\n(.*?)```", section, flags=re.DOTALL | re.MULTILINE)
    return dict(found)


def _copy_tree(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache", ".ruff_cache")
    for name in TREE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        else:
            shutil.copy2(source, dest / name)
    return dest


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``args`` in ``root``, whose packages shadow the installed ones (PYTHONPATH and the working directory)."""
    full = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(args, cwd=root, env=full, capture_output=True, text=True, check=False, timeout=300)


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def _snapshot_named_in(section: str) -> str:
    """The path of the new agent's prompt snapshot, as the README's walkthrough names it."""
    found = re.findall(r"`(tests/unit/snapshots/[^`]+\.txt)`", section)
    assert len(found) == 1, f"the walkthrough names one snapshot file, not {found}"
    return str(found[0])


def _snapshots_recipe(root: Path, python: str) -> list[str]:
    """The Makefile's ``snapshots`` command, run with this interpreter (``setup`` is this environment)."""
    recipe = re.search(r"^snapshots:.*\n\t(.+)$", (root / "Makefile").read_text(encoding="utf-8"), flags=re.M)
    assert recipe is not None
    command = recipe.group(1).replace("$(BIN)/python", python).split()
    assert command[:3] == [python, "-m", "pytest"], command
    assert "--snapshot-update" in command, "snapshots are written by syrupy's flag only, never by a plain run"
    return command


_DISCOVERED = """
import json
from agents import AGENTS, BRAINS
from functions._wiring import Settings
print(json.dumps({"agents": list(AGENTS), "brains": list(BRAINS), "default": Settings().default_agent}))
"""


def test_write_your_own_agent_runs_verbatim(tmp_path: Path) -> None:
    section = _section("Write your own agent")
    assert [lang for lang, _ in _blocks("Write your own agent")] == ["markdown", "python", "python", "json"]
    files = _files(section)
    assert list(files) == [
        "prompts/travel/v1.md",
        "agents/travel.py",
        "tests/unit/test_travel.py",
        "evals/travel/checks_the_weather_first.json",
    ]
    assert len(files["agents/travel.py"].strip().splitlines()) < 60, "a new agent, with its brain, in under 60 lines"
    assert "make snapshots" in section

    root = _copy_tree(tmp_path / "repo")
    for rel, text in files.items():
        assert not (root / rel).exists(), f"{rel} would overwrite a file of the tree"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    python = sys.executable

    # discovered: the module is the whole registration, no list was edited; the default agent is the first one
    found = json.loads(_ok(_run(root, python, "-c", _DISCOVERED)))
    assert "travel" in found["agents"]
    assert "travel" in found["brains"]
    assert found["default"] == found["agents"][0]

    # its own test, and ruff and mypy --strict on the files the README had us write
    _ok(_run(root, python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/test_travel.py"))
    created = ["agents/travel.py", "tests/unit/test_travel.py"]
    _ok(_run(root, str(BIN / "ruff"), "check", "--no-cache", *created))
    _ok(_run(root, str(BIN / "ruff"), "format", "--check", "--no-cache", *created))
    _ok(_run(root, python, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy"), *created))

    # the tests that cover every agent pick it up; its snapshot is missing until `make snapshots` writes it
    every = ("tests/unit/test_prompts.py", "tests/unit/test_example_agents.py", "tests/unit/test_eval_cases.py")
    snapshot = root / _snapshot_named_in(section)
    missing = _run(root, python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *every, "-k", "travel")
    assert missing.returncode == 1
    assert f"{snapshot.relative_to(root)}, but there is no snapshot: run `make snapshots`" in missing.stdout
    assert not snapshot.exists(), "a plain run never writes a snapshot (CI must fail, not record)"
    _ok(_run(root, *_snapshots_recipe(root, python)))
    assert snapshot.read_text(encoding="utf-8").startswith("You are travel")
    picked = ("-k", "travel or registry or unknown or kernel")
    passed = _ok(_run(root, python, "-m", "pytest", "-v", "-p", "no:cacheprovider", *every, *picked))
    assert len(re.findall(r"\[travel\] PASSED", passed)) == 5, "prompt hash and snapshot, its brain, its evals"

    # offline on the local stack: `make demo` runs a thread of it through its brain, approving the booking
    demo = _ok(_run(root, python, "-m", "infra.local.demo"))
    assert "travel: from agents/, with its scripted brain" in demo
    assert re.search(r"^  travel +done .*1 human decision\(s\): Booked Lisbon for 2026-12-01\.$", demo, flags=re.M)

    # and when the agent goes, its snapshot is unused: a run of the tests fails on it, `make snapshots` deletes it
    for rel in files:
        (root / rel).unlink()
    stale = _run(root, python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/test_prompts.py")
    assert stale.returncode == 1
    assert "1 snapshot unused" in stale.stdout
    _ok(_run(root, *_snapshots_recipe(root, python)))
    assert not snapshot.exists()
    _ok(_run(root, python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/test_prompts.py"))


def test_the_readme_opens_with_the_demo_and_the_test_commands() -> None:
    first_block = readme.blocks()[0].body
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_use_tools_from_an_mcp_server_runs_verbatim() -> None:
    """The section's server, agent and check run as written (one interpreter, in order), print what the section
    shows, and its secret entry is what the step reads."""
    from functions._wiring import Secrets  # noqa: PLC0415

    blocks = _blocks("Use tools from an MCP server")
    assert [lang for lang, _ in blocks] == ["python", "python", "json", "python", "text"]
    program = "\n".join(body for lang, body in blocks if lang == "python")
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout == blocks[4][1]
    entry = json.loads(blocks[2][1])
    keys = Secrets.model_validate({"link_signing_key": "k", **entry})
    assert keys.mcp_servers["tickets"].headers == {"Authorization": "Bearer tk-..."}
