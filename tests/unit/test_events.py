"""The event log's wire format: lossless JSON round trips, the discriminated union, schema versions, immutability."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from core.kernel.events import (
    EVENT_ADAPTER,
    EVENTS_ADAPTER,
    SCHEMA_VERSION,
    Done,
    Error,
    Event,
    Failed,
    HumanRequest,
    HumanResponse,
    LLMCall,
    Paused,
    Resumed,
    Retried,
    ToolCall,
    ToolResult,
    ToolsListed,
    ToolStarted,
    UnknownSchemaVersionError,
    UserInput,
    dump_event,
    parse_event,
)
from core.kernel.thread import Thread
from tests.unit.conftest import EVENT_CLASSES, FIXED_NOW

TS = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)


def _samples() -> list[Event]:
    """One event of every type, each with every optional field set to a non-default value."""
    return [
        UserInput(seq=0, ts=TS, text="multiply 3 and 4 <b>&</b> ünïcode ✓", source="webhook:github"),
        LLMCall(
            seq=1,
            ts=TS,
            model="openai:gpt-4o-mini",
            prompt_id="calculator/v1",
            prompt_hash="ab" * 32,
            input_tokens=1234,
            output_tokens=56,
            cost_usd=0.000218,
            latency_ms=789,
            output={"name": "multiply", "arguments": {"a": 3, "b": 4.5, "nested": [1, None, {"x": True}]}},
        ),
        ToolCall(seq=2, ts=TS, call_id="call_1", tool="multiply", args={"a": 3.0, "b": 4.0}, prefetch=True),
        ToolStarted(seq=3, ts=TS, call_id="call_1"),
        ToolResult(seq=4, ts=TS, call_id="call_1", tool="multiply", result={"value": 12, "items": [1.5, "x", None]}),
        Error(seq=5, ts=TS, kind="tool_failed", message="ZeroDivisionError: division by zero", call_id="c", tool="t"),
        HumanRequest(
            seq=6,
            ts=TS,
            kind="approval",
            approval_id="apr_1",
            call_id="call_1",
            question="Approve?",
            context="why",
            urgency="high",
            format="multiple_choice",
            choices=["a", "b"],
            origin="policy",
        ),
        HumanResponse(
            seq=7,
            ts=TS,
            approval_id="apr_1",
            decision="edit",
            by="alice",
            channel="slack",
            comment="smaller",
            args={"a": 1, "b": 2},
            answer="also this",
            note="for bob",
        ),
        Paused(seq=8, ts=TS, by="bob", reason="lunch"),
        Resumed(seq=9, ts=TS, by="bob"),
        Done(seq=10, ts=TS, answer="The answer is 12."),
        Failed(seq=11, ts=TS, reason="ModelUnavailable: HTTP 503", error="ModelUnavailable", execution="arn:x:1"),
        Retried(seq=12, ts=TS, by="carol"),
        ToolsListed(
            seq=13,
            ts=TS,
            server="ops",
            digest="0123456789abcdef",
            tools=[{"name": "service_status", "description": "", "input_schema": {}, "annotations": {}}],
        ),
    ]


SAMPLES = _samples()


def test_the_samples_cover_every_event_type() -> None:
    assert sorted(type(e).__name__ for e in SAMPLES) == sorted(cls.__name__ for cls in EVENT_CLASSES)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_every_event_round_trips_through_dump_and_parse(event: Event) -> None:
    dumped = dump_event(event)
    text = json.dumps(dumped)

    from_dict = parse_event(json.loads(text))
    from_str = parse_event(text)
    from_bytes = parse_event(text.encode())

    assert from_dict == event
    assert from_str == event
    assert from_bytes == event
    assert type(from_dict) is type(event)
    assert dumped["type"] == event.type
    assert dumped["v"] == SCHEMA_VERSION


def test_a_thread_of_every_event_round_trips_through_json() -> None:
    thread = Thread(id="t_rt", agent="calculator", events=tuple(SAMPLES), labels={"prompt_version": "1"})

    text = thread.model_dump_json()
    again = Thread.model_validate_json(text)

    assert again == thread
    assert [type(e) for e in again.events] == [type(e) for e in SAMPLES]
    assert again.model_dump_json() == text
    assert Thread.from_json(thread.to_json()) == thread


def test_timestamps_come_back_aware_and_equal_to_the_instant_written() -> None:
    other_zone = datetime(2025, 3, 4, 7, 6, 7, tzinfo=timezone(timedelta(hours=2)))
    event = UserInput(seq=0, ts=other_zone, text="hi")

    again = parse_event(dump_event(event))

    assert again.ts.tzinfo is not None
    assert again.ts == datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def test_the_events_adapter_keeps_order_and_types() -> None:
    raw = EVENTS_ADAPTER.dump_json(SAMPLES)

    assert EVENTS_ADAPTER.validate_json(raw) == SAMPLES


def test_an_unknown_event_type_is_rejected_naming_the_tag_and_the_known_ones() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_event({"type": "tool_exploded", "seq": 0, "ts": TS.isoformat()})

    message = str(caught.value)
    assert "'tool_exploded'" in message
    assert "'user_input'" in message
    assert "'human_response'" in message


def test_an_event_without_a_type_is_rejected() -> None:
    with pytest.raises(ValidationError, match="discriminator 'type'"):
        EVENT_ADAPTER.validate_python({"seq": 0, "ts": TS.isoformat(), "text": "hi"})


def test_unknown_fields_are_rejected_not_dropped() -> None:
    raw = dump_event(UserInput(seq=0, ts=TS, text="hi")) | {"secret": "x"}

    with pytest.raises(ValidationError, match="secret"):
        parse_event(raw)


def test_a_field_of_the_wrong_shape_names_the_field() -> None:
    raw = dump_event(SAMPLES[1]) | {"input_tokens": -1}

    with pytest.raises(ValidationError, match="input_tokens"):
        parse_event(raw)


def test_new_events_carry_the_current_schema_version() -> None:
    assert UserInput(seq=0, ts=TS, text="hi").v == SCHEMA_VERSION == 2


def test_an_event_written_with_version_1_parses() -> None:
    raw = dump_event(UserInput(seq=0, ts=TS, text="hi")) | {"v": 1}

    assert parse_event(raw, thread_id="t_old") == UserInput(seq=0, ts=TS, text="hi")


def test_an_event_without_a_version_is_read_as_version_1() -> None:
    raw = dump_event(UserInput(seq=0, ts=TS, text="hi"))
    del raw["v"]

    assert parse_event(raw).v == SCHEMA_VERSION  # version 1, upgraded on load


def test_an_event_from_a_newer_schema_fails_loudly_naming_the_thread() -> None:
    raw = dump_event(UserInput(seq=3, ts=TS, text="hi")) | {"v": 99}

    with pytest.raises(UnknownSchemaVersionError) as caught:
        parse_event(raw, thread_id="t_future")

    message = str(caught.value)
    assert "thread t_future" in message
    assert "seq=3" in message
    assert "99" in message
    assert "newer stepfold" in message


def test_a_thread_read_from_json_checks_each_event_schema_version() -> None:
    raw = json.loads(Thread(id="t_future", agent="calculator", events=(SAMPLES[0],)).to_json())
    raw["events"][0]["v"] = 99

    with pytest.raises(UnknownSchemaVersionError, match="thread t_future"):
        Thread.from_json(json.dumps(raw))
    with pytest.raises(ValidationError, match="thread t_future: event seq=0 has schema version 99"):
        Thread.model_validate_json(json.dumps(raw))


def test_parse_event_does_not_change_the_callers_dict() -> None:
    raw = dump_event(UserInput(seq=0, ts=TS, text="hi"))
    before = dict(raw)

    parse_event(raw)

    assert raw == before


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_events_are_frozen(event: Event) -> None:
    with pytest.raises(ValidationError, match="frozen"):
        event.seq = 42  # type: ignore[misc]

    assert event.seq != 42


def test_events_are_hashable_values() -> None:
    a = Done(seq=1, ts=FIXED_NOW, answer="x")
    b = Done(seq=1, ts=FIXED_NOW, answer="x")

    assert a == b
    assert hash(a) == hash(b)
    assert isinstance(a, BaseModel)


def test_an_older_schema_version_is_upgraded_on_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """How a future schema change ships: bump the version and register an upgrade from the old shape."""
    import core.kernel.events as events_module  # noqa: PLC0415

    def v2_to_v3(raw: dict[str, Any]) -> dict[str, Any]:
        upgraded = dict(raw)
        if upgraded.get("type") == "user_input" and "message" in upgraded:  # v2 called it "message" in this story
            upgraded["text"] = upgraded.pop("message")
        return upgraded

    monkeypatch.setattr(events_module, "SCHEMA_VERSION", 3)
    monkeypatch.setitem(events_module._UPGRADES, 2, v2_to_v3)
    stored = {"seq": 0, "ts": "2026-01-01T00:00:00Z", "v": 2, "type": "user_input", "message": "hello"}
    event = parse_event(stored, thread_id="t_old")
    assert isinstance(event, UserInput)
    assert (event.text, event.v) == ("hello", 3)
    with pytest.raises(UnknownSchemaVersionError, match=r"t_old.*schema version 4"):
        parse_event({**stored, "v": 4}, thread_id="t_old")
