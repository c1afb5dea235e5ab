"""README "When a thread fails", run as written against ``stepfold serve`` in another process.

The model is a real local HTTP server speaking OpenAI's API (tests/provider_server.py): it answers HTTP 500 until
the state machine's retries run out, so the thread fails; then it recovers, and the README's commands find the
thread, say why it failed and retry it to the end.
"""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

import pytest

from tests import readme
from tests.e2e._serve import Served, stepfold
from tests.provider_server import ProviderServer, error, tool_call

pytestmark = pytest.mark.e2e


def _readme_commands() -> list[list[str]]:
    block = next((b for b in readme.blocks() if (b.section, b.lang) == ("When a thread fails", "bash")), None)
    assert block is not None, "the section shows its commands in a bash block"
    commands = [shlex.split(line) for line in block.body.splitlines() if line.strip()]
    assert all(c[0] == "stepfold" for c in commands)
    return [c[1:] for c in commands]


def _status(url: str, thread_id: str) -> dict[str, Any]:
    done = stepfold("status", thread_id, "--json", url=url)
    assert done.returncode == 0, done.stderr
    status: dict[str, Any] = json.loads(done.stdout)
    return status


def _wait(url: str, thread_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        summary = _status(url, thread_id)
        if summary["status"] == status:
            return summary
        assert time.monotonic() < deadline, f"thread is {summary['status']}, waited for {status}: {summary}"
        time.sleep(0.3)


def test_a_failed_thread_is_found_explained_and_retried_as_the_readme_says() -> None:
    with ProviderServer(lifetime_s=300) as model:
        model.openai.push(tool_call("add", {"a": 2, "b": 3}))
        model.openai.push(*(error(500, "the model server is down") for _ in range(4)))  # 1 try + 3 retries
        served = Served(
            env={
                "STEPFOLD_MODEL": "openai:gpt-4o-mini",
                "OPENAI_BASE_URL": model.openai.base_url,
                "OPENAI_API_KEY": "sk-test",
            }
        )
        try:
            launched = stepfold("launch", "calculator", "add 2 and 3", "--json", url=served.url)
            assert launched.returncode == 0, launched.stderr
            thread_id = json.loads(launched.stdout)["thread_id"]
            failed = _wait(served.url, thread_id, "failed")
            assert failed["failure_error"] == "ModelUnavailable"

            outputs = []
            for args in _readme_commands():
                done = stepfold(*[thread_id if a == "THREAD_ID" else a for a in args], url=served.url)
                assert done.returncode == 0, f"stepfold {' '.join(args)}: {done.stdout}{done.stderr}"
                outputs.append(done.stdout)
            listed, status, retried = outputs
            assert thread_id in listed
            assert "failed" in listed
            assert "status   failed" in status
            assert "ModelUnavailable" in status
            assert "the model server is down" in status
            assert f"{thread_id}  retried; the thread is running" in retried

            final = _wait(served.url, thread_id, "done")
            assert final["answer"] == "done"
        finally:
            served.stop()
    alert = f"calculator: thread {thread_id} failed (ModelUnavailable)"
    assert any(line.startswith(alert) for line in served.lines), "serve printed the alert for the failed thread"
