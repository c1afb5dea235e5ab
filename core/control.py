"""Launch, pause, resume, cancel, message (Factor 6): the operations every front door shares.

The HTTP API, the CLI, webhooks and schedules all call these. Each is an append to the thread
(plus, where the loop must run again, an execution start named ``<thread>-<seq>`` so a double
click starts one execution), and each refuses a thread in the wrong state with a message saying
what the thread is doing and what would work instead.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from core.agent import Agent, UnknownAgentError
from core.events import Failed, Paused, Resumed, UserInput
from core.store.base import ThreadExistsError, ThreadStore, append_one
from core.thread import Thread, fold, start_thread

MAX_INPUT_CHARS = 100_000


class ControlError(Exception):
    """An operation that cannot be done; ``status`` is the HTTP status that fits."""

    status = 400


class WrongStateError(ControlError):
    status = 409


class InputTooLargeError(ControlError):
    status = 413


class Executions(Protocol):
    """Starts the agent loop for a thread. Must be idempotent per (thread, seq)."""

    def start(self, thread_id: str, seq: int) -> None: ...


class Waits(Protocol):
    """Ends a human wait without an answer (cancel): Step Functions' SendTaskFailure on the stored token."""

    def cancel_wait(self, approval_id: str, reason: str) -> None: ...


def thread_id_for(agent: str, idempotency_key: str | None) -> str:
    """A fresh id, or one derived from the idempotency key so the same key always names the same thread."""
    if idempotency_key is None:
        return f"th_{uuid.uuid4().hex[:20]}"
    digest = hashlib.sha256(f"{agent}\n{idempotency_key}".encode()).hexdigest()
    return f"th_{digest[:20]}"


@dataclass(frozen=True)
class Launched:
    thread: Thread
    created: bool


def launch(
    threads: ThreadStore,
    executions: Executions,
    agents: Mapping[str, Agent],
    *,
    agent: str,
    text: str,
    clock: Callable[[], datetime],
    idempotency_key: str | None = None,
    source: str = "api",
    labels: Mapping[str, str] | None = None,
) -> Launched:
    """Start a thread, or return the one this idempotency key already started."""
    if agent not in agents:
        raise UnknownAgentError(agent, sorted(agents))
    _check_text(text)
    thread_id = thread_id_for(agent, idempotency_key)
    pinned = {"prompt_version": str(agents[agent].prompt_version), **(labels or {})}
    if idempotency_key is not None:
        pinned["idempotency_key"] = idempotency_key[:200]
    thread = start_thread(thread_id, agent, text, now=clock(), source=source, **pinned)
    try:
        thread = threads.create(thread)
    except ThreadExistsError:
        existing = threads.load(thread_id)
        executions.start(thread_id, 1)  # a launch that crashed after create still gets its execution
        return Launched(existing, created=False)
    executions.start(thread_id, thread.version)
    return Launched(thread, created=True)


def _check_text(text: str) -> None:
    if not text.strip():
        raise ControlError("input is empty: say what the agent should do")
    if len(text) > MAX_INPUT_CHARS:
        raise InputTooLargeError(f"input is {len(text)} characters; the limit is {MAX_INPUT_CHARS}")


def pause(threads: ThreadStore, thread_id: str, *, by: str, reason: str, clock: Callable[[], datetime]) -> Thread:
    """Pause between steps: the next step returns ``paused`` and the execution ends cleanly."""

    def build(thread: Thread) -> Paused:
        status = fold(thread).status
        if status not in ("running", "awaiting_human"):
            raise WrongStateError(f"thread {thread_id} is {status}; only a running or waiting thread can be paused")
        return Paused(seq=thread.next_seq, ts=clock(), by=by, reason=reason)

    return append_one(threads, thread_id, build)


def resume(
    threads: ThreadStore, executions: Executions, thread_id: str, *, by: str, clock: Callable[[], datetime]
) -> Thread:
    """Resume a paused thread in a new execution named ``<thread>-<seq>``."""

    def build(thread: Thread) -> Resumed:
        status = fold(thread).status
        if status != "paused":
            raise WrongStateError(f"thread {thread_id} is {status}, not paused; there is nothing to resume")
        return Resumed(seq=thread.next_seq, ts=clock(), by=by)

    thread = append_one(threads, thread_id, build)
    state = fold(thread)
    if state.status == "running":
        executions.start(thread_id, thread.version)
    # awaiting_human: the original execution still waits on its task token; the answer resumes it
    return thread


def cancel(
    threads: ThreadStore,
    waits: Waits | None,
    thread_id: str,
    *,
    by: str,
    reason: str,
    clock: Callable[[], datetime],
) -> Thread:
    """End a thread for good. A human wait in progress is failed so its execution ends too."""
    open_request: list[str] = []

    def build(thread: Thread) -> Failed:
        state = fold(thread)
        if state.status in ("done", "failed"):
            raise WrongStateError(f"thread {thread_id} is already {state.status}")
        open_request[:] = [state.open_request.approval_id] if state.open_request else []
        why = f"cancelled by {by}" + (f": {reason}" if reason else "")
        return Failed(seq=thread.next_seq, ts=clock(), reason=why)

    thread = append_one(threads, thread_id, build)
    if waits is not None and open_request:
        waits.cancel_wait(open_request[0], f"cancelled by {by}")
    return thread


def add_message(
    threads: ThreadStore,
    executions: Executions,
    thread_id: str,
    *,
    text: str,
    by: str,
    clock: Callable[[], datetime],
) -> Thread:
    """Add user input to a thread that finished for now, and run it again."""
    _check_text(text)

    def build(thread: Thread) -> UserInput:
        state = fold(thread)
        if state.status == "awaiting_human":
            kind = state.open_request.kind if state.open_request else "a human"
            raise WrongStateError(
                f"thread {thread_id} is waiting for an {kind}; answer it with POST /threads/{thread_id}/responses"
            )
        if state.status != "done":
            raise WrongStateError(f"thread {thread_id} is {state.status}; messages can be added once it is done")
        return UserInput(seq=thread.next_seq, ts=clock(), text=text, source=f"message:{by}")

    thread = append_one(threads, thread_id, build)
    executions.start(thread_id, thread.version)
    return thread
