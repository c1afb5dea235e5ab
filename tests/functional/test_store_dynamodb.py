"""The DynamoDB thread store against moto: same semantics as the memory store, bounded bytes per step."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.adapters.store import (
    MemoryThreadStore,
    StoreUnavailableError,
    ThreadExistsError,
    ThreadNotFoundError,
    VersionConflictError,
)
from core.adapters.store.dynamodb import CorruptEventError, DynamoThreadStore
from core.kernel.events import (
    Done,
    Error,
    Event,
    HumanRequest,
    HumanResponse,
    LLMCall,
    ToolCall,
    ToolResult,
    UnknownSchemaVersionError,
    UserInput,
)
from core.kernel.thread import Thread, fold, start_thread
from infra.local.stack import _DYNAMO_GATE, _serialize_dynamodb
from tests.functional._traffic import Traffic
from tests.functional.conftest import ScratchAws

TS = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
Item = dict[str, Any]


class Aws:
    """A table and a bucket of the test's own (in the session's moto), and the DynamoDB traffic to them."""

    def __init__(self, scratch: ScratchAws) -> None:
        self.dynamodb, self.s3 = scratch.dynamodb, scratch.s3
        self.table, self.bucket = scratch.table, scratch.bucket
        self.traffic = Traffic(self.dynamodb)

    def store(self, **options: Any) -> DynamoThreadStore:
        return DynamoThreadStore(self.table, self.dynamodb, self.s3, self.bucket, **options)

    def items(self, thread_id: str) -> list[Item]:
        pages = self.dynamodb.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": f"THREAD#{thread_id}"}},
            ConsistentRead=True,
        )
        return [item for page in pages for item in page["Items"]]

    def item(self, thread_id: str, sk: str) -> Item:
        key = {"PK": {"S": f"THREAD#{thread_id}"}, "SK": {"S": sk}}
        item: Item = self.dynamodb.get_item(TableName=self.table, Key=key, ConsistentRead=True)["Item"]
        return item

    def set_attr(self, thread_id: str, sk: str, name: str, value: Item) -> None:
        self.dynamodb.update_item(
            TableName=self.table,
            Key={"PK": {"S": f"THREAD#{thread_id}"}, "SK": {"S": sk}},
            UpdateExpression="SET #a = :v",
            ExpressionAttributeNames={"#a": name},
            ExpressionAttributeValues={":v": value},
        )

    def seed(self, thread: Thread) -> None:
        """Write a long thread straight into the documented layout with BatchWriteItem.

        moto deep-copies the whole table for every item of every transaction, so building 1,000+ events by
        appends is quadratic (about 35 s for 2,000). ``test_layout_is_the_documented_one`` pins this layout to
        what the store writes, so a seeded thread is one the store could have written.
        """
        items = [header_item(thread), *(event_item(thread.id, event) for event in thread.events)]
        for start in range(0, len(items), 25):
            chunk = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            self.dynamodb.batch_write_item(RequestItems={self.table: chunk})


@pytest.fixture
def aws(scratch: ScratchAws) -> Aws:
    return Aws(scratch)


def event_item(thread_id: str, event: Event) -> Item:
    """An inline event item as the design documents it."""
    body = json.dumps(event.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False)
    return {
        "PK": {"S": f"THREAD#{thread_id}"},
        "SK": {"S": f"EV#{event.seq:010d}"},
        "t": {"S": event.type},
        "e": {"S": body},
    }


def header_item(thread: Thread) -> Item:
    return {
        "PK": {"S": f"THREAD#{thread.id}"},
        "SK": {"S": "META"},
        "agent": {"S": thread.agent},
        "labels": {"M": {k: {"S": v} for k, v in thread.labels.items()}},
        "version": {"N": str(thread.version)},
        "status": {"S": fold(thread).status},
        "created_at": {"S": TS.isoformat()},
        "updated_at": {"S": TS.isoformat()},
    }


def events_from(seq: int, count: int, *, payload: str = "ok") -> list[Event]:
    """``count`` events of an ordinary agent loop (model call, tool call, tool result), seqs from ``seq``."""
    out: list[Event] = []
    for n in range(seq, seq + count):
        call = f"call-{n - n % 3}"
        match n % 3:
            case 0:
                out.append(
                    LLMCall(
                        seq=n,
                        ts=TS,
                        model="test-model",
                        prompt_id="demo/v1",
                        prompt_hash="abc123",
                        input_tokens=120,
                        output_tokens=30,
                        cost_usd=0.00042,
                        latency_ms=250,
                        output={"name": "lookup", "arguments": {"q": "weather"}},
                    )
                )
            case 1:
                out.append(ToolCall(seq=n, ts=TS, call_id=call, tool="lookup", args={"q": "weather", "n": 3}))
            case _:
                out.append(ToolResult(seq=n, ts=TS, call_id=call, tool="lookup", result={"text": payload}))
    return out


def asking(seq: int) -> list[Event]:
    """Three events whose last asks a person: the status changes, so the append writes the header too, in one
    transaction with the item (a plain append is one PutItem, which no Query sees half-done)."""
    return [
        *events_from(seq, 2),
        HumanRequest(seq=seq + 2, ts=TS, kind="question", approval_id="ap-torn", question="?"),
    ]


def long_thread(thread_id: str, count: int, *, payload: str = "ok") -> Thread:
    """A started thread with ``count`` more events: ``count + 1`` in all."""
    return start_thread(thread_id, "demo", "hello", now=TS).extend(events_from(1, count, payload=payload))


def item_bytes(item: Item) -> int:
    """An item's size by DynamoDB's rule of thumb: attribute names plus values."""
    return sum(len(name) + len(json.dumps(value)) for name, value in item.items())


# -- semantics shared with the memory store ----------------------------------------------------------------------


def test_create_then_load_returns_the_same_thread(aws: Aws) -> None:
    thread = start_thread("t-1", "demo", "hello", now=TS, prompt="demo/v2", trigger="api").extend(
        [
            *events_from(1, 5),
            HumanRequest(seq=6, ts=TS, kind="question", approval_id="ap-1", question="Which city?"),
            HumanResponse(seq=7, ts=TS, approval_id="ap-1", decision="answer", by="ana", answer="Lisbon"),
            Error(seq=8, ts=TS, kind="tool_failed", message="timeout", call_id="c-9", tool="lookup"),
            Done(seq=9, ts=TS, answer="Sunny in Lisbon — 24°C"),
        ]
    )

    assert aws.store().create(thread) == thread

    assert aws.store().load("t-1") == thread
    assert aws.store().load("t-1").labels == {"prompt": "demo/v2", "trigger": "api"}


def test_create_twice_raises_thread_exists(aws: Aws) -> None:
    store = aws.store()
    store.create(start_thread("t-1", "demo", "hello", now=TS))

    with pytest.raises(ThreadExistsError, match="t-1"):
        aws.store().create(start_thread("t-1", "other", "again", now=TS))
    assert aws.store().load("t-1").agent == "demo"


def test_load_unknown_raises_thread_not_found(aws: Aws) -> None:
    with pytest.raises(ThreadNotFoundError, match="nope"):
        aws.store().load("nope")


def test_append_then_fresh_load_equals_the_memory_store(aws: Aws) -> None:
    start = start_thread("t-1", "demo", "hello", now=TS, prompt="demo/v1")
    batches: list[list[Event]] = [events_from(1, 3), events_from(4, 3), [Done(seq=7, ts=TS, answer="done")]]
    memory, dynamo = MemoryThreadStore(), aws.store()
    memory.create(start)
    dynamo.create(start)

    for batch in batches:
        expected = memory.append("t-1", memory.load("t-1").version, batch)
        assert dynamo.append("t-1", dynamo.load("t-1").version, batch) == expected

    assert aws.store().load("t-1") == memory.load("t-1")
    header = aws.item("t-1", "META")
    assert header["version"] == {"N": "8"}
    assert header["status"] == {"S": "done"}


def test_append_with_an_empty_batch_checks_the_version_and_writes_nothing(aws: Aws) -> None:
    thread = aws.store().create(start_thread("t-1", "demo", "hello", now=TS))
    store = aws.store()
    aws.traffic.reset()

    assert store.append("t-1", 1, []) == thread
    with pytest.raises(VersionConflictError):
        store.append("t-1", 0, [])
    assert aws.traffic.ops == ["Query", "Query"]  # a cold read, then the warm refresh


def test_append_to_unknown_thread_raises_thread_not_found(aws: Aws) -> None:
    with pytest.raises(ThreadNotFoundError):
        aws.store().append("nope", 0, events_from(0, 1))


def test_append_at_a_stale_version_from_a_cold_store_raises_conflict(aws: Aws) -> None:
    store = aws.store()
    store.create(start_thread("t-1", "demo", "hello", now=TS))
    store.append("t-1", 1, events_from(1, 3))

    with pytest.raises(VersionConflictError) as raised:
        aws.store().append("t-1", 1, events_from(1, 3))

    assert (raised.value.thread_id, raised.value.expected, raised.value.actual) == ("t-1", 1, 4)


def test_append_rejects_seqs_that_do_not_continue_the_thread(aws: Aws) -> None:
    store = aws.store()
    store.create(start_thread("t-1", "demo", "hello", now=TS))

    with pytest.raises(ValueError, match="seq 5, expected 1"):
        store.append("t-1", 1, events_from(5, 2))
    assert len(aws.items("t-1")) == 2


def test_append_refuses_more_than_one_transaction_holds(aws: Aws) -> None:
    store = aws.store()
    store.create(start_thread("t-1", "demo", "hello", now=TS))

    with pytest.raises(ValueError, match="at most 99"):
        store.append("t-1", 1, events_from(1, 100))

    assert len(aws.items("t-1")) == 2
    assert store.append("t-1", 1, events_from(1, 99)).version == 100


# -- concurrency ---------------------------------------------------------------------------------------------------


def test_two_writers_at_the_same_version_one_wins_and_nothing_is_half_written(aws: Aws) -> None:
    aws.store().create(start_thread("t-1", "demo", "hello", now=TS))
    writer_a, writer_b = aws.store(), aws.store()
    assert writer_a.load("t-1") == writer_b.load("t-1")  # both decide from version 1
    # Both write a large (S3-offloaded) result at seq 2; B writes two more events that no one else has written,
    # so only the transaction's atomicity keeps seqs 3 and 4 out of the table.
    won: list[Event] = [
        ToolCall(seq=1, ts=TS, call_id="c", tool="fetch", args={}),
        ToolResult(seq=2, ts=TS, call_id="c", tool="fetch", result="A" * 50_000),
    ]
    lost: list[Event] = [
        ToolCall(seq=1, ts=TS, call_id="c", tool="fetch", args={"x": 1}),
        ToolResult(seq=2, ts=TS, call_id="c", tool="fetch", result="B" * 50_000),
        Error(seq=3, ts=TS, kind="tool_failed", message="late"),
        Done(seq=4, ts=TS, answer="B was here"),
    ]

    winner = writer_a.append("t-1", 1, won)
    with pytest.raises(VersionConflictError) as raised:
        writer_b.append("t-1", 1, lost)

    assert (raised.value.thread_id, raised.value.expected, raised.value.actual) == ("t-1", 1, 3)
    assert "t-1" in str(raised.value)
    assert "expected version 1" in str(raised.value)
    # create and B's append (cancelled; its Done changes the status, so it writes the header too) are transactions;
    # A's append (status unchanged) is one conditional PutItem of one item holding both its events
    assert aws.traffic.ops.count("TransactWriteItems") == 2
    assert aws.traffic.ops.count("PutItem") == 1
    items = aws.items("t-1")
    assert [item["SK"]["S"] for item in items] == ["EV#0000000000", "EV#0000000001", "META"]
    assert aws.item("t-1", "EV#0000000001")["n"] == {"N": "2"}
    assert aws.item("t-1", "META")["version"] == {"N": "1"}  # written with the status only; the events count
    assert aws.store().load("t-1") == winner  # A's payload in S3 survived B's upload at the same seq
    assert writer_b.load("t-1") == winner  # B dropped its stale copy


def test_a_cold_writer_after_a_race_sees_the_winner(aws: Aws) -> None:
    aws.store().create(start_thread("t-1", "demo", "hello", now=TS))
    writer_a, writer_b = aws.store(), aws.store()
    writer_a.load("t-1")
    writer_b.load("t-1")
    writer_a.append("t-1", 1, events_from(1, 2))
    with pytest.raises(VersionConflictError):
        writer_b.append("t-1", 1, events_from(1, 2))

    reloaded = writer_b.load("t-1")
    assert writer_b.append("t-1", reloaded.version, events_from(reloaded.version, 1)).version == 4
    assert writer_a.load("t-1").version == 4


# -- large payloads ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "result",
    [
        pytest.param("x" * 1_000_000, id="1MB-string"),
        pytest.param(
            {"rows": [{"id": i, "name": f"r{i}", "tags": ["a", "b"], "nested": {"v": i / 2}} for i in range(17_000)]},
            id="1MB-nested-dict",
        ),
    ],
)
def test_a_1mb_tool_result_goes_to_s3_and_comes_back_intact(aws: Aws, result: Any) -> None:
    store = aws.store()
    store.create(start_thread("t-1", "demo", "hello", now=TS))
    event = ToolResult(seq=1, ts=TS, call_id="c", tool="fetch", result=result)
    size = len(json.dumps(event.model_dump(mode="json"), separators=(",", ":")).encode())
    assert size > 900_000

    thread = store.append("t-1", 1, [event])

    item = aws.item("t-1", "EV#0000000001")
    assert "e" not in item
    assert item["t"] == {"S": "tool_result"}
    assert int(item["size"]["N"]) == size
    assert len(item["preview"]["S"]) == 400
    assert item_bytes(item) < 400 + 300
    key = item["s3"]["S"]
    assert key.startswith("threads/t-1/events/0000000001-")
    assert len(aws.s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read()) == size
    loaded = aws.store().load("t-1")
    assert loaded == thread
    assert isinstance(loaded.events[1], ToolResult)
    assert loaded.events[1].result == result


def test_events_up_to_the_threshold_stay_inline(aws: Aws) -> None:
    store = aws.store(offload_bytes=2_000)
    store.create(start_thread("t-1", "demo", "hello", now=TS))
    small = ToolResult(seq=1, ts=TS, call_id="c", tool="t", result="")
    overhead = len(json.dumps(small.model_dump(mode="json"), separators=(",", ":")))
    at_limit = ToolResult(seq=1, ts=TS, call_id="c", tool="t", result="y" * (2_000 - overhead))
    over = ToolResult(seq=2, ts=TS, call_id="c", tool="t", result="é" * 1_000)  # 2 bytes each in UTF-8

    store.append("t-1", 1, [at_limit])
    thread = store.append("t-1", 2, [over])

    assert "e" in aws.item("t-1", "EV#0000000001")
    assert "s3" in aws.item("t-1", "EV#0000000002")
    assert aws.store().load("t-1") == thread


# -- long threads and the warm cache -----------------------------------------------------------------------------


def test_layout_is_the_documented_one(aws: Aws) -> None:
    thread = long_thread("t-1", 4).model_copy(update={"labels": {"prompt": "demo/v1"}})
    aws.store(clock=lambda: TS).create(thread)

    assert aws.items("t-1") == [*(event_item("t-1", event) for event in thread.events), header_item(thread)]


def test_a_2000_event_thread_built_by_appends_loads_back_over_several_pages(aws: Aws) -> None:
    payload = "r" * 1_500  # every third event carries it: ~1.4 MB in all, more than one 1 MB Query page
    aws.seed(long_thread("t-1", 1_960, payload=payload))
    writer = aws.store()
    thread = writer.load("t-1")
    for _ in range(2):
        thread = writer.append("t-1", thread.version, events_from(thread.version, 20, payload=payload))
    assert thread.version == 2_001

    aws.traffic.reset()
    loaded = aws.store().load("t-1")

    assert loaded == thread
    assert aws.traffic.ops.count("Query") >= 2
    assert aws.traffic.received > 1_000_000


def test_warm_loads_and_appends_cost_the_same_for_short_and_long_threads(aws: Aws) -> None:
    reads_unchanged: dict[int, int] = {}
    reads_after_other_writer: dict[int, int] = {}
    writes: dict[int, int] = {}
    for length in (10, 50, 1_000):
        thread_id = f"t-{length}"
        aws.seed(long_thread(thread_id, length - 1))
        # snapshots (test_store_snapshots.py) would add their own write to the first append on a long thread
        warm, other = aws.store(snapshot_bytes=10**9), aws.store(snapshot_bytes=10**9)
        assert warm.load(thread_id).version == length

        aws.traffic.reset()
        assert warm.load(thread_id).version == length
        assert aws.traffic.ops == ["Query"]
        reads_unchanged[length] = aws.traffic.received

        theirs = other.append(thread_id, length, events_from(length, 3))
        aws.traffic.reset()
        assert warm.load(thread_id) == theirs
        assert aws.traffic.ops == ["Query"]
        reads_after_other_writer[length] = aws.traffic.received

        aws.traffic.reset()
        mine = warm.append(thread_id, length + 3, events_from(length + 3, 3))
        assert aws.traffic.ops == ["PutItem"]
        writes[length] = aws.traffic.sent

        aws.traffic.reset()
        assert warm.load(thread_id) == mine
        assert aws.traffic.ops == ["Query"]
        assert aws.traffic.received == pytest.approx(reads_unchanged[length], rel=0.1)

    assert reads_unchanged[50] == pytest.approx(reads_unchanged[1_000], rel=0.1), reads_unchanged
    assert reads_after_other_writer[50] == pytest.approx(reads_after_other_writer[1_000], rel=0.1)
    assert writes[10] == pytest.approx(writes[1_000], rel=0.1), writes
    assert reads_after_other_writer[1_000] < 3_000
    assert writes[1_000] < 3_000


def test_without_the_cache_every_load_reads_the_whole_thread(aws: Aws) -> None:
    aws.seed(long_thread("t-1", 99))
    store = aws.store(cache=False)
    store.load("t-1")

    aws.traffic.reset()
    store.load("t-1")

    assert aws.traffic.received > 100 * 200


def test_the_cache_keeps_only_the_most_recent_threads(aws: Aws) -> None:
    for n in range(3):
        aws.seed(long_thread(f"t-{n}", 50))
    store = aws.store(cache_size=2)
    for n in range(3):
        store.load(f"t-{n}")

    aws.traffic.reset()
    store.load("t-2")
    warm = aws.traffic.received
    aws.traffic.reset()
    store.load("t-0")  # evicted by t-2

    assert aws.traffic.received > 10 * warm


def test_a_header_ahead_of_its_events_is_reported_not_trusted(aws: Aws) -> None:
    """A gap that outlasts the re-reads is retried (a torn read looks the same) and says what to inspect."""
    store = aws.store()
    store.create(start_thread("t-1", "demo", "hello", now=TS))
    store.append("t-1", 1, events_from(1, 2))
    aws.set_attr("t-1", "META", "version", {"N": "5"})

    with pytest.raises(StoreUnavailableError, match=r"thread 't-1'.* counts 5 events but item SK=EV#0000000003"):
        store.load("t-1")
    assert aws.traffic.ops.count("Query") >= 3


# -- the header ----------------------------------------------------------------------------------------------------


def test_header_denormalises_status_and_sets_ttl(aws: Aws) -> None:
    clock = iter([TS, TS + timedelta(hours=1), TS + timedelta(hours=2)])
    store = aws.store(ttl_days=7, clock=lambda: next(clock))
    store.create(start_thread("t-1", "demo", "hello", now=TS, trigger="cron"))
    header = aws.item("t-1", "META")
    assert header["status"] == {"S": "running"}
    assert header["labels"] == {"M": {"trigger": {"S": "cron"}}}
    assert header["expires_at"] == {"N": str(int((TS + timedelta(days=7)).timestamp()))}

    store.append("t-1", 1, [HumanRequest(seq=1, ts=TS, kind="question", approval_id="a", question="?")])
    assert aws.item("t-1", "META")["status"] == {"S": "awaiting_human"}

    store.append("t-1", 2, [HumanResponse(seq=2, ts=TS, approval_id="a", decision="answer", by="x", answer="y")])
    header = aws.item("t-1", "META")
    assert header["status"] == {"S": "running"}
    assert header["created_at"] == {"S": TS.isoformat()}
    assert header["updated_at"] == {"S": (TS + timedelta(hours=2)).isoformat()}
    assert header["expires_at"] == {"N": str(int((TS + timedelta(days=7, hours=2)).timestamp()))}


def test_no_ttl_attribute_unless_configured(aws: Aws) -> None:
    aws.store().create(start_thread("t-1", "demo", "hello", now=TS))

    assert "expires_at" not in aws.item("t-1", "META")


# -- corruption ----------------------------------------------------------------------------------------------------


def _corrupt(aws: Aws, value: str) -> None:
    aws.store().create(long_thread("t-1", 2))
    aws.set_attr("t-1", "EV#0000000001", "e", {"S": value})


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param("{not json", id="garbage"),
        pytest.param('{"seq":1,"ts":"2025-01-02T03:04:05Z","type":"tool_call"}', id="missing-fields"),
        pytest.param('{"seq":1,"ts":"2025-01-02T03:04:05Z","type":"teleport"}', id="unknown-type"),
        pytest.param("[1, 2]", id="not-an-object"),
        pytest.param('{"seq":7,"ts":"2025-01-02T03:04:05Z","type":"user_input","text":"hi"}', id="wrong-seq"),
    ],
)
def test_a_corrupted_event_names_the_thread_and_seq(aws: Aws, stored: str) -> None:
    _corrupt(aws, stored)

    with pytest.raises(CorruptEventError, match=r"thread 't-1': stored event seq=1 is unreadable") as raised:
        aws.store().load("t-1")
    assert "SK=EV#0000000001" in str(raised.value)


def test_an_event_from_a_newer_schema_says_to_deploy_a_newer_stepfold(aws: Aws) -> None:
    _corrupt(aws, '{"seq":1,"ts":"2025-01-02T03:04:05Z","v":99,"type":"user_input","text":"hi"}')

    with pytest.raises(UnknownSchemaVersionError, match=r"thread t-1: event seq=1 has schema version 99"):
        aws.store().load("t-1")


def test_a_missing_s3_payload_names_the_thread_and_the_key(aws: Aws) -> None:
    store = aws.store()
    store.create(start_thread("t-1", "demo", "hello", now=TS))
    store.append("t-1", 1, [UserInput(seq=1, ts=TS, text="z" * 40_000)])
    key = aws.item("t-1", "EV#0000000001")["s3"]["S"]
    aws.s3.delete_object(Bucket=aws.bucket, Key=key)

    with pytest.raises(CorruptEventError, match=f"thread 't-1': stored event seq=1 .*{key}.* is missing"):
        aws.store().load("t-1")


# -- torn reads: a Query is read-committed per item, not isolated from a committing transaction ---------------------


class PausedCommit:
    """Holds a transaction half-published in the local stack's DynamoDB gate, as a slow commit in AWS would."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, after_items: int) -> None:
        _serialize_dynamodb()
        self.after_items = after_items
        self.paused = threading.Event()
        self.release = threading.Event()
        monkeypatch.setattr(_DYNAMO_GATE, "between_items", self._between)

    def _between(self, done: int, total: int) -> None:
        if done == self.after_items:
            self.paused.set()
            assert self.release.wait(10), "the test never released the transaction"

    def run(self, work: Callable[[], Any]) -> threading.Thread:
        writer = threading.Thread(target=work, daemon=True)
        writer.start()
        assert self.paused.wait(10), "the transaction never reached the pause"
        return writer


def _queried_versions(aws: Aws) -> list[tuple[int, list[str]]]:
    """Every consistent Query's answer on the thread: the header's version and the event keys it saw."""
    seen: list[tuple[int, list[str]]] = []

    def record(parsed: dict[str, Any], **_: Any) -> None:
        items = parsed.get("Items", [])
        header = next((int(i["version"]["N"]) for i in items if i["SK"]["S"] == "META"), -1)
        seen.append((header, [i["SK"]["S"] for i in items if i["SK"]["S"] != "META"]))

    aws.dynamodb.meta.events.register("after-call.dynamodb.Query", record)
    return seen


def test_a_load_that_sees_an_append_half_landed_reads_again_until_it_is_whole(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = aws.store()
    writer.create(long_thread("t-1", 2))  # version 3
    commit = PausedCommit(monkeypatch, after_items=1)  # the header (first in the transaction) is visible, no event
    seen = _queried_versions(aws)

    def release_after_the_first_read(**_: Any) -> None:
        commit.release.set()

    appending = commit.run(lambda: writer.append("t-1", 3, asking(3)))
    aws.dynamodb.meta.events.register("after-call.dynamodb.Query", release_after_the_first_read)
    thread = aws.store(cache=False).load("t-1")
    appending.join(10)

    assert seen[0] == (6, ["EV#0000000000", "EV#0000000001", "EV#0000000002"])  # a real torn read, as AWS allows
    assert thread.version == 6
    assert [event.seq for event in thread.events] == list(range(6))
    assert len(seen) >= 2


def test_a_torn_read_that_outlasts_the_rereads_is_retryable_not_corrupt(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = aws.store()
    writer.create(long_thread("t-1", 2))
    commit = PausedCommit(monkeypatch, after_items=1)  # the header, not the item with the three events
    appending = commit.run(lambda: writer.append("t-1", 3, asking(3)))
    try:
        with pytest.raises(StoreUnavailableError, match=r"counts 6 events but item SK=EV#0000000003") as raised:
            aws.store(cache=False).load("t-1")
        assert "a retry reads it whole" in str(raised.value)
    finally:
        commit.release.set()
        appending.join(10)

    assert aws.store(cache=False).load("t-1").version == 6  # what Step Functions' retry then reads


def test_events_visible_before_their_header_are_read_again_not_taken_as_the_thread(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = aws.store()
    store.create(long_thread("t-1", 2))
    commit = PausedCommit(monkeypatch, after_items=3)
    seen = _queried_versions(aws)
    header = {"PK": {"S": "THREAD#t-1"}, "SK": {"S": "META"}}
    events = events_from(3, 3)
    # Another writer's transaction that lists its events before the header (any order is legal).
    transaction = [
        *({"Put": {"TableName": aws.table, "Item": event_item("t-1", event)}} for event in events),
        {
            "Update": {
                "TableName": aws.table,
                "Key": header,
                "UpdateExpression": "SET version = :v",
                "ConditionExpression": "version = :old",
                "ExpressionAttributeValues": {":v": {"N": "6"}, ":old": {"N": "3"}},
            }
        },
    ]

    def release_after_the_first_read(**_: Any) -> None:
        commit.release.set()

    appending = commit.run(lambda: aws.dynamodb.transact_write_items(TransactItems=transaction))
    aws.dynamodb.meta.events.register("after-call.dynamodb.Query", release_after_the_first_read)
    thread = aws.store(cache=False).load("t-1")
    appending.join(10)

    assert seen[0][0] == 3
    assert len(seen[0][1]) == 6
    assert thread.version == 6


class WatchedLock:
    """The gate's ``commit`` lock, telling when a thread had to wait for it (``waiting``)."""

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.waiting = threading.Event()

    def __enter__(self) -> WatchedLock:
        if not self.lock.acquire(blocking=False):
            self.waiting.set()
            self.lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def test_point_reads_and_writes_wait_for_a_transaction_to_land_whole(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    """TransactWriteItems is serializable against GetItem and other writes; only Query and Scan see it torn."""
    writer = aws.store()
    writer.create(long_thread("t-1", 2))
    lock = WatchedLock(_DYNAMO_GATE.commit)
    monkeypatch.setattr(_DYNAMO_GATE, "commit", lock)
    commit = PausedCommit(monkeypatch, after_items=1)
    appending = commit.run(lambda: writer.append("t-1", 3, asking(3)))
    got: list[Item] = []
    reader = threading.Thread(target=lambda: got.append(aws.item("t-1", "EV#0000000003")), daemon=True)
    reader.start()
    try:
        assert lock.waiting.wait(10), "the GetItem never had to wait for the transaction"
        assert not got
        assert len(aws.items("t-1")) == 4  # a Query does not wait: the header and three old events
    finally:
        commit.release.set()
        appending.join(10)
        reader.join(10)

    assert got
    assert got[0]["SK"] == {"S": "EV#0000000003"}


def test_a_cancelled_transaction_takes_back_what_it_had_already_changed(aws: Aws) -> None:
    """moto applies a transaction's items in order and rolls back when a later one fails; an Update changes the item
    in place, a Put adds one: both are taken back, and the items the transaction never named stay as they were."""
    aws.store().create(long_thread("t-1", 2))
    aws.store().create(long_thread("t-2", 2))
    before = {thread_id: aws.items(thread_id) for thread_id in ("t-1", "t-2")}
    header = {"PK": {"S": "THREAD#t-1"}, "SK": {"S": "META"}}
    transaction = [
        {
            "Update": {
                "TableName": aws.table,
                "Key": header,
                "UpdateExpression": "SET version = :v",
                "ExpressionAttributeValues": {":v": {"N": "9"}},
            }
        },
        {"Put": {"TableName": aws.table, "Item": event_item("t-1", events_from(3, 1)[0])}},
        {
            "Put": {
                "TableName": aws.table,
                "Item": event_item("t-1", events_from(1, 1)[0]),
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        },
    ]

    with pytest.raises(aws.dynamodb.exceptions.TransactionCanceledException):
        aws.dynamodb.transact_write_items(TransactItems=transaction)

    assert {thread_id: aws.items(thread_id) for thread_id in ("t-1", "t-2")} == before
    assert aws.store(cache=False).load("t-1") == long_thread("t-1", 2)
