"""Snapshots and one-item commits in the DynamoDB store, against moto: what a new container reads, what a step writes.

A new container reads the header, the latest snapshot and the events after it, never the whole log; the thread it
gets (compacted) folds, renders and steps exactly as the whole thread does. A step writes one conditional PutItem
per commit, and the header (in one transaction with the item) only when the status changes or ``updated_at`` is
stale. ``load`` still returns the whole log, the record.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import boto3
import pytest

from core.adapters.llm.scripted import Say, ScriptedLLM
from core.adapters.store import StoreUnavailableError, ThreadNotFoundError, VersionConflictError
from core.adapters.store.dynamodb import DynamoThreadStore, _snapshot_blob
from core.kernel.agent import Limits, StepContext
from core.kernel.compaction import compact, render_context
from core.kernel.context import ContextOptions, render
from core.kernel.events import (
    Event,
    HumanRequest,
    HumanResponse,
    LLMCall,
    ToolCall,
    ToolResult,
    UserInput,
    dump_event,
)
from core.kernel.model import LLMRequest
from core.kernel.runner import advance
from core.kernel.store import RecentLoader, load_for_step
from core.kernel.thread import Base, Thread, fold, result_digest, stale_results, start_thread
from tests.functional._traffic import Traffic
from tests.functional.conftest import ScratchAws
from tests.unit.test_compaction import RESEARCHER, kernel_like

AGENT = replace(
    RESEARCHER, limits=Limits(max_steps=10**6, max_repeats=10**6, max_stale_results=10**6, max_consecutive_errors=10**6)
)
"""The researcher of the unit tests, with limits far off: these threads are long runs, reviewed or not."""

TS = datetime(2026, 3, 1, tzinfo=UTC)
Item = dict[str, Any]


class Aws:
    """A table and a bucket of the test's own (in the session's moto), and the DynamoDB traffic to them."""

    def __init__(self, scratch: ScratchAws) -> None:
        self.dynamodb, self.s3 = scratch.dynamodb, scratch.s3
        self.table, self.bucket = scratch.table, scratch.bucket
        self.traffic = Traffic(self.dynamodb)
        self.look = boto3.client("dynamodb", region_name="us-east-1")  # reads the table without counting

    def store(self, **options: Any) -> DynamoThreadStore:
        return DynamoThreadStore(self.table, self.dynamodb, self.s3, self.bucket, **options)

    def item(self, thread_id: str, sk: str) -> Item | None:
        key = {"PK": {"S": f"THREAD#{thread_id}"}, "SK": {"S": sk}}
        found: Item | None = self.look.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        return found

    def keys(self, thread_id: str) -> list[str]:
        pages = self.look.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": f"THREAD#{thread_id}"}},
            ConsistentRead=True,
        )
        return [item["SK"]["S"] for page in pages for item in page["Items"]]

    def snapshot_version(self, thread_id: str) -> int | None:
        item = self.item(thread_id, "SNAP")
        return int(item["version"]["N"]) if item else None

    def write(self, thread: Thread, *, batch: int = 3, **options: Any) -> DynamoThreadStore:
        """``thread`` through the store itself: created with its first event, then appended ``batch`` at a time;
        the last append is a store of ``options``, which writes the snapshot the others (to save time) did not."""
        seeding = self.store(snapshot_bytes=10**9)
        seeding.create(Thread(id=thread.id, agent=thread.agent, events=thread.events[:1], labels=thread.labels))
        starts = list(range(1, thread.version, batch))
        for start in starts[:-1]:
            seeding.append(thread.id, start, thread.events[start : start + batch])
        store = self.store(**options)
        if starts:
            store.append(thread.id, starts[-1], thread.events[starts[-1] :])
        return store


@pytest.fixture
def aws(scratch: ScratchAws) -> Aws:
    return Aws(scratch)


def research(thread_id: str, steps: int, *, seed: int = 1) -> Thread:
    """A long research run (see ``tests/unit/test_compaction.py``), still running at its end."""
    thread = kernel_like(seed, steps, result_chars=800, open_at_end=True)
    pending = thread.events[-2:]  # a call waiting for approval: answered below, so the agent may go on
    assert isinstance(pending[1], HumanRequest)
    answer = HumanResponse(seq=thread.version, ts=TS, approval_id=pending[1].approval_id, decision="reject", by="a")
    return thread.model_copy(update={"id": thread_id}).extend([answer])


# --- what a new container reads -----------------------------------------------------------------------------------


def test_a_new_container_reads_the_snapshot_and_what_follows_not_the_whole_log(aws: Aws) -> None:
    received: dict[int, int] = {}
    for steps in (300, 600):
        thread = research(f"t-{steps}", steps)
        aws.write(thread)
        assert aws.snapshot_version(thread.id) is not None

        aws.traffic.reset()
        recent = aws.store().load_recent(thread.id)

        received[thread.version] = aws.traffic.received
        assert aws.traffic.ops in (["Query"], ["Query", "Query"])  # the end of the log, then the events in between
        assert recent.base is not None
        assert recent.base.cut > thread.version / 3
        assert recent.version == thread.version
        assert fold(recent) == fold(thread)
        assert stale_results(recent) == stale_results(thread)
        for options in (ContextOptions(), ContextOptions(drop_resolved_errors=False), ContextOptions(max_tokens=3_000)):
            assert render_context(recent, options) == render(thread, options)

        aws.traffic.reset()
        whole = aws.store().load(thread.id)
        assert whole == thread
        assert aws.traffic.received > 3 * received[thread.version]
    (short, long), (first, second) = sorted(received), (received[k] for k in sorted(received))
    assert long > 1.8 * short
    assert second < 1.5 * first, received  # twice the events, about the same read: the context's window


def test_a_short_thread_is_read_whole_in_one_query_and_gets_no_snapshot(aws: Aws) -> None:
    thread = kernel_like(2, 3)
    aws.write(thread)

    aws.traffic.reset()
    recent = aws.store().load_recent(thread.id)

    assert recent == thread
    assert aws.traffic.ops == ["Query"]
    assert aws.snapshot_version(thread.id) is None


def test_a_thread_without_a_snapshot_is_read_whole_from_its_end(aws: Aws) -> None:
    thread = kernel_like(2, 300)
    aws.write(thread, snapshot_bytes=10**9)

    aws.traffic.reset()
    recent = aws.store().load_recent(thread.id)

    assert recent == thread
    assert aws.store().load(thread.id) == thread
    assert aws.snapshot_version(thread.id) is None


def test_a_snapshot_that_cannot_be_read_is_passed_over_for_the_log(aws: Aws, caplog: pytest.LogCaptureFixture) -> None:
    thread = research("t-bad", 250)
    aws.write(thread)
    aws.look.update_item(
        TableName=aws.table,
        Key={"PK": {"S": "THREAD#t-bad"}, "SK": {"S": "SNAP"}},
        UpdateExpression="SET b = :b",
        ExpressionAttributeValues={":b": {"B": zlib.compress(b'{"base": {"format": 99}, "events": []}')}},
    )

    with caplog.at_level(logging.WARNING, logger="stepfold.store"):
        recent = aws.store().load_recent(thread.id)

    assert recent == thread
    assert "snapshot cannot be used" in caplog.text


def test_an_event_too_big_to_copy_is_named_and_read_from_its_own_item(aws: Aws) -> None:
    thread = research("t-big", 250)
    store = aws.write(thread)
    seq = thread.version
    call = ToolCall(seq=seq, ts=TS, call_id="call_big", tool="fetch", args={"page": 7})
    big = ToolResult(seq=seq + 1, ts=TS, call_id="call_big", tool="fetch", result={"text": "B" * 60_000})
    store.append(thread.id, seq, [call, big])  # one item, its JSON in S3
    more = [
        e.model_copy(update={"seq": seq + 2 + i}) for i, e in enumerate(research("t-more", 20, seed=4).events[1:40])
    ]
    store.append(thread.id, seq + 2, more)
    whole = thread.extend([call, big, *more])
    snapshot = aws.item(thread.id, "SNAP")
    assert snapshot is not None
    assert seq + 1 in json.loads(zlib.decompress(snapshot["b"]["B"]))["events"]

    recent = aws.store().load_recent(thread.id)

    assert recent.base is not None
    assert big in recent.events
    assert render_context(recent, ContextOptions()) == render(whole, ContextOptions())
    assert fold(recent) == fold(whole)
    assert stale_results(recent) == stale_results(whole)
    stale = json.loads(zlib.decompress(snapshot["b"]["B"]))["base"]["stale"]
    assert result_digest(big) not in stale["seen_rest"]  # implied by the event the snapshot names, not stored twice


# --- the snapshot's layout ------------------------------------------------------------------------------------------

WINDOW = ContextOptions().max_tokens * 5 // 4
"""The store's default ``snapshot_window_tokens``."""


def _same_base(restored: Base | None, expected: Base | None) -> None:
    """Equal bases: the repeat counts compared as counts (a dict's order is not part of them)."""
    assert restored is not None
    assert expected is not None
    assert dict(restored.fold.signatures) == dict(expected.fold.signatures)
    assert replace(restored, fold=replace(restored.fold, signatures=())) == replace(
        expected, fold=replace(expected.fold, signatures=())
    )


def _put_snapshot(aws: Aws, thread: Thread, blob: bytes) -> None:
    """A snapshot item as the store writes one, at the thread's version, with this payload."""
    aws.look.put_item(
        TableName=aws.table,
        Item={
            "PK": {"S": f"THREAD#{thread.id}"},
            "SK": {"S": "SNAP"},
            "version": {"N": str(thread.version)},
            "b": {"B": blob},
        },
    )


def _blob(aws: Aws, thread_id: str) -> dict[str, Any]:
    item = aws.item(thread_id, "SNAP")
    assert item is not None
    data: dict[str, Any] = json.loads(zlib.decompress(item["b"]["B"]))
    return data


def test_a_snapshot_stores_only_what_its_kept_events_do_not_imply_and_reads_back_exactly(aws: Aws) -> None:
    window = WINDOW
    thread = research("t-implied", 600, seed=3)
    aws.write(thread)
    expected = compact(thread, window_tokens=window)
    assert expected is not None
    assert expected.base is not None
    data = _blob(aws, thread.id)

    aws.traffic.reset()
    recent = aws.store(snapshot_window_tokens=window).load_recent(thread.id)

    _same_base(recent.base, expected.base)
    assert recent == expected.model_copy(update={"base": recent.base})
    assert aws.traffic.ops in (["Query"], ["Query", "Query"])  # from the snapshot, not the whole log
    assert fold(recent) == fold(thread)
    assert stale_results(recent) == stale_results(thread)
    for options in (ContextOptions(), ContextOptions(drop_resolved_errors=False)):
        assert render_context(recent, options) == render(thread, options)
    # What is stored: only the digests and counts the kept events do not give (those of the events before the cut).
    stale, counts = data["base"]["stale"], data["base"]["fold"]
    assert data["format"] == 2
    assert "seen" not in stale
    assert "signatures" not in counts
    kept = {result_digest(e) for e in expected.events if isinstance(e, ToolResult)}
    assert kept
    assert kept <= expected.base.stale.seen
    assert stale["seen_rest"] == "".join(sorted(expected.base.stale.seen - kept))
    assert stale["seen_not"] == ""
    assert expected.base.fold.signatures
    assert counts["signatures_rest"] == []  # its last limit review is in the window: every count is its calls'


def test_accumulators_the_kept_events_do_not_match_read_back_exactly(aws: Aws) -> None:
    """The stored difference goes both ways: counts above and below what the kept calls make, a count no kept
    call makes, a digest a kept result makes that the fold does not hold (none of which the kernel writes today)."""
    thread = research("t-odd", 600, seed=3)
    aws.write(thread, snapshot_bytes=10**9)
    compacted = compact(thread, window_tokens=WINDOW)
    assert compacted is not None
    assert compacted.base is not None
    base = compacted.base
    (first, n), *others = base.fold.signatures
    signatures = ((first, n + 2), *others[1:], ("fetch:[('page', 12345)]", 3))  # others[0] dropped: below
    kept = sorted(result_digest(e) for e in compacted.events if isinstance(e, ToolResult))
    odd = replace(
        base,
        fold=replace(base.fold, signatures=signatures),
        stale=replace(base.stale, seen=base.stale.seen - {kept[0]} | {"0123456789abcdef"}),
    )
    _put_snapshot(aws, thread, _snapshot_blob(compacted.model_copy(update={"base": odd})))
    stale = _blob(aws, thread.id)["base"]["stale"]
    assert stale["seen_not"] == kept[0]

    recent = aws.store().load_recent(thread.id)

    _same_base(recent.base, odd)


def test_a_snapshot_in_the_layout_before_is_still_read(aws: Aws) -> None:
    """A table written by the code before: the accumulators whole in ``base``, no ``format``; read as it is."""
    thread = research("t-old", 300)
    aws.write(thread, snapshot_bytes=10**9)  # no snapshot: the one below is the old code's
    compacted = compact(thread, window_tokens=WINDOW)
    assert compacted is not None
    assert compacted.base is not None
    events = [dump_event(event) for event in compacted.events]
    old = json.dumps({"base": compacted.base.dump(), "events": events}, separators=(",", ":"), ensure_ascii=False)
    _put_snapshot(aws, thread, zlib.compress(old.encode(), 6))

    aws.traffic.reset()
    recent = aws.store().load_recent(thread.id)

    _same_base(recent.base, compacted.base)
    assert aws.traffic.ops in (["Query"], ["Query", "Query"])
    assert fold(recent) == fold(thread)
    assert stale_results(recent) == stale_results(thread)
    assert render_context(recent, ContextOptions()) == render(thread, ContextOptions())


def test_code_that_reads_only_the_layout_before_refuses_the_new_one(aws: Aws) -> None:
    """A container still on the code before (a deploy rolling out, a rollback) must not take the stored
    differences for the whole accumulators: its ``Base.parse`` fails, and it reads the log instead."""
    thread = research("t-mixed", 300)
    aws.write(thread)

    with pytest.raises(KeyError):
        Base.parse(_blob(aws, thread.id)["base"], thread.id)


@pytest.mark.parametrize("damage", ["not zlib", "truncated", "unknown layout"])
def test_a_damaged_snapshot_is_passed_over_for_the_log(aws: Aws, caplog: pytest.LogCaptureFixture, damage: str) -> None:
    thread = research(f"t-{damage.replace(' ', '-')}", 250)
    aws.write(thread)
    item = aws.item(thread.id, "SNAP")
    assert item is not None
    blob = item["b"]["B"]
    damaged = {
        "not zlib": b"\x00" + blob[1:],
        "truncated": blob[: len(blob) // 2],
        "unknown layout": zlib.compress(json.dumps({**_blob(aws, thread.id), "format": 3}).encode()),
    }[damage]
    aws.look.update_item(
        TableName=aws.table,
        Key={"PK": {"S": f"THREAD#{thread.id}"}, "SK": {"S": "SNAP"}},
        UpdateExpression="SET b = :b",
        ExpressionAttributeValues={":b": {"B": damaged}},
    )

    with caplog.at_level(logging.WARNING, logger="stepfold.store"):
        recent = aws.store().load_recent(thread.id)

    assert recent == thread
    assert "snapshot cannot be used" in caplog.text


# --- what a step writes ---------------------------------------------------------------------------------------------


def brain(request: LLMRequest) -> Say:
    """Fetch the page after the last one in the context, as a real model reads it (not ``request.events``)."""
    pages = [int(word.split("=")[1]) for word in request.context.split() if word.startswith("(page=")]
    return Say("fetch", {"page": pages[-1] + 1 if pages else 1})


def stepper(clock: Callable[[], datetime] | None = None) -> Callable[[Any, str, int], Any]:
    llm = ScriptedLLM(brain, name="researcher")
    ticks, ids = count(), count()
    ctx = StepContext(
        clock=clock or (lambda: TS + timedelta(milliseconds=next(ticks))), ids=lambda prefix: f"{prefix}_{next(ids)}"
    )

    def run(store: Any, thread_id: str, seq: int) -> Any:
        return advance(store, thread_id, seq, agents={AGENT.name: AGENT}, llm_for=lambda _: llm, ctx=ctx)

    return run


def test_a_step_writes_one_put_per_commit_and_no_transaction_while_the_status_holds(aws: Aws) -> None:
    thread = research("t-step", 300)
    store = aws.write(thread)
    run = stepper()
    seq = run(store, thread.id, thread.version).seq
    header = aws.item(thread.id, "META")

    aws.traffic.reset()
    result = run(store, thread.id, seq)

    assert result.route == "continue"
    assert aws.traffic.ops == ["Query", "PutItem", "PutItem"]  # the header (warm), the intent, the result
    assert aws.item(thread.id, "META") == header
    assert aws.keys(thread.id)[-4:] == [f"EV#{seq:010d}", f"EV#{seq + 2:010d}", "META", "SNAP"]
    intent = aws.item(thread.id, f"EV#{seq:010d}")
    assert intent is not None
    assert (intent["n"], intent["t"]) == ({"N": "2"}, {"S": "llm_call,tool_call"})


def test_the_header_is_written_with_the_commit_that_changes_the_status(aws: Aws) -> None:
    store = aws.store()
    store.create(start_thread("t-h", "researcher", "go", now=TS))
    aws.traffic.reset()

    store.append("t-h", 1, [HumanRequest(seq=1, ts=TS, kind="question", approval_id="a", question="?")])
    assert aws.traffic.ops == ["TransactWriteItems"]
    assert aws.item("t-h", "META") is not None
    assert aws.item("t-h", "META")["status"] == {"S": "awaiting_human"}  # type: ignore[index]

    aws.traffic.reset()
    store.append("t-h", 2, [UserInput(seq=2, ts=TS, text="also this")])
    assert aws.traffic.ops == ["PutItem"]  # still waiting for the answer: nothing listed changed

    store.append("t-h", 3, [HumanResponse(seq=3, ts=TS, approval_id="a", decision="answer", by="x", answer="y")])
    header = aws.item("t-h", "META")
    assert header is not None
    assert (header["status"], header["version"]) == ({"S": "running"}, {"N": "4"})
    assert aws.store().load("t-h").version == 4


def test_updated_at_is_refreshed_once_it_is_older_than_touch_every(aws: Aws) -> None:
    now = [TS]
    store = aws.store(clock=lambda: now[0], touch_every=timedelta(minutes=1))
    store.create(start_thread("t-u", "researcher", "go", now=TS))
    step = iter(range(1, 100))

    def append() -> list[str]:
        aws.traffic.reset()
        seq = next(step)
        store.append("t-u", seq, [UserInput(seq=seq, ts=TS, text=f"{seq}")])
        return aws.traffic.ops

    now[0] = TS + timedelta(seconds=59)
    assert append() == ["PutItem"]
    now[0] = TS + timedelta(seconds=60)
    assert append() == ["TransactWriteItems"]
    assert aws.item("t-u", "META")["updated_at"] == {"S": (TS + timedelta(seconds=60)).isoformat()}  # type: ignore[index]
    now[0] = TS + timedelta(seconds=119)
    assert append() == ["PutItem"]
    rows, _ = store.list_threads()
    assert [(r.thread_id, r.updated_at) for r in rows] == [("t-u", TS + timedelta(seconds=60))]


def test_two_writers_at_the_same_version_one_item_wins_and_no_snapshot_comes_from_the_loser(aws: Aws) -> None:
    thread = research("t-race", 250)
    aws.write(thread)
    a, b = aws.store(), aws.store()
    assert a.load_recent(thread.id).version == b.load_recent(thread.id).version == thread.version
    snapshot = aws.snapshot_version(thread.id)
    mine = [UserInput(seq=thread.version, ts=TS, text="A")]
    theirs = [UserInput(seq=thread.version, ts=TS, text="B" * 50_000)]  # offloaded: the upload lands, the item not

    a.append(thread.id, thread.version, mine)
    with pytest.raises(VersionConflictError) as raised:
        b.append(thread.id, thread.version, theirs)

    assert raised.value.actual == thread.version + 1
    assert aws.snapshot_version(thread.id) == snapshot
    assert aws.store().load(thread.id) == thread.extend(mine)
    assert b.load_recent(thread.id).version == thread.version + 1  # B dropped its copy


def test_a_snapshot_is_never_ahead_of_the_log_and_a_stale_writer_never_replaces_a_newer_one(aws: Aws) -> None:
    thread = research("t-order", 400)
    first = aws.write(thread, snapshot_bytes=4_000)
    second = aws.store(snapshot_bytes=4_000)
    versions: list[int] = []
    more = research("t-more", 200, seed=5)
    seq = thread.version
    for i, start in enumerate(range(1, 400, 10)):
        writer = first if i % 2 else second
        batch = [e.model_copy(update={"seq": seq + j}) for j, e in enumerate(more.events[start : start + 10])]
        writer.append(thread.id, seq, batch)
        seq += len(batch)
        snapshot = aws.snapshot_version(thread.id)
        assert snapshot is not None
        assert snapshot <= seq
        versions.append(snapshot)
    assert versions == sorted(versions)
    assert len(set(versions)) > 3


def test_steps_on_a_new_container_every_time_make_what_a_warm_one_makes(aws: Aws) -> None:
    thread = research("t-warm", 250)
    aws.write(thread)
    twin = thread.model_copy(update={"id": "t-cold"})
    aws.write(twin)
    warm = aws.store()
    run_warm, run_cold = stepper(), stepper()
    warm_seq = cold_seq = thread.version
    received: list[int] = []
    for _ in range(25):
        warm_seq = run_warm(warm, thread.id, warm_seq).seq
        aws.traffic.reset()
        cold_seq = run_cold(aws.store(), twin.id, cold_seq).seq
        received.append(aws.traffic.received)

    assert warm_seq == cold_seq
    assert _timeless(aws.store().load(twin.id).events) == _timeless(aws.store().load(thread.id).events)
    assert max(received) < 3 * min(received)


def _timeless(events: tuple[Event, ...]) -> list[Event]:
    return [e.model_copy(update={"latency_ms": 0}) if isinstance(e, LLMCall) else e for e in events]


def test_the_step_reads_through_load_recent_and_a_store_without_it_through_load(aws: Aws) -> None:
    store = aws.store()
    assert isinstance(store, RecentLoader)
    store.create(start_thread("t-l", "researcher", "go", now=TS))

    class Plain:
        def load(self, thread_id: str) -> Thread:
            return store.load(thread_id)

        def create(self, thread: Thread) -> Thread:
            return store.create(thread)

        def append(self, thread_id: str, expected_version: int, events: Any) -> Thread:
            return store.append(thread_id, expected_version, events)

    assert not isinstance(Plain(), RecentLoader)
    assert load_for_step(Plain(), "t-l") == load_for_step(store, "t-l")
    with pytest.raises(ThreadNotFoundError):
        store.load_recent("nope")


def test_a_compacted_thread_cannot_be_created(aws: Aws) -> None:
    thread = research("t-c", 250)
    aws.write(thread)
    recent = aws.store().load_recent(thread.id)
    assert recent.base is not None

    with pytest.raises(ValueError, match="compacted"):
        aws.store().create(recent.model_copy(update={"id": "t-copy"}))


# --- faults on the one-item write ----------------------------------------------------------------------------------


class _ErrorResponse:
    """What botocore needs of an HTTP response to raise the service's error."""

    def __init__(self, status: int) -> None:
        self.status_code = status
        self.headers: dict[str, str] = {}
        self.content = b""


def _throttle_once(client: Any, wanted: Callable[[bytes], bool]) -> list[bool]:
    """The next PutItem whose body ``wanted`` picks answers ProvisionedThroughputExceededException, as DynamoDB does
    once the SDK's own retries gave up."""
    fired: list[bool] = []

    def hook(params: dict[str, Any], **_: Any) -> Any:
        body = params.get("body") or b""
        if fired or not wanted(body if isinstance(body, bytes) else body.encode()):
            return None
        fired.append(True)
        error = {"Code": "ProvisionedThroughputExceededException", "Message": "Rate of requests exceeds"}
        return _ErrorResponse(400), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}

    client.meta.events.register("before-call.dynamodb.PutItem", hook)
    return fired


def test_a_throttled_append_is_retryable_and_writes_nothing(aws: Aws) -> None:
    store = aws.store()
    store.create(start_thread("t-t", "researcher", "go", now=TS))
    fired = _throttle_once(aws.dynamodb, lambda body: b'"SK": {"S": "EV#' in body or b'"SK":{"S":"EV#' in body)

    with pytest.raises(StoreUnavailableError, match=r"PutItem answered ProvisionedThroughputExceededException"):
        store.append("t-t", 1, [UserInput(seq=1, ts=TS, text="more")])

    assert fired
    assert aws.keys("t-t") == ["EV#0000000000", "META"]
    assert store.append("t-t", 1, [UserInput(seq=1, ts=TS, text="more")]).version == 2  # what the retry does


def test_a_snapshot_that_cannot_be_written_does_not_fail_the_append(aws: Aws, caplog: pytest.LogCaptureFixture) -> None:
    thread = research("t-s", 250)
    fired = _throttle_once(aws.dynamodb, lambda body: b"SNAP" in body)

    with caplog.at_level(logging.WARNING, logger="stepfold.store"):
        store = aws.write(thread)

    assert fired
    assert "could not write a thread's snapshot" in caplog.text
    assert aws.snapshot_version(thread.id) is None
    assert aws.store().load(thread.id) == thread
    more = [UserInput(seq=thread.version + i, ts=TS, text="x" * 2_000) for i in range(10)]
    store.append(thread.id, thread.version, more)  # the events since have grown: it tries again, and succeeds
    assert aws.snapshot_version(thread.id) == thread.version + 10
