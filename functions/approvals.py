"""Approval pages (Factor 7): the signed link a person opens to approve, reject, edit or answer.

``GET /approvals/{approval_id}?exp=&sig=`` shows what the agent waits for; ``POST`` to the same URL
records the decision and resumes the execution. There is no authorizer: the HMAC signature over
(id, expiry) is the credential, so it is verified before anything is read or written. Every response
is a small HTML page (``templates/approval_*.html``) with strict security headers, and every model-produced
or user-typed value on it is escaped. The task token is never rendered or logged.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlencode

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from pydantic import ValidationError

from core.kernel.errors import compact_validation_error
from core.kernel.events import HumanRequest
from core.kernel.parsing import MAX_JSON_DEPTH, BadInputError, check_text, json_depth
from core.kernel.thread import ASK_TOOL, Thread, fold, summary
from core.kernel.tools import Tool
from core.services.approvals import (
    AlreadyDecidedError,
    Approval,
    ApprovalError,
    ApprovalNotFoundError,
    ArgsChangedError,
    Decision,
    InvalidDecisionError,
    LinkExpiredError,
    LinkSignatureError,
    ThreadEndedError,
    decide,
    verify_link,
    waiting_request,
)
from core.services.notify import args_json, redact
from functions._html import page as _page
from functions._html import render
from functions._statuses import lookup
from functions._wiring import Runtime, runtime

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient  # a dev dependency: the Lambda package does not carry it

logger = Logger(service="stepfold")
app = APIGatewayHttpResolver(debug=False)  # debug mode would echo events (and their signatures)

MAX_FORM_BYTES = 64_000
MAX_FORM_FIELDS = 20
"""The page's form has at most six fields; more is not our form (and parse_qs would raise, a 500)."""
DONE_TITLES = {
    "approve": "Approved — the agent continues",
    "edit": "Approved with your changes — the agent continues",
    "reject": "Rejected — the agent has been told why",
    "answer": "Answer sent — the agent continues",
}
PAUSED_TITLES = {
    "approve": "Approved — recorded; the thread is paused",
    "edit": "Approved with your changes — recorded; the thread is paused",
    "reject": "Rejected — recorded; the thread is paused",
    "answer": "Answer recorded — the thread is paused",
}


class FormTooLargeError(InvalidDecisionError):
    """The form is bigger than any the page sends (the same form, shortened, would work)."""


REFUSALS: dict[type[ApprovalError], tuple[int, str]] = {
    ApprovalError: (400, "That did not work"),
    InvalidDecisionError: (400, "That did not work"),
    FormTooLargeError: (413, "The form is too large"),
    LinkSignatureError: (403, "This link is not valid"),
    LinkExpiredError: (410, "This link has expired"),
    ApprovalNotFoundError: (404, "There is no such request"),
    AlreadyDecidedError: (409, "This request was already answered"),
    ArgsChangedError: (409, "The request changed after this link was made"),
    ThreadEndedError: (409, "This request can no longer be answered"),
}
"""Each refusal a page can meet, by type: its HTTP status and the page's title (ARCHITECTURE.md, "HTTP statuses
belong to handlers"). Looked up along the MRO (:func:`functions._statuses.lookup`), so a subclass answers as its
nearest mapped base; a refusal nothing maps is answered by :func:`failed` (500), never as a success."""


# --- routes --------------------------------------------------------------------------------------


@app.get("/approvals/<approval_id>")
def show(approval_id: str) -> Response[str]:
    rt = runtime()
    link = _verified_link(rt, approval_id)
    return _page(200, render_request(_view(rt, approval_id), link, _Form()))


@app.post("/approvals/<approval_id>")
def answer(approval_id: str) -> Response[str]:
    rt = runtime()
    link = _verified_link(rt, approval_id)  # before the body is even read
    form = _Form.parse(app.current_event.body, is_base64=bool(app.current_event.is_base64_encoded))
    approval = rt.approvals.get(approval_id)
    resume = _Resume(rt.sfn)
    try:
        decision = form.decision(approval)
        thread = decide(
            approval_id,
            decision,
            threads=rt.threads,
            approvals=rt.approvals,
            agents=rt.agents,
            tokens=resume,
            clock=rt.clock,
        )
    except InvalidDecisionError as exc:
        logger.info("approval form refused", extra={"approval_id": approval_id, "status": 400})
        return _page(400, render_request(_view(rt, approval_id), link, form, error=str(exc)))
    logger.info("human decision", extra={"approval_id": approval_id, "decision": decision.decision, "channel": "link"})
    return _page(200, render_decided(decision, thread, rt.now(), link, resumed=not resume.ended))


@app.get("/approvals/<approval_id>/thread")
def show_thread(approval_id: str) -> Response[str]:
    """The request's thread, read-only, for as long as the link is valid (before and after the decision): the
    link's signature is the credential, so an approver's browser needs no API key to see what it approves."""
    rt = runtime()
    _verified_link(rt, approval_id)
    approval = rt.approvals.get(approval_id)
    from functions.timeline import render_timeline  # noqa: PLC0415 - only this page needs the timeline's views

    return _page(200, render_timeline(rt.threads.load(approval.thread_id), model_links=False))


def refused(exc: ApprovalError) -> Response[str]:
    found = lookup(REFUSALS, type(exc))
    if found is None:
        return failed(exc)
    status, title = found
    approval_id = app.current_event.path_parameters.get("approval_id", "")[:64]
    logger.info(
        "approval link refused", extra={"approval_id": approval_id, "status": status, "reason": type(exc).__name__}
    )
    return _page(status, render_message(title, str(exc), "Nothing was changed."))


@app.not_found
def not_found(_: Exception) -> Response[str]:
    return _page(404, render_message("Page not found", "There is no page at this address.", ""))


def failed(exc: Exception) -> Response[str]:
    logger.error("approval page failed", extra={"error": f"{type(exc).__name__}: {redact(str(exc))[:300]}"})
    return _page(
        500,
        render_message(
            "Something went wrong",
            "The request could not be completed. Open the link again to see whether your decision was recorded.",
            "",
        ),
    )


app.exception_handler(ApprovalError)(refused)
app.exception_handler(Exception)(failed)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    result: dict[str, Any] = app.resolve(event, context)
    return result


# --- reading the request -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Link:
    approval_id: str
    exp: str
    sig: str

    @property
    def action(self) -> str:
        """The form's target, relative to ``/approvals/``: the same signed URL."""
        return f"./{quote(self.approval_id, safe='')}?{self.query}"

    @property
    def thread(self) -> str:
        """The read-only timeline of the request's thread, relative to ``/approvals/``, signed by the same link."""
        return f"./{quote(self.approval_id, safe='')}/thread?{self.query}"

    @property
    def query(self) -> str:
        return urlencode({"exp": self.exp, "sig": self.sig})


def _verified_link(rt: Runtime, approval_id: str) -> _Link:
    query = app.current_event.query_string_parameters
    exp, sig = query.get("exp"), query.get("sig")
    verify_link(rt.secrets.link_signing_key.encode(), approval_id, exp, sig, int(rt.now().timestamp()))
    return _Link(approval_id, exp or "", sig or "")


@dataclass(frozen=True)
class _View:
    """Everything the request page shows, after checking the request is still open and unchanged."""

    approval: Approval
    thread: Thread
    request: HumanRequest
    tool: Tool[Any] | None


def _view(rt: Runtime, approval_id: str) -> _View:
    approval = rt.approvals.get(approval_id)
    if approval.state == "expired":
        raise LinkExpiredError("this request has expired; it was denied by default")
    if approval.state != "pending":
        raise AlreadyDecidedError(f"this request was already {approval.state} by {approval.decided_by or 'someone'}")
    thread = rt.threads.load(approval.thread_id)
    request = waiting_request(approval, thread)
    agent = rt.agents.get(approval.agent)
    name = approval.tool if approval.kind == "approval" and approval.call_id and approval.tool != ASK_TOOL else None
    tool = agent.registry[name] if name and agent and name in agent.registry else None
    return _View(approval, thread, request, tool)


@dataclass(frozen=True)
class _Form:
    """The submitted form, kept as typed so an invalid submission is shown again as it was."""

    fields: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        return self.fields.get(name, "")

    @classmethod
    def parse(cls, body: str | None, *, is_base64: bool) -> _Form:
        raw = body or ""
        if len(raw) > MAX_FORM_BYTES * 2:
            raise FormTooLargeError(
                f"the form is larger than {MAX_FORM_BYTES} bytes; shorten the text and send it again"
            )
        if is_base64:
            try:
                raw = base64.b64decode(raw, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidDecisionError("the form could not be read; send it again from the page") from None
        if len(raw.encode()) > MAX_FORM_BYTES:
            raise FormTooLargeError(
                f"the form is larger than {MAX_FORM_BYTES} bytes; shorten the text and send it again"
            )
        try:
            parsed = parse_qs(raw, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        except ValueError:  # more than MAX_FORM_FIELDS fields
            raise InvalidDecisionError(
                f"the form has more than {MAX_FORM_FIELDS} fields, which this page never sends; "
                "open the link again and send the form from the page"
            ) from None
        return cls({k: v[0] for k, v in parsed.items()})

    def decision(self, approval: Approval) -> Decision:
        """The :class:`Decision` this form asks for; :class:`InvalidDecisionError` says what to fix."""
        choice = self.get("choice")
        kind = self.get("decision") or ("answer" if choice else "")
        by = self.get("by").strip()
        if not by:
            raise InvalidDecisionError("enter your name, so the decision says who made it")
        if kind not in ("approve", "reject", "edit", "answer"):
            raise InvalidDecisionError("choose one of the buttons: approve, reject, edit or answer")
        args: dict[str, Any] | None = None
        if kind == "edit":
            args = self._args()
        elif kind == "approve" and "args" in self.fields and self._args_or_none() != approval.args:
            raise InvalidDecisionError(
                "you changed the arguments but pressed Approve: press 'Approve with these arguments' to use "
                "your changes, or undo them"
            )
        try:
            return Decision(
                decision=kind,
                by=by,
                channel="link",
                comment=self.get("comment").strip(),
                args=args,
                answer=(choice or self.get("answer")) if kind == "answer" else None,
            )
        except ValidationError as exc:
            raise InvalidDecisionError(f"check the form: {compact_validation_error(exc)}") from None

    def _args(self) -> dict[str, Any]:
        text = self.get("args")
        if json_depth(text) > MAX_JSON_DEPTH:  # before json.loads, whose recursion a hostile form could exhaust
            raise InvalidDecisionError(f"the arguments are nested deeper than {MAX_JSON_DEPTH} levels; flatten them")
        try:
            value = json.loads(text)
            check_text(value, what="the arguments")
        except json.JSONDecodeError as exc:
            raise InvalidDecisionError(
                f"the arguments are not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            ) from None
        except BadInputError as exc:  # a lone surrogate: DynamoDB could not store it
            raise InvalidDecisionError(str(exc)) from None
        if not isinstance(value, dict):
            raise InvalidDecisionError('the arguments must be a JSON object, like {"name": "value"}')
        return value

    def _args_or_none(self) -> dict[str, Any] | None:
        try:
            return self._args()
        except InvalidDecisionError:
            return None


@dataclass
class _Resume:
    """SendTaskSuccess for :func:`decide`; if the wait already ended, the decision stays recorded."""

    sfn: SFNClient
    ended: bool = False

    def send_task_success(self, *, taskToken: str, output: str) -> object:  # noqa: N803 - boto3's names
        errors = self.sfn.exceptions
        try:
            return self.sfn.send_task_success(taskToken=taskToken, output=output)
        except (errors.TaskTimedOut, errors.TaskDoesNotExist, errors.InvalidToken):
            self.ended = True
            logger.warning("the waiting execution had already ended; the decision is recorded")
            return None


# --- pages ---------------------------------------------------------------------------------------
# What each page shows is decided here; templates/approval_*.html lay it out and escape every value.


@dataclass(frozen=True)
class _ThreadSummary:
    """The thread a request belongs to, as the pages show it (``macros.html``'s ``thread_summary``)."""

    agent: str
    id: str
    status: str
    steps: int
    cost_usd: float
    timeline: str
    """The thread's read-only timeline, signed like the link itself, relative to ``/approvals/``."""

    @classmethod
    def of(cls, thread: Thread, link: _Link) -> _ThreadSummary:
        info = summary(thread)
        return cls(
            agent=thread.agent,
            id=thread.id,
            status=str(info["status"]).replace("_", " "),
            steps=int(info["steps"]),
            cost_usd=float(info["cost_usd"]),
            timeline=link.thread,
        )


def render_message(title: str, message: str, note: str) -> str:
    """An error or notice page: what happened, and (for refusals) that nothing changed."""
    return render("approval_message.html", title=title, message=message[:1_000], note=note)


def render_decided(decision: Decision, thread: Thread, now: datetime, link: _Link, *, resumed: bool) -> str:
    """After a decision: what was recorded, by whom, what the thread does next, and where to follow it.

    A paused thread keeps its decision but does not act on it until it is resumed: saying "the agent
    continues" there would be false, and someone might resume or re-decide to make it continue.
    """
    paused = fold(thread).status == "paused"
    return render(
        "approval_decided.html",
        title=(PAUSED_TITLES if paused else DONE_TITLES)[decision.decision],
        decision=decision,
        decided_at=int(now.timestamp()),
        paused=paused,
        resumed=resumed,
        thread=_ThreadSummary.of(thread, link),
    )


def _choices(request: HumanRequest) -> list[str]:
    if request.format == "multiple_choice":
        return request.choices
    if request.format == "yes_no":
        return request.choices or ["yes", "no"]
    return []


def render_request(view: _View, link: _Link, form: _Form, *, error: str = "") -> str:
    """The request page: what the agent wants, the thread it belongs to, and the decision form.

    An invalid submission comes back with the form as it was typed, and the error said at the top.
    """
    approval = view.approval
    is_question = approval.kind == "question"
    edit = None
    if view.tool is not None:
        edit = {
            "tool": view.tool.name,
            "args": form.get("args") if "args" in form.fields else args_json(approval),
            "invalid": bool(error) and "args" in form.fields,
        }
    return render(
        "approval_request.html",
        title=f"{approval.agent} has a question" if is_question else f"{approval.agent} asks for your approval",
        error=error,
        request=view.request,
        call={"tool": approval.tool, "args": args_json(approval)} if not is_question and approval.tool else None,
        expires_at=approval.expires_at,
        thread=_ThreadSummary.of(view.thread, link),
        action=link.action,
        form={name: form.get(name) for name in ("by", "answer", "comment")},
        is_question=is_question,
        choices=_choices(view.request) if is_question else [],
        edit=edit,
    )
