"""The README's trigger examples, run as written (bash, openssl, curl) against the local front door."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from core.kernel.thread import fold
from infra.local.http import FrontDoor, front_door
from infra.local.stack import LocalStack
from tests import readme
from tests.functional.conftest import Shared

SECRETS = {"STEPFOLD_GITHUB_WEBHOOK_SECRET": "readme-github-secret", "STEPFOLD_WEBHOOK_SECRET": "readme-shop-secret"}

pytestmark = pytest.mark.skipif(
    not (shutil.which("openssl") and shutil.which("curl") and shutil.which("bash")),
    reason="the README's examples need bash, openssl and curl",
)


def _curl_blocks() -> list[str]:
    return [b.body for b in readme.blocks() if (b.section, b.lang) == ("Triggers", "bash") and "curl" in b.body]


@pytest.fixture
def served(shared: Shared) -> Iterator[tuple[LocalStack, FrontDoor]]:
    """A lease per test: an example's signed body names its thread, so in a stack one test shared with another that
    ran the same example first, a launch would be a duplicate (the tests run in any order)."""
    with shared.lease({"POWERTOOLS_LOG_LEVEL": "WARNING", **SECRETS}) as stack, front_door(stack) as door:
        yield stack, door


def _run(block: str, url: str) -> httpx.Response:
    env = {**os.environ, **SECRETS, "STEPFOLD_URL": url}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.replace("curl -sS", "curl -sS -w '\\n%{http_code}'", 1)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=True,
    )
    body, _, status = done.stdout.rpartition("\n")
    return httpx.Response(int(status), content=body.encode())


def test_the_readme_has_the_two_signed_curl_examples() -> None:
    blocks = _curl_blocks()
    assert len(blocks) == 2
    assert "X-Hub-Signature-256" in blocks[0]
    assert "X-Stepfold-Signature" in blocks[1]


@pytest.mark.parametrize(("index", "agent"), [(0, "triage"), (1, "orders")])
def test_a_readme_curl_example_starts_its_agent(served: tuple[LocalStack, FrontDoor], index: int, agent: str) -> None:
    stack, door = served
    reply = _run(_curl_blocks()[index], door.base_url)
    assert reply.status_code == 202, reply.text
    thread_id = reply.json()["thread_id"]
    thread = stack.wait(thread_id, timeout=30)
    assert thread.agent == agent
    assert fold(thread).status in ("done", "awaiting_human")


def test_a_tampered_readme_example_is_refused(served: tuple[LocalStack, FrontDoor]) -> None:
    _, door = served
    block = _curl_blocks()[0].replace('-hmac "$SECRET"', '-hmac "not-the-secret"')
    reply = _run(block, door.base_url)
    assert reply.status_code == 401, reply.text


def test_the_readme_github_example_replayed_with_a_new_delivery_id_starts_nothing_new(
    served: tuple[LocalStack, FrontDoor],
) -> None:
    """The example puts a fresh X-GitHub-Delivery in every run; the signed body is what names the thread."""
    _, door = served
    first = _run(_curl_blocks()[0], door.base_url)
    again = _run(_curl_blocks()[0], door.base_url)
    assert first.status_code in (200, 202), first.text
    assert again.status_code == 200, again.text
    assert again.json() == {"thread_id": first.json()["thread_id"], "agent": "triage", "duplicate": True}


def test_the_readme_signed_envelope_replayed_to_another_source_is_refused(served: tuple[LocalStack, FrontDoor]) -> None:
    """Every source outside GitHub and Slack shares the stepfold secret: the signed path keeps them apart."""
    _, door = served
    block = _curl_blocks()[1].replace('"$STEPFOLD_URL/webhooks/shop"', '"$STEPFOLD_URL/webhooks/stepfold"')
    assert block != _curl_blocks()[1]
    reply = _run(block, door.base_url)
    assert reply.status_code == 401, reply.text
    assert "signed POST /webhooks/stepfold" in reply.json()["detail"]
