"""Schedules and events on the running ``stepfold serve``, through the CLI as the README shows them."""

from __future__ import annotations

import json
import re
import shlex
import uuid
from typing import Any

import pytest

from tests.e2e._serve import ROOT, Served, stepfold

pytestmark = pytest.mark.e2e


def _readme_block(command: str) -> list[str]:
    """The README's ``stepfold <command>`` line (continuations joined), split as a shell would."""
    text = (ROOT / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith(f"stepfold {command} "))
    return shlex.split(line.split("  #")[0])[1:]


def _ok(*args: str, url: str) -> str:
    done = stepfold(*args, url=url)
    assert done.returncode == 0, f"stepfold {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def test_the_readme_put_event_starts_orders_once_per_event_id(served: Served) -> None:
    args = _readme_block("put-event")
    event_id = f"evt-{uuid.uuid4().hex}"
    first: dict[str, Any] = json.loads(_ok(*args, "--id", event_id, "--json", url=served.url))
    assert [m["rule"] for m in first["matched"]] == ["OrderFailedRule"]
    started = first["matched"][0]["result"]["threads"][0]
    again: dict[str, Any] = json.loads(_ok(*args, "--id", event_id, "--json", url=served.url))
    assert again["matched"][0]["result"]["threads"][0]["thread_id"] == started["thread_id"]
    assert again["matched"][0]["result"]["threads"][0]["created"] is False
    status = json.loads(_ok("status", started["thread_id"], "--json", url=served.url))
    assert status["agent"] == "orders"


def test_an_event_no_rule_matches_starts_nothing(served: Served) -> None:
    out = _ok("put-event", "--source", "shop.checkout", "--detail-type", "order.shipped", url=served.url)
    assert re.match(r"^event \S+: 0 rule\(s\) matched$", out.strip())


def test_the_readme_trigger_schedule_fires_on_the_running_stack(served: Served) -> None:
    args = _readme_block("trigger-schedule")
    out = _ok(*args, url=served.url)
    assert out.startswith("fired standup-weekdays for 2025-01-06T09:00:00Z: standup thread th_")
    assert "status: done" in out
    assert "Monday 2025-01-06" in out


def test_bad_input_is_one_clear_line(served: Served) -> None:
    unknown = stepfold("trigger-schedule", "nope", url=served.url)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: no schedule 'nope' in template.yaml; there are: standup-weekdays"
    bad = stepfold("put-event", "--source", "s", "--detail-type", "t", "--detail", "{bad", url=served.url)
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: --detail is not JSON")
    at = stepfold("trigger-schedule", "standup-weekdays", "--at", "yesterday", url=served.url)
    assert at.returncode == 1
    assert "an ISO 8601 time" in at.stderr


def test_the_local_routes_need_the_api_key(served: Served) -> None:
    refused = stepfold("put-event", "--source", "s", "--detail-type", "t", url=served.url, key="wrong-key-0123456789")
    assert refused.returncode == 1
    assert "missing or invalid API key" in refused.stderr


def test_serve_can_fire_every_schedule_at_start() -> None:
    served = Served(extra_args=("--schedules", "now"))
    try:
        line = served.wait_for(lambda text: text.startswith("schedule standup-weekdays fired for "), 60)
        assert re.match(r"^schedule standup-weekdays fired for \d{4}-\d\d-\d\dT09:00:00Z: th_\w+$", line), line
    finally:
        served.stop()
