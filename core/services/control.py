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

from core.kernel.agent import Agent, UnknownAgentError
from core.kernel.events import CANCELLED_BY, Failed, Paused, Resumed, Retried, UserInput
from core.kernel.store import FailureMarker, ThreadExistsError, ThreadStore, UnreadableThreadError, append_one
from core.kernel.thread import Thread, fold, start_thread

MAX_INPUT_CHARS = 100_000

SYSTEM_LABELS = frozenset({"prompt_version", "idempotency_key", "forked_from", "forked_at"})
"""Labels stepfold itself sets (the pinned prompt, the idempotency key, a fork's origin): no caller passes them."""
TRIGGER_LABELS = frozenset({"trigger", "trigger_event", "delivery_id"})
"""Labels only a verified trigger sets; :func:`core.services.replies.reply_for` and the reply document trust them."""
TRIGGER_LABEL_PREFIXES = ("reply_",)
"""``reply_to``/``reply_format`` (and whatever ``reply_*`` comes next): where a finished thread's answer is POSTed,
signed with our key. A caller that could set them could make stepfold POST, signed, to any URL (SSRF)."""


class ControlError(Exception):
    """An operation that cannot be done, with a message saying why and what would work instead.

    It carries no HTTP status: each front door answers it in its own words (ARCHITECTURE.md, "HTTP statuses
    belong to handlers").
    """


class WrongStateError(ControlError):
    """The thread is not in a state this operation applies to (a done thread cannot be paused, say)."""


class InputTooLargeError(ControlError):
    """The input is longer than :data:`MAX_INPUT_CHARS`: the same request, shortened, would work."""


class ReservedLabelError(ControlError):
    """A launch tried to set a label only stepfold or a trigger may set: the request itself is wrong."""


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
    trigger_labels: bool = False,
) -> Launched:
    """Start a thread, or return the one this idempotency key already started.

    ``trigger_labels=True`` is for :func:`core.services.triggers.launch_from` only: it lets ``labels`` carry the
    trigger-only labels (:data:`TRIGGER_LABELS`, ``reply_*``), which say where the thread's answer is sent.
    Every other front door (the HTTP API, the CLI) leaves it False, so a caller with an API key cannot point
    a signed reply at an address of its choosing. :class:`ReservedLabelError` says which label was refused.
    """
    if agent not in agents:
        raise UnknownAgentError(agent, sorted(agents))
    check_labels(labels or {}, trigger_labels=trigger_labels)
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


def is_trigger_label(key: str) -> bool:
    """True for a label only a verified trigger sets (``trigger``, ``trigger_event``, ``delivery_id``, ``reply_*``)."""
    return key in TRIGGER_LABELS or key.startswith(TRIGGER_LABEL_PREFIXES)


def check_labels(labels: Mapping[str, str], *, trigger_labels: bool) -> None:
    """Refuse labels outside the caller's namespace with a :class:`ReservedLabelError` naming the label."""
    for key in labels:
        if key in SYSTEM_LABELS:
            raise ReservedLabelError(
                f"label {key[:64]!r} is set by stepfold itself and cannot be passed in labels; "
                "use the request's own field for it (e.g. idempotency_key), or choose another label name"
            )
        if not trigger_labels and is_trigger_label(key):
            reserved = ", ".join(sorted(TRIGGER_LABELS)) + ", " + ", ".join(f"{p}*" for p in TRIGGER_LABEL_PREFIXES)
            raise ReservedLabelError(
                f"label {key[:64]!r} is reserved for triggers ({reserved}): only a verified webhook, schedule or "
                "event rule sets it; choose another label name"
            )


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
        why = f"{CANCELLED_BY}{by}" + (f": {reason}" if reason else "")
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


RETRYABLE_HINT = "retry it with POST /threads/{id}/retry or `stepfold retry {id}`"


@dataclass(frozen=True)
class FailureRecord:
    """What :func:`record_failure` wrote: the reason people are shown, and the seq of the ``failed`` event (None
    when the thread could not be read, and only its header was marked)."""

    error: str
    reason: str
    seq: int | None
    agent: str | None = None
    """Set when only the header could be marked (read from it): the events that name the agent are unreadable."""


def record_failure(
    threads: ThreadStore,
    thread_id: str,
    *,
    error: str,
    cause: str,
    execution: str | None,
    clock: Callable[[], datetime],
) -> FailureRecord | None:
    """Record that the thread's execution ended on a system error, so the thread never says ``running`` with no
    execution behind it. Returns what was recorded, or None when there was nothing to record: the thread had
    already ended (done, failed, cancelled) or was paused (a paused thread has no execution by design).

    A thread whose events cannot be read (an S3 payload deleted, say) cannot take a ``failed`` event; its header is
    marked failed instead, where the store can (:class:`~core.kernel.store.FailureMarker`).
    """
    recorded: list[Failed] = []
    why = f"the execution failed with {error}: {cause}" if cause else f"the execution failed with {error}"
    reason = f"{why[:900]}; {RETRYABLE_HINT.format(id=thread_id)}"

    def build(thread: Thread) -> Failed | None:
        recorded.clear()
        if fold(thread).status not in ("running", "awaiting_human"):
            return None
        event = Failed(seq=thread.next_seq, ts=clock(), reason=reason, error=error[:100], execution=execution)
        recorded[:] = [event]
        return event

    try:
        append_one(threads, thread_id, build)
    except UnreadableThreadError:
        if not isinstance(threads, FailureMarker):
            raise
        unreadable = f"{why[:900]}; its events cannot be read, so it cannot be retried until they are restored"
        agent = threads.mark_failed(thread_id, error=error[:100], reason=unreadable)
        return FailureRecord(error, unreadable, None, agent)
    return FailureRecord(error, recorded[0].reason, recorded[0].seq) if recorded else None


def retry(
    threads: ThreadStore, executions: Executions, thread_id: str, *, by: str, clock: Callable[[], datetime]
) -> Thread:
    """Start a new execution for a thread whose execution failed on a system error, from where it stopped.

    The new execution's first step settles whatever the failed one left half done by the effect-ledger rules,
    exactly as a Step Functions retry of that step would (an idempotent tool runs again with the same key; a
    non-idempotent one whose outcome is unknown asks a person). Cancelled threads and agents that failed on
    their own limits are refused: nothing went wrong that running again would fix.
    """

    def build(thread: Thread) -> Retried:
        state = fold(thread)
        if state.status != "failed":
            raise WrongStateError(f"thread {thread_id} is {state.status}; only a failed thread can be retried")
        last = next(e for e in reversed(thread.events) if isinstance(e, Failed))
        if last.error is None:
            raise WrongStateError(
                f"thread {thread_id} did not fail on a system error ({last.reason}); a retry would end the same "
                f"way: fork it (POST /threads/{thread_id}/fork) to try something else"
            )
        return Retried(seq=thread.next_seq, ts=clock(), by=by)

    thread = append_one(threads, thread_id, build)
    executions.start(thread_id, thread.version)
    return thread
