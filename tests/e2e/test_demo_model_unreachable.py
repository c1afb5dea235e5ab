"""``make demo`` with a real model that cannot be reached ends in one clear error, not a traceback or a hang."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e._serve import ROOT, environment

pytestmark = pytest.mark.e2e


def test_an_unreachable_model_ends_the_demo_with_one_clear_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "infra.local.demo"],
        cwd=ROOT,
        # Port 9 (discard) refuses the connection: what a wrong base URL or no network looks like to the adapter.
        env=environment(
            STEPFOLD_MODEL="openai:gpt-4o-mini",
            OPENAI_BASE_URL="http://127.0.0.1:9/v1",
            OPENAI_API_KEY="sk-test",
            POWERTOOLS_LOG_LEVEL=None,  # as in a shell: the demo chooses its own quiet default
        ),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: the model openai:gpt-4o-mini could not be reached after every retry" in done.stdout
    assert "could not reach http://127.0.0.1:9/v1/chat/completions" in done.stdout
    assert "OPENAI_BASE_URL" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert "FailureEventException" not in done.stdout + done.stderr  # the engine's own log stays out of the way
    assert '{"level"' not in done.stdout  # and so do the handlers' JSON logs
