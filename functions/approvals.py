"""Approval pages (Factor 7): the signed link a person opens to approve, reject, edit or answer.

``GET /approvals/{approval_id}?exp=&sig=`` shows what the agent waits for; ``POST`` to the same URL
records the decision and resumes the execution. There is no authorizer: the HMAC signature over
(id, expiry) is the credential, so it is verified before anything is read or written. Every response
is a small HTML page with strict security headers, and every model-produced or user-typed value on it
is escaped. The task token is never rendered or logged.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from pydantic import ValidationError

from core.approvals import (
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
from core.errors import compact_validation_error
from core.events import HumanRequest
from core.notify import args_json, redact
from core.parsing import MAX_JSON_DEPTH, BadInputError, check_text, json_depth
from core.thread import ASK_TOOL, Thread, fold, summary
from core.tools import Tool
from functions._html import document
from functions._html import e as _e
from functions._html import page as _page
from functions._html import sentence as _sentence
from functions._html import utc as _utc
from functions._wiring import Runtime, runtime

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
    """The form is bigger than any the page sends (413: the same form, shortened, would work)."""

    status = 413


REFUSAL_TITLES: dict[type[ApprovalError], str] = {
    FormTooLargeError: "The form is too large",
    ThreadEndedError: "This request can no longer be answered",
    LinkSignatureError: "This link is not valid",
    LinkExpiredError: "This link has expired",
    ApprovalNotFoundError: "There is no such request",
    AlreadyDecidedError: "This request was already answered",
    ArgsChangedError: "The request changed after this link was made",
    InvalidDecisionError: "That did not work",
}


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
    return _page(200, render_decided(decision, thread, rt.now(), resumed=not resume.ended))


def refused(exc: ApprovalError) -> Response[str]:
    approval_id = app.current_event.path_parameters.get("approval_id", "")[:64]
    logger.info(
        "approval link refused", extra={"approval_id": approval_id, "status": exc.status, "reason": type(exc).__name__}
    )
    title = next((t for kind, t in REFUSAL_TITLES.items() if isinstance(exc, kind)), "That did not work")
    return _page(exc.status, render_message(title, str(exc), "Nothing was changed."))


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
        return f"./{quote(self.approval_id, safe='')}?{urlencode({'exp': self.exp, 'sig': self.sig})}"


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

    sfn: Any
    ended: bool = False

    def send_task_success(self, *, taskToken: str, output: str) -> Any:  # noqa: N803 - boto3's names
        errors = self.sfn.exceptions
        try:
            return self.sfn.send_task_success(taskToken=taskToken, output=output)
        except (errors.TaskTimedOut, errors.TaskDoesNotExist, errors.InvalidToken):
            self.ended = True
            logger.warning("the waiting execution had already ended; the decision is recorded")
            return None


# --- pages ---------------------------------------------------------------------------------------

FORM_CSS = """
label{display:block;font-weight:600;margin:.5rem 0 .25rem}
input,textarea{font:inherit;box-sizing:border-box;width:100%;padding:.5rem;border:1px solid GrayText;border-radius:4px}
button{font:inherit;min-height:44px;padding:.5rem 1.1rem;margin:.5rem .5rem 0 0;border-radius:4px;
  border:1px solid GrayText;cursor:pointer}
.approve{background:#116329;color:#fff;border-color:#116329}
.reject{background:#a40e26;color:#fff;border-color:#a40e26}
"""


def _document(title: str, main: str) -> str:
    return document(title, main, css=FORM_CSS)


def _thread_summary(thread: Thread) -> str:
    info = summary(thread)
    timeline = f"../threads/{quote(thread.id, safe='')}/view"
    return (
        "<h2>Thread</h2>\n<dl>\n"
        f"<dt>Agent</dt><dd>{_e(thread.agent)}</dd>\n"
        f"<dt>Thread</dt><dd><code>{_e(thread.id)}</code></dd>\n"
        f"<dt>Status</dt><dd>{_e(str(info['status']).replace('_', ' '))}</dd>\n"
        f"<dt>Steps</dt><dd>{int(info['steps'])}</dd>\n"
        f"<dt>Cost</dt><dd>${float(info['cost_usd']):.4f}</dd>\n"
        f'</dl>\n<p><a href="{_e(timeline)}">See the whole thread, step by step</a></p>'
    )


def render_message(title: str, message: str, note: str) -> str:
    """An error or notice page: what happened, and (for refusals) that nothing changed."""
    extra = f"\n<p>{_e(note)}</p>" if note else ""
    return _document(title, f"<p>{_e(_sentence(message[:1_000]))}</p>{extra}")


def render_decided(decision: Decision, thread: Thread, now: datetime, *, resumed: bool) -> str:
    """After a decision: what was recorded, by whom, what the thread does next, and where to follow it.

    A paused thread keeps its decision but does not act on it until it is resumed: saying "the agent
    continues" there would be false, and someone might resume or re-decide to make it continue.
    """
    recorded = f"<p>Recorded as decided by {_e(decision.by)} at {_utc(int(now.timestamp()))}, through this link.</p>"
    if fold(thread).status == "paused":
        recorded += (
            "\n<p>The thread is paused, so the agent does not act on this yet: it continues when the thread is "
            "resumed.</p>"
        )
        return _document(PAUSED_TITLES[decision.decision], f"{recorded}\n{_thread_summary(thread)}")
    if not resumed:
        recorded += (
            "\n<p>The agent's run had already ended (it may have timed out), so it did not continue by itself: "
            "resume the thread to act on this decision.</p>"
        )
    return _document(DONE_TITLES[decision.decision], f"{recorded}\n{_thread_summary(thread)}")


def _choices(request: HumanRequest) -> list[str]:
    if request.format == "multiple_choice":
        return request.choices
    if request.format == "yes_no":
        return request.choices or ["yes", "no"]
    return []


def render_request(view: _View, link: _Link, form: _Form, *, error: str = "") -> str:
    """The request page: what the agent wants, the thread it belongs to, and the decision form."""
    approval, request = view.approval, view.request
    is_question = approval.kind == "question"
    title = f"{approval.agent} has a question" if is_question else f"{approval.agent} asks for your approval"
    parts: list[str] = []
    if error:
        parts.append(
            f'<div class="error" role="alert" id="form-error"><h2>Please check</h2><p>{_e(_sentence(error))}</p></div>'
        )
    parts.append(f"<p>{_e(request.question)}</p>")
    if request.context:
        parts.append(f'<p class="hint">{_e(request.context)}</p>')
    if request.urgency == "high":
        parts.append("<p><strong>Marked urgent.</strong></p>")
    if not is_question and approval.tool:
        parts.append(
            f"<h2>The exact call</h2>\n<p>Tool <code>{_e(approval.tool)}</code> with these arguments:</p>\n"
            f"<pre>{_e(args_json(approval))}</pre>"
        )
    parts.append(f"<p>This link expires at {_utc(approval.expires_at)}. Without an answer the request is denied.</p>")
    parts.append(_thread_summary(view.thread))
    parts.append(_decision_form(view, link, form, error))
    return _document(title, "\n".join(parts))


def _textarea(
    name: str, label: str, value: str, *, hint: str = "", rows: int = 4, invalid: bool = False, **attrs: str
) -> str:
    described = f' aria-describedby="{name}-hint{" form-error" if invalid else ""}"' if hint else ""
    extra = "".join(f' {k.rstrip("_").replace("_", "-")}="{_e(v)}"' for k, v in attrs.items())
    return (
        f'<label for="{name}">{_e(label)}</label>\n'
        + (f'<p class="hint" id="{name}-hint">{_e(hint)}</p>\n' if hint else "")
        + f'<textarea id="{name}" name="{name}" rows="{rows}"{described}'
        + (' aria-invalid="true"' if invalid else "")
        + f"{extra}>{_e(value)}</textarea>"
    )


def _decision_form(view: _View, link: _Link, form: _Form, error: str) -> str:
    approval, request = view.approval, view.request
    fields = [
        # Enter in a text field submits with the form's first button; a disabled first button makes Enter do
        # nothing, so nobody approves by pressing Enter after typing their name.
        '<button type="submit" disabled hidden aria-hidden="true" tabindex="-1"></button>',
        '<label for="by">Your name</label>',
        '<input id="by" name="by" type="text" required maxlength="200" autocomplete="name" '
        f'value="{_e(form.get("by"))}">',
    ]
    if approval.kind == "question":
        choices = _choices(request)
        if choices:
            buttons = "\n".join(
                f'<button type="submit" name="choice" value="{_e(c)}">{_e(c)}</button>' for c in choices
            )
            fields.append(f"<section>\n<h3>Choose an answer</h3>\n{buttons}\n</section>")
        fields.append(
            "<section>\n<h3>Answer in your own words</h3>\n"
            + _textarea("answer", "Your answer", form.get("answer"), maxlength="20000")
            + '\n<button type="submit" name="decision" value="answer" class="approve">Send answer</button>\n</section>'
        )
    else:
        fields.append(
            '<section>\n<h3>Approve</h3>\n<p class="hint">Runs the call exactly as shown above.</p>\n'
            '<button type="submit" name="decision" value="approve" class="approve">Approve</button>\n</section>'
        )
    reject = "Decline to answer" if approval.kind == "question" else "Reject"
    fields.append(
        f"<section>\n<h3>{reject}</h3>\n"
        + _textarea(
            "comment",
            "Reason",
            form.get("comment"),
            hint="The agent reads this and can change its plan.",
            rows=3,
            maxlength="4000",
        )
        + f'\n<button type="submit" name="decision" value="reject" class="reject">{reject}</button>\n</section>'
    )
    if view.tool is not None:
        edited = form.get("args") if "args" in form.fields else args_json(approval)
        fields.append(
            "<section>\n<h3>Edit the arguments</h3>\n"
            + _textarea(
                "args",
                "Arguments (JSON)",
                edited,
                hint=f"Checked against the {view.tool.name} tool's schema before anything runs.",
                rows=8,
                invalid=bool(error) and "args" in form.fields,
                spellcheck="false",
                class_="code",
            )
            + '\n<button type="submit" name="decision" value="edit">Approve with these arguments</button>\n</section>'
        )
    body = "\n".join(fields)
    return f'<h2>Your decision</h2>\n<form method="post" action="{_e(link.action)}">\n{body}\n</form>'
