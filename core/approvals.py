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
from typing import Any, Literal, Protocol
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.agent import Agent
from core.errors import compact_validation_error
from core.events import JSON, HumanDecision, HumanRequest, HumanResponse
from core.store.base import ThreadStore, append_one
from core.thread import Thread, fold

ApprovalState = Literal["pending", "approved", "rejected", "edited", "answered", "expired", "cancelled"]
DECIDED: dict[HumanDecision, ApprovalState] = {
    "approve": "approved",
    "reject": "rejected",
    "edit": "edited",
    "answer": "answered",
    "expired": "expired",
}


class ApprovalError(Exception):
    """Base: every subclass says what was wrong in words a person can act on."""

    status = 400


class ApprovalNotFoundError(ApprovalError):
    status = 404


class LinkSignatureError(ApprovalError):
    status = 403


class LinkExpiredError(ApprovalError):
    status = 410


class AlreadyDecidedError(ApprovalError):
    status = 409


class ArgsChangedError(ApprovalError):
    status = 409


class InvalidDecisionError(ApprovalError):
    status = 400


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

    def send_task_success(self, *, taskToken: str, output: str) -> Any: ...  # noqa: N803 - boto3's names


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
    if not exp or not sig or not exp.isdigit():
        raise LinkSignatureError("this link is incomplete: it needs both 'exp' and 'sig'; use the link you were sent")
    expires_at = int(exp)
    if not hmac.compare_digest(sign(key, approval_id, expires_at), sig):
        raise LinkSignatureError("this link's signature is not valid; it may have been altered")
    if now >= expires_at:
        raise LinkExpiredError("this link has expired; the request was denied by default")
    return expires_at


# --- opening and deciding ------------------------------------------------------------------------


def open_approval(thread: Thread, task_token: str, *, now: int, ttl_seconds: int) -> Approval | None:
    """The approval record for the thread's open human request, or None if nothing is waiting."""
    state = fold(thread)
    request = state.open_request
    if request is None:
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


class Decision(BaseModel):
    """A person's answer to an approval or question, from any channel."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject", "edit", "answer"]
    by: str = Field(min_length=1, max_length=200)
    channel: str = Field(default="api", max_length=50)
    comment: str = Field(default="", max_length=4000)
    args: dict[str, JSON] | None = None
    answer: str | None = Field(default=None, max_length=20_000)


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
    state = fold(thread)
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

    def build(thread: Thread) -> HumanResponse:
        request = waiting_request(approval, thread)
        edited = _check(decision, approval, request, agent)
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
        )

    thread = append_one(threads, approval.thread_id, build)
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
        request = fold(thread).open_request
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
