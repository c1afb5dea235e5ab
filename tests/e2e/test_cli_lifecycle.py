"""The deploybot's whole lifecycle through the ``stepfold`` CLI against ``stepfold serve`` in another process."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.e2e._serve import Served, stepfold

pytestmark = pytest.mark.e2e


def _ok(*args: str, url: str) -> str:
    done = stepfold(*args, url=url)
    assert done.returncode == 0, f"stepfold {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


def _launch(served: Served, text: str, *extra: str) -> dict[str, Any]:
    launched: dict[str, Any] = json.loads(_ok("launch", "deploybot", text, "--json", *extra, url=served.url))
    return launched


def _status(served: Served, thread_id: str) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(_ok("status", thread_id, "--json", url=served.url))
    return status


def _events(served: Served, thread_id: str) -> list[dict[str, Any]]:
    lines = _ok("events", thread_id, "--json", url=served.url).splitlines()
    return [json.loads(line) for line in lines]


def test_launch_follow_approve_through_the_link_page_then_done(served: Served) -> None:
    thread_id = _launch(served, "deploy the latest backend to production")["thread_id"]

    followed = _ok("events", thread_id, "--follow", url=served.url)
    assert "step  1  deploy_backend" in followed
    assert "tag='v1.5.0' environment='production'" in followed
    assert "route: await_human" in followed
    assert "open the approval link" in followed

    summary = _status(served, thread_id)
    assert summary["status"] == "awaiting_human"
    link = served.link(summary["approval_id"])
    assert thread_id not in link  # the link names the approval, never the thread or its task token
    with httpx.Client(timeout=10, trust_env=False) as browser:
        page = browser.get(link)
        assert page.status_code == 200
        assert "deploy_backend" in page.text
        assert "v1.5.0" in page.text
        decided = browser.post(link, data={"decision": "approve", "by": "Ann Lee", "comment": "go"})
        assert decided.status_code == 200, decided.text

    finished = _ok("events", thread_id, "--follow", "--after", str(summary["events"] - 1), url=served.url)
    assert "<- Ann Lee via link: approve: go" in finished
    assert "-> deploy_backend: {'status': 'deployed'" in finished
    assert "== done after 2 model calls" in finished
    final = _status(served, thread_id)
    assert (final["status"], final["answer"]) == ("done", "Deployed backend v1.5.0 to production.")
    text_status = _ok("status", thread_id, url=served.url)
    assert "status   done" in text_status


def test_a_rejection_with_a_reason_reaches_the_model(served: Served) -> None:
    thread_id = _launch(served, "deploy v1.4.2 frontend to production")["thread_id"]
    _ok("events", thread_id, "--follow", url=served.url)

    rejected = _ok("reject", thread_id, "--reason", "deploy to staging first", "--by", "bob", url=served.url)
    assert f"{thread_id}  reject recorded" in rejected
    replanned = _ok("events", thread_id, "--follow", url=served.url)

    assert "<- api-key via api: reject: deploy to staging first" in replanned  # the caller, not the body
    assert "deploy_frontend      tag='v1.4.2' environment='staging'" in replanned  # the model re-planned
    calls = [e for e in _events(served, thread_id) if e["type"] == "tool_call" and not e.get("prefetch")]
    assert [c["args"]["environment"] for c in calls] == ["production", "staging", "production"]
    _ok("approve", thread_id, url=served.url)
    _ok("events", thread_id, "--follow", url=served.url)
    assert _status(served, thread_id)["answer"] == "Deployed frontend v1.4.2 to production."


def test_pause_stops_the_steps_and_resume_finishes(served: Served) -> None:
    thread_id = _launch(served, "deploy the latest backend to production")["thread_id"]
    _ok("events", thread_id, "--follow", url=served.url)

    assert "paused" in _ok("pause", thread_id, "--reason", "change freeze", url=served.url)
    _ok("approve", thread_id, url=served.url)  # answered while paused: recorded, but nothing runs
    time.sleep(1.0)
    paused = _status(served, thread_id)
    assert (paused["status"], paused["steps"]) == ("paused", 1)
    assert not [e for e in _events(served, thread_id) if e["type"] == "tool_result" and e["tool"] == "deploy_backend"]
    followed = _ok("events", thread_id, "--follow", url=served.url)
    assert "|| paused by" in followed
    assert "stepfold resume" in followed

    assert "resume" in _ok("resume", thread_id, url=served.url)
    resumed = _ok("events", thread_id, "--follow", url=served.url)
    assert ">> resumed by" in resumed
    final = _status(served, thread_id)
    assert (final["status"], final["steps"]) == ("done", 2)


def test_the_same_idempotency_key_launches_one_thread(served: Served) -> None:
    first = _launch(served, "deploy v1.4.1 backend to staging", "--idempotency-key", "release-42")
    again = _launch(served, "deploy v1.4.1 backend to staging", "--idempotency-key", "release-42")
    assert again["thread_id"] == first["thread_id"]
    assert (first["created"], again["created"]) == (True, False)
    text = _ok(
        "launch", "deploybot", "deploy v1.4.1 backend to staging", "--idempotency-key", "release-42", url=served.url
    )
    assert "existing (same idempotency key)" in text
    listed = json.loads(_ok("list", "--agent", "deploybot", "--json", url=served.url))
    assert [t["thread_id"] for t in listed["threads"]].count(first["thread_id"]) == 1
    _ok("events", first["thread_id"], "--follow", url=served.url)
    assert _status(served, first["thread_id"])["status"] == "done"


def test_a_missing_or_wrong_api_key_exits_1_and_says_what_to_set(served: Served) -> None:
    for key in (None, "not-the-key"):
        refused = stepfold("list", url=served.url, key=key)
        assert refused.returncode == 1
        assert refused.stdout == ""
        assert "error: missing or invalid API key" in refused.stderr
        assert "STEPFOLD_API_KEY" in refused.stderr


def test_errors_exit_codes_a_shell_user_expects(served: Served) -> None:
    unknown = stepfold("status", "th_does_not_exist", url=served.url)
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "error: no thread 'th_does_not_exist'")
    usage = stepfold("launch", url=served.url)
    assert usage.returncode == 2
    assert "usage: stepfold launch" in usage.stderr
    nobody = stepfold("list", url="http://127.0.0.1:9")
    assert nobody.returncode == 3
    assert "cannot connect to http://127.0.0.1:9" in nobody.stderr
    assert "stepfold serve" in nobody.stderr
