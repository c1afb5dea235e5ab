"""The CLI as a script uses it: ``--json`` on every command that changes a thread, ``--version``, completion,
pipes that close early, and one-line errors when what answers is not the stepfold API."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e._serve import KEY, ROOT, STEPFOLD, Served, environment, stepfold

pytestmark = pytest.mark.e2e


def _json(*args: str, url: str) -> dict[str, Any]:
    done = stepfold(*args, "--json", url=url)
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def _waiting(served: Served) -> str:
    thread_id = str(
        _json("launch", "deploybot", "deploy the latest backend to production", url=served.url)["thread_id"]
    )
    assert stepfold("events", thread_id, "--follow", url=served.url).returncode == 0
    return thread_id


def test_every_command_that_changes_a_thread_answers_json(served: Served) -> None:
    thread_id = _waiting(served)
    paused = _json("pause", thread_id, "--reason", "freeze", url=served.url)
    assert (paused["thread_id"], paused["status"]) == (thread_id, "paused")
    approved = _json("approve", thread_id, url=served.url)
    assert approved["thread_id"] == thread_id
    resumed = _json("resume", thread_id, url=served.url)
    assert resumed["thread_id"] == thread_id
    assert stepfold("events", thread_id, "--follow", url=served.url).returncode == 0
    message = _json("message", thread_id, "now the frontend too", url=served.url)
    assert message["thread_id"] == thread_id
    assert stepfold("events", thread_id, "--follow", url=served.url).returncode == 0

    other = _waiting(served)
    rejected = _json("reject", other, "--reason", "not today", url=served.url)
    assert rejected["thread_id"] == other
    assert stepfold("events", other, "--follow", url=served.url).returncode == 0
    third = _waiting(served)
    cancelled = _json("cancel", third, "--reason", "changed my mind", url=served.url)
    assert (cancelled["thread_id"], cancelled["status"]) == (third, "failed")


def test_the_confirmation_of_a_cancel_says_cancelled(served: Served) -> None:
    thread_id = _waiting(served)
    done = stepfold("cancel", thread_id, "--reason", "wrong ticket", url=served.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{thread_id}  cancelled; the thread is failed"


def test_version_is_the_installed_distribution() -> None:
    done = subprocess.run([*STEPFOLD, "--version"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert done.stdout.startswith("stepfold ")
    assert done.stdout.split()[1][0].isdigit(), done.stdout


def test_a_closed_pipe_ends_quietly(served: Served) -> None:
    thread_id = _waiting(served)
    shell = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{' '.join(STEPFOLD)} events {thread_id} --json | head -n 1"],
        cwd=ROOT,
        env=environment(STEPFOLD_URL=served.url, STEPFOLD_API_KEY=KEY),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert json.loads(shell.stdout)["seq"] == 0
    assert "Traceback" not in shell.stderr
    assert "BrokenPipeError" not in shell.stderr
    assert shell.returncode == 0, shell.stderr


def test_bash_completion_completes_commands_and_their_options() -> None:
    script = subprocess.run([*STEPFOLD, "completion", "bash"], cwd=ROOT, capture_output=True, text=True, check=True)

    def complete(*words: str) -> list[str]:
        typed = " ".join(f"'{w}'" for w in ("stepfold", *words))
        probe = f'{script.stdout}\nCOMP_WORDS=({typed}); COMP_CWORD={len(words)}; _stepfold; echo "${{COMPREPLY[@]}}"'
        done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
        return done.stdout.split()

    assert complete("appr") == ["approve"]
    assert complete("--url", "http://x", "trigger-s") == ["trigger-schedule"]
    assert "--reason" in complete("reject", "th_1", "--")
    assert "--json" in complete("cancel", "th_1", "--")


@pytest.fixture
def not_http() -> Iterator[str]:
    """A TCP server that accepts a connection and closes it without a word: what a wrong port often is."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.close()

    worker = threading.Thread(target=serve, daemon=True)
    worker.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    worker.join(timeout=5)
    listener.close()


def test_a_server_that_hangs_up_is_one_line_and_exit_3(not_http: str) -> None:
    done = stepfold("list", url=not_http)
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: cannot talk to {not_http}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
