"""What `GET /threads/{id}` and `stepfold status` say agrees with the thread's status after every operation."""

from __future__ import annotations

from datetime import UTC, datetime

from core.kernel.events import Failed, HumanRequest
from core.kernel.thread import Thread, start_thread, summary

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)


def _waiting() -> tuple[Thread, HumanRequest]:
    thread = start_thread("th_s", "deploybot", "deploy", now=NOW)
    ask = HumanRequest(seq=thread.next_seq, ts=NOW, kind="question", approval_id="apr_1", question="which tag?")
    return thread.extend([ask]), ask


def test_a_waiting_thread_says_what_it_waits_for() -> None:
    thread, ask = _waiting()
    shown = summary(thread)
    assert (shown["status"], shown["waiting_for"], shown["approval_id"]) == (
        "awaiting_human",
        "question",
        ask.approval_id,
    )


def test_a_cancelled_thread_waits_for_no_one() -> None:
    thread, _ = _waiting()
    cancelled = thread.extend([Failed(seq=thread.next_seq, ts=NOW, reason="cancelled by ops: wrong ticket")])
    shown = summary(cancelled)
    assert (shown["status"], shown["waiting_for"], shown["approval_id"]) == ("failed", None, None)
