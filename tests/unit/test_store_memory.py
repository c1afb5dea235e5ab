"""The memory thread store: the ThreadStore contract (create, load, conditional append) that the DynamoDB one shares."""

from __future__ import annotations

import threading

import pytest

from core.adapters.store import (
    MemoryThreadStore,
    StoreError,
    ThreadExistsError,
    ThreadNotFoundError,
    ThreadStore,
    VersionConflictError,
)
from core.kernel.events import Paused, Resumed, UserInput
from core.kernel.thread import Thread, start_thread
from tests.unit.conftest import FIXED_NOW


def _thread(thread_id: str = "t_1") -> Thread:
    return start_thread(thread_id, "calculator", "add 1 and 2", now=FIXED_NOW, prompt_version="1")


def test_the_memory_store_is_a_thread_store() -> None:
    store: ThreadStore = MemoryThreadStore()

    assert store.create(_thread()) == _thread()


def test_create_then_load_returns_the_same_thread() -> None:
    store = MemoryThreadStore()
    store.create(_thread("t_1"))
    store.create(_thread("t_2"))

    assert store.load("t_1") == _thread("t_1")
    assert store.load("t_2").labels == {"prompt_version": "1"}
    assert store.ids() == ["t_1", "t_2"]


def test_creating_an_existing_id_fails_and_keeps_the_first() -> None:
    store = MemoryThreadStore()
    store.create(_thread())
    other = start_thread("t_1", "deploybot", "deploy", now=FIXED_NOW)

    with pytest.raises(ThreadExistsError, match="thread 't_1' already exists") as caught:
        store.create(other)

    assert caught.value.thread_id == "t_1"
    assert store.load("t_1").agent == "calculator"


def test_loading_a_missing_thread_says_which() -> None:
    with pytest.raises(ThreadNotFoundError) as caught:
        MemoryThreadStore().load("t_missing")

    assert str(caught.value) == "no thread 't_missing'"
    assert caught.value.thread_id == "t_missing"
    assert isinstance(caught.value, KeyError)
    assert isinstance(caught.value, StoreError)


def test_appending_to_a_missing_thread_fails() -> None:
    with pytest.raises(ThreadNotFoundError):
        MemoryThreadStore().append("t_missing", 1, [Paused(seq=1, ts=FIXED_NOW)])


def test_append_at_the_current_version_extends_the_thread() -> None:
    store = MemoryThreadStore()
    store.create(_thread())

    after = store.append("t_1", 1, [Paused(seq=1, ts=FIXED_NOW), Resumed(seq=2, ts=FIXED_NOW)])

    assert after.version == 3
    assert store.load("t_1") == after
    assert [e.type for e in after.events] == ["user_input", "paused", "resumed"]


def test_a_stale_append_conflicts_and_writes_nothing() -> None:
    store = MemoryThreadStore()
    store.create(_thread())
    store.append("t_1", 1, [Paused(seq=1, ts=FIXED_NOW)])

    with pytest.raises(VersionConflictError) as caught:
        store.append("t_1", 1, [UserInput(seq=1, ts=FIXED_NOW, text="late")])

    assert (caught.value.thread_id, caught.value.expected, caught.value.actual) == ("t_1", 1, 2)
    assert str(caught.value) == "thread 't_1' changed while this writer worked: expected version 1, it is at 2"
    assert [e.type for e in store.load("t_1").events] == ["user_input", "paused"]


def test_events_with_the_wrong_seqs_are_refused_and_nothing_is_written() -> None:
    store = MemoryThreadStore()
    store.create(_thread())

    with pytest.raises(ValueError, match="appended event has seq 5, expected 1"):
        store.append("t_1", 1, [Paused(seq=5, ts=FIXED_NOW)])

    assert store.load("t_1").version == 1


def test_concurrent_appends_have_exactly_one_winner_per_version() -> None:
    store = MemoryThreadStore()
    store.create(_thread())
    writers, rounds = 8, 5
    wins: list[tuple[int, int]] = []
    conflicts: list[int] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        for _ in range(rounds):
            barrier.wait()
            version = expected[0]
            try:
                store.append("t_1", version, [UserInput(seq=version, ts=FIXED_NOW, text=f"writer {n}")])
            except VersionConflictError:
                with lock:
                    conflicts.append(n)
            else:
                with lock:
                    wins.append((version, n))
            barrier.wait()
            if n == 0:
                expected[0] = store.load("t_1").version
            barrier.wait()

    expected = [1]
    barrier = threading.Barrier(writers)
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)

    thread = store.load("t_1")
    assert thread.version == 1 + rounds
    assert sorted(v for v, _ in wins) == list(range(1, 1 + rounds))
    assert len(conflicts) == rounds * (writers - 1)
    assert [e.text for e in thread.events[1:] if isinstance(e, UserInput)] == [f"writer {n}" for _, n in sorted(wins)]
