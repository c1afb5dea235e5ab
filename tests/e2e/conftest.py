"""The e2e tier: ``stepfold serve`` in its own process, driven over real HTTP by the CLI and a browser."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e._serve import KEY, Served


@pytest.fixture(scope="session")
def served() -> Iterator[Served]:
    server = Served()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api(served: Served) -> Iterator[httpx.Client]:
    """An HTTP client of the served API, with the key."""
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=served.url, headers=headers, timeout=10, trust_env=False) as client:
        yield client
