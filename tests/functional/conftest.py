"""Functional tier: the real handlers, the real ASL, moto in-process (see infra/local/stack.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agents import deploybot, triage
from infra.local.stack import LocalStack


@pytest.fixture(autouse=True)
def _fresh_fakes() -> Iterator[None]:
    deploybot.SERVICE.reset()
    triage.TRACKER.reset()
    yield
    deploybot.SERVICE.reset()
    triage.TRACKER.reset()


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    with LocalStack(env={"POWERTOOLS_LOG_LEVEL": "WARNING"}) as running:
        yield running
