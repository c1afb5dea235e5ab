"""Contact humans with tool calls (Factor 7): approval records, signed links, and decisions.

The Step Functions task token stays in the approval record; a link carries only the approval id,
an expiry and an HMAC signature over both. A decision is appended to the thread first (the
thread's optimistic concurrency makes exactly one decision win), then the record is closed and
the waiting execution resumed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Literal, Protocol
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.kernel.agent import Agent
from core.kernel.errors import compact_validation_error
from core.kernel.events import JSON, Done, Failed, HumanDecision, HumanRequest, HumanResponse
from core.kernel.mcp import with_pinned_tools
from core.kernel.parsing import ascii_int
from core.kernel.store import ThreadStore, append_one
from core.kernel.thread import Thread, fold

ApprovalState = Literal["pending", "approved", "rejected", "edited", "answered", "expired", "cancelled"]
DECIDED: dict[HumanDecision, ApprovalState] = {
    "approve": "approved",
    "reject": "rejected",
    "edit": "edited",
    "answer": "answered",
    "expired": "expired",
}


class ApprovalError(Exception):
    """Base: every subclass says what was wrong in words a person can act on.

    They carry no HTTP status: each front door answers them in its own words (ARCHITECTURE.md, "HTTP statuses
    belong to handlers").
    """


class ApprovalNotFoundError(ApprovalError):
    """No approval record has this id."""


class LinkSignatureError(ApprovalError):
    """The link is incomplete, altered or not one we signed."""


class LinkExpiredError(ApprovalError):
    """The link, or the request behind it, has expired."""


class AlreadyDecidedError(ApprovalError):
    """Someone already answered this request; the message says who and how."""


class ArgsChangedError(ApprovalError):
    """The call waiting for approval is not the one this link was made for."""


class InvalidDecisionError(ApprovalError):
    """The decision does not fit the request (an approval answered like a question, an edit the tool refuses...)."""


class ThreadEndedError(ApprovalError):
    """The thread was cancelled, failed or finished while the request was open: nothing can answer it now."""


ENDED = frozenset({"done", "failed"})
"""Thread statuses in which no human request is open any more (a cancelled thread is ``failed``)."""
MAX_COMMENT_CHARS = 4000
EXP_MAX_DIGITS = 12
"""A link's ``exp`` is Unix seconds: 10 digits until 2286; anything longer is not one of our links."""


class Approval(BaseModel):
    """One pending question or approval; the item behind a link."""

    model_config = ConfigDict(frozen=True)

    approval_id: str
    thread_id: str
    agent: str
    kind: Literal["approval", "question"]
    call_id: str | None = None
    tool: str | None = None
    args: dict[str, JSON] = Field(default_factory=dict)
    args_hash: str = ""
    question: str = ""
    task_token: str = Field(default="", repr=False)
    expires_at: int
    created_at: int
    state: ApprovalState = "pending"
    decided_by: str | None = None
    decided_at: int | None = None


class ApprovalStore(Protocol):
    def put_pending(self, approval: Approval) -> Approval:
        """Create the record, or refresh its task token while it is still pending (a retried request)."""
        ...

    def get(self, approval_id: str) -> Approval:
        """The record; :class:`ApprovalNotFoundError` if there is none."""
        ...

    def close(self, approval_id: str, state: ApprovalState, by: str, at: int) -> bool:
        """Move pending -> ``state`` once; False if it was no longer pending."""
        ...


class TaskTokens(Protocol):
    """Step Functions' callback API (an injected ``stepfunctions`` client has this shape)."""

    def send_task_success(self, *, taskToken: str, output: str) -> object: ...  # noqa: N803 - boto3's names


class MemoryApprovalStore:
    def __init__(self) -> None:
        self._items: dict[str, Approval] = {}
        self._lock = threading.Lock()

    def put_pending(self, approval: Approval) -> Approval:
        with self._lock:
            existing = self._items.get(approval.approval_id)
            if existing is not None and existing.state != "pending":
                return existing
            self._items[approval.approval_id] = approval
            return approval

    def get(self, approval_id: str) -> Approval:
        try:
            return self._items[approval_id]
        except KeyError:
            raise ApprovalNotFoundError(f"no approval {approval_id!r}") from None

    def close(self, approval_id: str, state: ApprovalState, by: str, at: int) -> bool:
        with self._lock:
            item = self.get(approval_id)
            if item.state != "pending":
                return False
            self._items[approval_id] = item.model_copy(update={"state": state, "decided_by": by, "decided_at": at})
            return True


# --- links ---------------------------------------------------------------------------------------


def args_hash(args: Mapping[str, JSON]) -> str:
    """sha256 of the canonical JSON of a tool call's args: binds a link to exactly what was shown."""
    canonical = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def sign(key: bytes, approval_id: str, expires_at: int) -> str:
    return hmac.new(key, f"{approval_id}.{expires_at}".encode(), hashlib.sha256).hexdigest()


def link(base_url: str, key: bytes, approval: Approval) -> str:
    """``{base}/approvals/{id}?exp=...&sig=...``: never the task token."""
    query = urlencode({"exp": approval.expires_at, "sig": sign(key, approval.approval_id, approval.expires_at)})
    return f"{base_url.rstrip('/')}/approvals/{approval.approval_id}?{query}"


def verify_link(key: bytes, approval_id: str, exp: str | None, sig: str | None, now: int) -> int:
    """Check a link's signature, then its expiry. Returns the expiry."""
    if not exp or not sig:
        raise LinkSignatureError("this link is incomplete: it needs both 'exp' and 'sig'; use the link you were sent")
    expires_at = ascii_int(exp, max_digits=EXP_MAX_DIGITS)
    if expires_at is None:  # "²", Arabic-Indic digits, 5,000 digits: never one of ours, and int() would raise
        raise LinkSignatureError("this link's 'exp' is not a time we wrote; use the link you were sent, unaltered")
    given = sig.encode("utf-8", "surrogatepass")  # compare bytes: compare_digest refuses non-ASCII str
    if not hmac.compare_digest(sign(key, approval_id, expires_at).encode(), given):
        raise LinkSignatureError("this link's signature is not valid; it may have been altered")
    if now >= expires_at:
        raise LinkExpiredError("this link has expired; the request was denied by default")
    return expires_at


# --- opening and deciding ------------------------------------------------------------------------


def open_approval(thread: Thread, task_token: str, *, now: int, ttl_seconds: int) -> Approval | None:
    """The approval record for the thread's open human request, or None if nothing is waiting.

    A thread that ended (cancelled, failed, done) waits for nobody, even if its last request was never
    answered: a cancel can land between the step that asked and this call, and must not produce a link.
    """
    state = fold(thread)
    request = state.open_request
    if request is None or state.status in ENDED:
        return None
    call = state.pending.call if state.pending and state.pending.request == request else None
    args = state.pending.args if state.pending and call else {}
    return Approval(
        approval_id=request.approval_id,
        thread_id=thread.id,
        agent=thread.agent,
        kind=request.kind,
        call_id=request.call_id,
        tool=call.tool if call else None,
        args=args,
        args_hash=args_hash(args) if call else "",
        question=request.question,
        task_token=task_token,
        expires_at=now + ttl_seconds,
        created_at=now,
    )


def record_approval(
    approvals: ApprovalStore,
    threads: ThreadStore,
    thread: Thread,
    task_token: str,
    *,
    now: int,
    ttl_seconds: int,
) -> Approval | None:
    """Store the approval for ``thread``'s open request; None if the thread waits for nothing (or has ended).

    The stored record may be an already-decided one (a retried request): callers resume at once unless the
    result is ``pending``. A cancel can commit between ``thread`` being read and the record being written,
    and the cancel then found no record to close; so after writing, the thread is read again and, if it has
    ended, the record is closed as ``cancelled`` here and None returned: no link goes out for an ended thread.
    """
    approval = open_approval(thread, task_token, now=now, ttl_seconds=ttl_seconds)
    if approval is None:
        return None
    stored = approvals.put_pending(approval)
    latest = threads.load(thread.id)
    if stored.state == "pending" and fold(latest).status in ENDED:
        if ended_for_good(latest):
            approvals.close(stored.approval_id, "cancelled", "system", now)
        return None
    return stored


def ended_for_good(thread: Thread) -> bool:
    """Whether an ended thread's open request can never be answered again, so its record may be closed.

    A cancel (a ``failed`` without an ``error``) or ``done`` is final. A failure on a system error can be
    retried, and the retried thread waits for the same request again: its record must stay pending (a closed
    one would make every retried wait resume at once, and ask again, in a loop). Until then
    :func:`waiting_request` refuses every decision on it.
    """
    terminal = next((e for e in reversed(thread.events) if isinstance(e, Done | Failed)), None)
    return not (isinstance(terminal, Failed) and terminal.error)


class Decision(BaseModel):
    """A person's answer to an approval or question, from any channel."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject", "edit", "answer"]
    by: str = Field(min_length=1, max_length=200)
    channel: str = Field(default="api", max_length=50)
    comment: str = Field(default="", max_length=MAX_COMMENT_CHARS)
    args: dict[str, JSON] | None = None
    answer: str | None = Field(default=None, max_length=20_000)
    note: str | None = Field(default=None, max_length=200)
    """A display note from the caller, such as who they act for; recorded beside ``by``, never in its place."""


def _check(decision: Decision, approval: Approval, request: HumanRequest, agent: Agent) -> dict[str, JSON] | None:
    """Validate a decision against what is waiting; returns the (re-validated) edited args, if any."""
    if approval.kind == "question" and decision.decision not in ("answer", "reject"):
        raise InvalidDecisionError(f"this is a question: answer it (got {decision.decision!r})")
    if approval.kind == "approval" and decision.decision == "answer":
        raise InvalidDecisionError("this is an approval: approve, reject, or edit the arguments")
    if decision.decision == "answer" and not (decision.answer or "").strip():
        raise InvalidDecisionError("an answer needs some text")
    if decision.decision != "edit":
        return None
    if decision.args is None:
        raise InvalidDecisionError("an edit needs the new arguments")
    if not request.call_id or approval.tool is None or approval.tool not in agent.registry:
        raise InvalidDecisionError("only a tool call's arguments can be edited")
    try:
        validated = agent.registry[approval.tool].validate(decision.args)
    except ValidationError as exc:
        raise InvalidDecisionError(f"the edited arguments are not valid: {compact_validation_error(exc)}") from None
    edited: dict[str, JSON] = validated.model_dump(mode="json")
    return edited


def waiting_request(approval: Approval, thread: Thread) -> HumanRequest:
    """The thread's open request that ``approval`` answers; raises if it was answered or its call changed."""
    answered = next(
        (e for e in reversed(thread.events) if isinstance(e, HumanResponse) and e.approval_id == approval.approval_id),
        None,
    )
    if answered is not None:  # answered first, whatever happened to the thread since (it may have run to its end)
        raise AlreadyDecidedError(f"this request was already {DECIDED[answered.decision]} by {answered.by}")
    state = fold(thread)
    if state.status in ENDED:
        ended = "was cancelled" if (state.failure or "").startswith("cancelled") else f"is {state.status}"
        raise ThreadEndedError(f"the thread {ended}, so this request can no longer be answered; nothing was recorded")
    request = state.open_request
    if request is None or request.approval_id != approval.approval_id:
        raise AlreadyDecidedError("the thread is no longer waiting for this request; it was already answered")
    if approval.call_id and (state.pending is None or args_hash(state.pending.args) != approval.args_hash):
        raise ArgsChangedError("the tool call changed after this link was made; nothing was approved")
    return request


def decide(
    approval_id: str,
    decision: Decision,
    *,
    threads: ThreadStore,
    approvals: ApprovalStore,
    agents: Mapping[str, Agent],
    tokens: TaskTokens | None,
    clock: Callable[[], datetime],
) -> Thread:
    """Apply a human decision exactly once and resume the waiting execution."""
    approval = approvals.get(approval_id)
    now = clock()
    if approval.state != "pending":
        raise AlreadyDecidedError(f"this request was already {approval.state} by {approval.decided_by or 'someone'}")
    if int(now.timestamp()) >= approval.expires_at:
        raise LinkExpiredError("this request has expired; it was denied by default")
    agent = agents[approval.agent]

    seen: list[Thread] = []

    def build(thread: Thread) -> HumanResponse:
        seen[:] = [thread]
        request = waiting_request(approval, thread)
        edited = _check(decision, approval, request, with_pinned_tools(agent, thread))
        return HumanResponse(
            seq=thread.next_seq,
            ts=now,
            approval_id=approval_id,
            decision=decision.decision,
            by=decision.by,
            channel=decision.channel,
            comment=decision.comment,
            args=edited,
            answer=decision.answer,
            note=(decision.note or "").strip() or None,
        )

    try:
        thread = append_one(threads, approval.thread_id, build)
    except ThreadEndedError:
        if seen and ended_for_good(seen[0]):  # the cancel found no record to close (it was written just after)
            approvals.close(approval_id, "cancelled", "system", int(now.timestamp()))
        raise
    approvals.close(approval_id, DECIDED[decision.decision], decision.by, int(now.timestamp()))
    if tokens is not None and approval.task_token:
        tokens.send_task_success(
            taskToken=approval.task_token, output=json.dumps({"thread_id": thread.id, "seq": thread.version})
        )
    return thread


def expire(thread_id: str, *, threads: ThreadStore, approvals: ApprovalStore, clock: Callable[[], datetime]) -> Thread:
    """The wait timed out: deny by default by recording an ``expired`` response (no-op if already answered)."""
    now = clock()
    expired: list[str] = []

    def build(thread: Thread) -> HumanResponse | None:
        state = fold(thread)
        request = state.open_request if state.status not in ENDED else None  # an ended thread records nothing more
        expired[:] = [request.approval_id] if request is not None else []
        if request is None:
            return None
        return HumanResponse(
            seq=thread.next_seq,
            ts=now,
            approval_id=request.approval_id,
            decision="expired",
            by="system",
            channel="timeout",
        )

    thread = append_one(threads, thread_id, build)
    if expired:
        with contextlib.suppress(ApprovalNotFoundError):  # answered through the API without a link
            approvals.close(expired[0], "expired", "system", int(now.timestamp()))
    return thread
