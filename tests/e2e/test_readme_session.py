"""The README's CLI session ("The CLI and the HTTP API"), run as written against ``stepfold serve``.

Every ``$ command`` line of that section's transcripts runs in bash, in order, with ``STEPFOLD_URL`` and
``STEPFOLD_API_KEY`` exported as serve prints them and ``.venv/bin`` on the PATH (the README's "activate the venv").
What it prints must be what the README shows under it, line for line, after two substitutions: ids (a thread or
approval id is new on every run; the README's ids stand for the ones this run got, in order) and the scripted
model's token counts and nominal costs (they move with every prompt or rendering change; the shape of the line
must not). ``serve`` itself runs with ``--port 0`` (any free port) and must print every line the README shows.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import readme
from tests.e2e._serve import ROOT, STEPFOLD, Served, environment
from tests.readme import missing_in_order, normal

pytestmark = pytest.mark.e2e

SECTION = "The CLI and the HTTP API"
THREAD = re.compile(r"\bth_[0-9a-f]{20}\b")


@dataclass
class Command:
    line: str
    expected: list[str] = field(default_factory=list)


def transcripts() -> list[list[Command]]:
    """The section's fenced transcripts: each ``$ `` line and the lines the README shows under it."""
    found: list[list[Command]] = []
    for block in readme.blocks():
        if block.section != SECTION:
            continue
        commands: list[Command] = []
        for line in block.body.splitlines():
            if line.startswith("$ "):
                commands.append(Command(line[2:]))
            elif commands and line.strip():
                commands[-1].expected.append(line.rstrip())
        if commands:
            found.append(commands)
    return found


class Ids:
    """The README's thread and approval ids, mapped in order of appearance to the ones this run got."""

    def __init__(self) -> None:
        self.threads: dict[str, str] = {}

    def command(self, line: str) -> str:
        """``line`` with the README's thread ids replaced by this run's."""
        return THREAD.sub(lambda m: self.threads.get(m[0], m[0]), line)

    def learn(self, expected: list[str], actual: list[str]) -> None:
        """A launch prints the new thread's id first: that is the one the README's id stands for from here on."""
        if expected and actual and THREAD.match(expected[0]) and THREAD.match(actual[0]):
            self.threads[expected[0].split()[0]] = actual[0].split()[0]

    def normal(self, lines: list[str], readme: bool) -> list[str]:
        """:func:`tests.readme.normal`, with a README thread id read as the run's id it stands for."""
        return normal([self.command(line) for line in lines] if readme else lines)


def _run(line: str, url: str, key: str) -> subprocess.CompletedProcess[str]:
    env = environment(STEPFOLD_URL=url, STEPFOLD_API_KEY=key)
    env["PATH"] = f"{Path(STEPFOLD[0]).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_section_has_the_transcripts_this_test_runs() -> None:
    blocks = transcripts()
    assert len(blocks) >= 3, "the serve, deploybot and rejection transcripts"
    assert blocks[0][0].line.split()[-2:] == ["stepfold", "serve"], blocks[0][0].line


@pytest.mark.skipif(not Path("/bin/bash").exists(), reason="the README's commands are bash")
def test_the_readme_cli_session_runs_as_written() -> None:
    serve, *sessions = transcripts()
    start = serve[0].line
    assignments = dict(word.split("=", 1) for word in start.split() if "=" in word)
    key = assignments["STEPFOLD_API_KEY"]
    served = Served(env={"STEPFOLD_API_KEY": key})
    try:
        ids = Ids()
        for session in sessions:
            for command in session:
                done = _run(ids.command(command.line), served.url, key)
                assert done.returncode == 0, f"$ {command.line}\n{done.stdout}{done.stderr}"
                actual = done.stdout.splitlines()
                ids.learn(command.expected, actual)
                assert ids.normal(actual, readme=False) == ids.normal(command.expected, readme=True), (
                    f"$ {command.line} printed something else than README.md shows under it (left: printed):\n"
                    + done.stdout
                )
        # what serve printed (its startup, then the approval links as they were sent) holds every line shown
        port = served.url.rsplit(":", 1)[1]
        shown = ids.normal([line.replace(":8765", f":{port}") for line in serve[0].expected], readme=True)
        missing = missing_in_order(shown, ids.normal(served.lines, readme=False))
        assert not missing, f"serve did not print {missing[0]!r} (in this order); it printed:\n" + "\n".join(
            served.lines
        )
    finally:
        served.stop()
