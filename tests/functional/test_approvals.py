"""Approval pages end to end: real HTTP API v2 events into functions.approvals, the real ASL on moto."""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import pytest
from pydantic import BaseModel, ConfigDict, Field

from agents import AGENTS, deploybot, scripted_model
from core.adapters.llm import ProviderConfig
from core.adapters.llm.scripted import Say, ScriptedLLM
from core.kernel.agent import Agent
from core.kernel.events import HumanResponse, LLMCall, ToolResult
from core.kernel.model import LLMRequest
from core.kernel.thread import Thread, fold
from core.kernel.tools import Tool, ToolContext
from core.services.approvals import Approval, sign
from functions import approvals
from infra.local.stack import LambdaContext, LocalStack
from tests.functional._http_events import form_event, http_event, split_link

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

ROUTE = "/approvals/{approval_id}"
XSS_SCRIPT = "<script>alert(1)</script>"
XSS_ATTR = '"><img src=x onerror=alert(1)>'
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


# --- helpers -------------------------------------------------------------------------------------


class CountingSfn:
    """The runtime's Step Functions client, counting SendTaskSuccess calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.successes = 0

    def send_task_success(self, **kwargs: Any) -> Any:
        self.successes += 1
        return self.inner.send_task_success(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Waiting:
    """A thread parked on a human request, and its link."""

    stack: LocalStack
    thread: Thread
    approval: Approval
    url: str

    @property
    def approval_id(self) -> str:
        return split_link(self.url)[0]

    @property
    def query(self) -> str:
        return split_link(self.url)[1]

    def get(self, *, approval_id: str | None = None, query: str | None = None) -> dict[str, Any]:
        event = http_event("GET", ROUTE, {"approval_id": approval_id or self.approval_id}, query=_q(query, self.query))
        return call(event)

    def post(
        self,
        fields: dict[str, str],
        *,
        approval_id: str | None = None,
        query: str | None = None,
        base64_body: bool = True,
    ) -> dict[str, Any]:
        event = form_event(
            "POST",
            ROUTE,
            {"approval_id": approval_id or self.approval_id},
            fields,
            query=_q(query, self.query),
            base64_body=base64_body,
        )
        return call(event)

    def sfn(self) -> CountingSfn:
        sfn = self.stack.rt.sfn
        assert isinstance(sfn, CountingSfn)
        return sfn

    def assert_unchanged(self) -> None:
        """Nothing was written and the execution still waits: a refused request changed nothing."""
        now = self.stack.thread(self.thread.id)
        assert now.version == self.thread.version
        assert fold(now).status == "awaiting_human"
        assert self.stack.rt.approvals.get(self.approval.approval_id).state == "pending"
        assert self.sfn().successes == 0
        execution = self.stack.execution_arn(self.thread.id)
        assert self.stack.execution_status(execution) == "RUNNING"
        entered = [e for e in self.stack.history(execution) if "stateEnteredEventDetails" in e]
        assert entered[-1]["stateEnteredEventDetails"]["name"] == "WaitForHuman"
        assert self.stack.history(execution)[-1]["type"] in ("TaskSubmitted", "TaskStarted")


def _q(query: str | None, default: str) -> str:
    return default if query is None else query


def call(event: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = approvals.handler(event, LambdaContext(function_name="ApprovalsFunction"))
    return response


def page(response: dict[str, Any]) -> str:
    assert response["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert not response.get("isBase64Encoded")
    body: str = response["body"]
    return body


def wait_for_human(stack: LocalStack, agent: str, text: str) -> Waiting:
    stack.rt.sfn = cast("SFNClient", CountingSfn(stack.rt.sfn))  # the client, counting SendTaskSuccess
    thread = stack.launch(agent, text)
    waiting = stack.wait(thread.id)
    assert fold(waiting).status == "awaiting_human"
    found = stack.notifier.last_for(thread.id)
    assert found is not None
    approval, url = found
    return Waiting(stack, waiting, approval, url)


@pytest.fixture
def deploy(stack: LocalStack) -> Waiting:
    return wait_for_human(stack, "deploybot", "deploy the latest backend to production")


def _response(thread: Thread) -> HumanResponse:
    return next(e for e in reversed(thread.events) if isinstance(e, HumanResponse))


# --- a test agent with a free-text tool argument and questions -----------------------------------


class NoteArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=500)


class NoteKit:
    """Agent ``noter``: asks to post ``text`` (needs approval), or asks ``question`` first when given one."""

    def __init__(self, text: str, *, question: dict[str, Any] | None = None) -> None:
        self.text = text
        self.question = question
        self.posted: list[str] = []
        tool = Tool("post_note", "Post a note to the team.", NoteArgs, self._post, policy="needs_approval")
        self.agent = Agent(
            name="noter",
            description="posts notes",
            prompt_id="calculator",
            prompt_version=1,
            tools=(tool,),
            model="scripted:noter",
        )
        self.llm = ScriptedLLM(self._brain, name="noter")

    def _brain(self, request: LLMRequest) -> Say:
        answered = [e for e in request.events if isinstance(e, HumanResponse)]
        if self.question is not None:
            if not answered:
                return Say("request_human_input", self.question)
            return Say("done_for_now", {"answer": f"answer: {answered[-1].answer}"})
        if any(isinstance(e, ToolResult) for e in request.events):
            return Say("done_for_now", {"answer": "posted"})
        if answered:
            return Say("done_for_now", {"answer": f"not posted: {answered[-1].comment}"})
        return Say("post_note", {"text": self.text})

    def _post(self, args: NoteArgs, _: ToolContext) -> str:
        self.posted.append(args.text)
        return "posted"

    def install(self, stack: LocalStack) -> None:
        rt = stack.rt
        rt.agents = {**AGENTS, self.agent.name: self.agent}
        rt.provider_config = ProviderConfig(scripted=lambda name: self.llm if name == "noter" else scripted_model(name))


# --- the page ------------------------------------------------------------------------------------


def test_page_shows_the_exact_call_summary_and_expiry(deploy: Waiting) -> None:
    response = deploy.get()
    assert response["statusCode"] == 200
    assert SECURITY_HEADERS.items() <= response["headers"].items()
    body = page(response)
    assert '<html lang="en">' in body
    assert 'name="viewport"' in body
    assert "deploybot asks for your approval" in body
    assert "<code>deploy_backend</code>" in body
    assert html.escape(json.dumps(deploy.approval.args, indent=2)) in body
    assert deploy.approval.args == {"tag": "v1.5.0", "environment": "production"}
    assert "<dt>Status</dt><dd>awaiting human</dd>" in body
    assert re.search(r"<dt>Steps</dt><dd>\d+</dd>", body)
    assert "<dt>Cost</dt><dd>$" in body
    assert f'href="./{deploy.approval_id}/thread?{html.escape(deploy.query)}"' in body  # signed, no API key
    assert " UTC</time>" in body
    for label in ('for="by"', 'for="comment"', 'for="args"'):
        assert label in body
    assert 'value="approve"' in body
    assert 'value="reject"' in body
    assert 'value="edit"' in body
    assert 'name="by" type="text" required maxlength="200"' in body
    assert deploy.approval.task_token
    assert deploy.approval.task_token not in body
    assert "<script" not in body
    deploy.assert_unchanged()


def test_approve_through_the_form_finishes_the_thread(deploy: Waiting) -> None:
    response = deploy.post({"by": "alice", "decision": "approve"})
    assert response["statusCode"] == 200, response["body"]
    assert SECURITY_HEADERS.items() <= response["headers"].items()
    assert "Approved — the agent continues" in page(response)
    final = deploy.stack.wait(deploy.thread.id)
    assert fold(final).status == "done"
    assert fold(final).answer == "Deployed backend v1.5.0 to production."
    answer = _response(final)
    assert (answer.decision, answer.by, answer.channel) == ("approve", "alice", "link")
    assert [(d["component"], d["environment"]) for d in deploybot.SERVICE.deployments] == [("backend", "production")]
    assert deploy.sfn().successes == 1
    assert deploy.stack.rt.approvals.get(deploy.approval.approval_id).state == "approved"


def test_a_plain_text_form_body_works_too(deploy: Waiting) -> None:
    response = deploy.post({"by": "alice", "decision": "approve"}, base64_body=False)
    assert response["statusCode"] == 200, response["body"]
    assert fold(deploy.stack.wait(deploy.thread.id)).status == "done"


def test_rejection_with_a_reason_reaches_the_model(deploy: Waiting) -> None:
    reason = "change freeze until Monday"
    response = deploy.post({"by": "carol", "decision": "reject", "comment": reason})
    assert response["statusCode"] == 200, response["body"]
    assert "Rejected — the agent has been told why" in page(response)
    final = deploy.stack.wait(deploy.thread.id)
    assert fold(final).status == "done"
    assert f"carol rejected it: {reason}" in (fold(final).answer or "")
    assert deploybot.SERVICE.deployments == []
    model = deploy.stack.rt.llm_for(AGENTS["deploybot"])
    assert isinstance(model, ScriptedLLM)
    assert reason in model.calls[-1].context
    answer = _response(final)
    assert (answer.decision, answer.channel, answer.comment) == ("reject", "link", reason)


def test_edited_arguments_are_validated_and_the_edited_call_runs(deploy: Waiting) -> None:
    edited = {"tag": "v1.4.2", "environment": "staging"}
    response = deploy.post({"by": "dave", "decision": "edit", "args": json.dumps(edited)})
    assert response["statusCode"] == 200, response["body"]
    assert "Approved with your changes" in page(response)
    after = deploy.stack.wait(deploy.thread.id)
    assert deploybot.SERVICE.deployments[0] == {
        "component": "backend",
        "tag": "v1.4.2",
        "environment": "staging",
        "key": deploybot.SERVICE.deployments[0]["key"],
    }
    answer = next(e for e in after.events if isinstance(e, HumanResponse))
    assert (answer.decision, answer.args, answer.channel) == ("edit", edited, "link")


def test_an_invalid_edit_is_shown_again_with_the_error_and_changes_nothing(deploy: Waiting) -> None:
    typed = '{"tag": "latest", "environment": "production"}'
    response = deploy.post({"by": "erin", "decision": "edit", "args": typed, "comment": "use latest"})
    assert response["statusCode"] == 400
    body = page(response)
    assert 'role="alert"' in body
    assert "The edited arguments are not valid: tag: String should match pattern" in html.unescape(body)
    assert f">{html.escape(typed)}</textarea>" in body  # the user's text, not the original
    assert 'aria-invalid="true"' in body
    assert 'value="erin"' in body
    assert ">use latest</textarea>" in body
    deploy.assert_unchanged()

    response = deploy.post({"by": "erin", "decision": "edit", "args": "{not json"})
    assert response["statusCode"] == 400
    assert "The arguments are not valid JSON" in page(response)
    response = deploy.post({"by": "erin", "decision": "edit", "args": "[1, 2]"})
    assert response["statusCode"] == 400
    assert "must be a JSON object" in page(response)
    deploy.assert_unchanged()


def test_approve_with_changed_arguments_is_refused_rather_than_guessed(deploy: Waiting) -> None:
    changed = json.dumps({"tag": "v1.4.0", "environment": "production"})
    response = deploy.post({"by": "erin", "decision": "approve", "args": changed})
    assert response["statusCode"] == 400
    assert "You changed the arguments but pressed Approve" in page(response)
    deploy.assert_unchanged()
    same = json.dumps(deploy.approval.args, indent=2).replace("\n", "\r\n")  # what a browser sends back
    response = deploy.post({"by": "erin", "decision": "approve", "args": same})
    assert response["statusCode"] == 200, response["body"]


INCOMPLETE_FORMS: list[tuple[dict[str, str], str]] = [
    ({"decision": "approve"}, "enter your name"),
    ({"by": "   ", "decision": "approve"}, "enter your name"),
    ({"by": "x" * 201, "decision": "approve"}, "by: String should have at most 200 characters"),
    ({"by": "frank"}, "choose one of the buttons"),
    ({"by": "frank", "decision": "destroy"}, "choose one of the buttons"),
    ({"by": "frank", "decision": "answer", "answer": "yes"}, "this is an approval"),
    ({"by": "frank", "decision": "reject", "comment": "x" * 4001}, "comment: String should have at most 4000"),
]


def test_incomplete_forms_get_400_and_change_nothing(deploy: Waiting) -> None:
    for fields, message in INCOMPLETE_FORMS:
        response = deploy.post(fields)
        assert response["statusCode"] == 400, fields
        assert message.lower() in html.unescape(page(response)).lower(), fields
    deploy.assert_unchanged()


def test_an_unreadable_form_body_is_refused(deploy: Waiting) -> None:
    event = form_event("POST", ROUTE, {"approval_id": deploy.approval_id}, {}, query=deploy.query)
    event["body"] = "%%% not base64 %%%"
    _refused(call(event), 400, "the form could not be read")
    event["body"] = "A" * 200_000
    _refused(call(event), 413, "the form is larger than 64000 bytes")
    deploy.assert_unchanged()


# --- questions -----------------------------------------------------------------------------------


def test_question_is_answered_through_the_form(stack: LocalStack) -> None:
    waiting = wait_for_human(stack, "calculator", "multiply 3 and xyz")
    assert waiting.approval.kind == "question"
    response = waiting.get()
    assert response["statusCode"] == 200
    body = page(response)
    assert "calculator has a question" in body
    assert html.escape("What number do you mean by 'xyz'?") in body
    assert 'for="answer"' in body
    assert 'value="approve"' not in body
    assert 'name="args"' not in body

    response = waiting.post({"by": "gina", "decision": "answer", "answer": "5"})
    assert response["statusCode"] == 200, response["body"]
    assert "Answer sent — the agent continues" in page(response)
    final = stack.wait(waiting.thread.id)
    assert fold(final).answer == "The answer is 15."
    answer = _response(final)
    assert (answer.decision, answer.answer, answer.by, answer.channel) == ("answer", "5", "gina", "link")


def test_multiple_choice_question_offers_buttons(stack: LocalStack) -> None:
    kit = NoteKit(
        "x", question={"question": "Which colour?", "format": "multiple_choice", "choices": ["blue", "green"]}
    )
    kit.install(stack)
    waiting = wait_for_human(stack, "noter", "pick a colour")
    body = page(waiting.get())
    assert '<button type="submit" name="choice" value="blue">blue</button>' in body
    assert '<button type="submit" name="choice" value="green">green</button>' in body
    response = waiting.post({"by": "hal", "choice": "green"})
    assert response["statusCode"] == 200, response["body"]
    final = stack.wait(waiting.thread.id)
    assert fold(final).answer == "answer: green"


# --- model text is escaped -----------------------------------------------------------------------


def test_model_produced_text_is_escaped_in_the_page(stack: LocalStack) -> None:
    payload = f"hello {XSS_SCRIPT} {XSS_ATTR} & bye"
    kit = NoteKit(payload)
    kit.install(stack)
    waiting = wait_for_human(stack, "noter", "post a note")
    assert waiting.approval.args == {"text": payload}
    body = page(waiting.get())
    for raw in (XSS_SCRIPT, XSS_ATTR, "<img", "<script"):
        assert raw not in body
    assert html.escape(XSS_SCRIPT) in body
    assert html.escape(XSS_ATTR) in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in body

    # the invalid-edit page echoes the user's text: escaped as well
    response = waiting.post({"by": XSS_ATTR, "decision": "edit", "args": '{"text": 1, "x": "' + XSS_SCRIPT + '"}'})
    assert response["statusCode"] == 400
    body = page(response)
    assert XSS_SCRIPT not in body
    assert XSS_ATTR not in body
    assert "<img" not in body

    response = waiting.post({"by": "ivy", "decision": "approve"})
    assert response["statusCode"] == 200, response["body"]
    assert fold(stack.wait(waiting.thread.id)).status == "done"
    assert kit.posted == [payload]


def test_question_and_context_from_the_model_are_escaped(stack: LocalStack) -> None:
    kit = NoteKit("x", question={"question": f"Ok? {XSS_SCRIPT}", "context": XSS_ATTR, "format": "yes_no"})
    kit.install(stack)
    waiting = wait_for_human(stack, "noter", "ask me")
    body = page(waiting.get())
    assert XSS_SCRIPT not in body
    assert XSS_ATTR not in body
    assert html.escape(f"Ok? {XSS_SCRIPT}") in body
    assert html.escape(XSS_ATTR) in body
    assert 'value="yes">yes</button>' in body


# --- refused links: each says why and changes nothing -------------------------------------------


def _flip(sig: str) -> str:
    return sig[:-1] + ("0" if sig[-1] != "0" else "1")


def _with(query: str, **values: str | None) -> str:
    parts = dict(p.split("=", 1) for p in query.split("&"))
    for key, value in values.items():
        if value is None:
            parts.pop(key, None)
        else:
            parts[key] = value
    return "&".join(f"{k}={v}" for k, v in parts.items())


def _sig(query: str) -> str:
    return dict(p.split("=", 1) for p in query.split("&"))["sig"]


def _exp(query: str) -> str:
    return dict(p.split("=", 1) for p in query.split("&"))["exp"]


def _refused(response: dict[str, Any], status: int, *phrases: str) -> str:
    assert response["statusCode"] == status, response["body"]
    assert SECURITY_HEADERS.items() <= response["headers"].items()
    body = page(response)
    assert "Nothing was changed." in body
    for phrase in phrases:
        assert phrase.lower() in html.unescape(body).lower()
    assert "<form" not in body
    return body


def test_wrong_signature_is_refused_with_403(deploy: Waiting) -> None:
    forged = _with(deploy.query, sig=_flip(_sig(deploy.query)))
    _refused(deploy.get(query=forged), 403, "This link is not valid", "signature is not valid")
    _refused(deploy.post({"by": "mallory", "decision": "approve"}, query=forged), 403, "signature is not valid")
    longer = _with(deploy.query, exp=str(int(_exp(deploy.query)) + 86_400))
    _refused(deploy.post({"by": "mallory", "decision": "approve"}, query=longer), 403, "signature is not valid")
    deploy.assert_unchanged()


@pytest.mark.parametrize("missing", ["sig", "exp"])
def test_missing_signature_or_expiry_is_refused_with_403(deploy: Waiting, missing: str) -> None:
    query = _with(deploy.query, **{missing: None})
    _refused(deploy.get(query=query), 403, "needs both 'exp' and 'sig'")
    _refused(deploy.post({"by": "mallory", "decision": "approve"}, query=query), 403, "needs both")
    _refused(deploy.post({"by": "mallory", "decision": "approve"}, query=""), 403, "needs both")
    deploy.assert_unchanged()


def test_expired_link_is_refused_with_410(deploy: Waiting) -> None:
    rt = deploy.stack.rt
    real = rt.clock
    later = real() + timedelta(seconds=rt.settings.approval_timeout_seconds + 1)
    rt.clock = lambda: later
    try:
        _refused(deploy.get(), 410, "This link has expired")
        _refused(deploy.post({"by": "alice", "decision": "approve"}), 410, "expired")
    finally:
        rt.clock = real
    deploy.assert_unchanged()


def test_reused_link_after_the_decision_is_refused_with_409_saying_by_whom(deploy: Waiting) -> None:
    assert deploy.post({"by": "alice", "decision": "approve"})["statusCode"] == 200
    final = deploy.stack.wait(deploy.thread.id)
    version = final.version
    _refused(
        deploy.post({"by": "bob", "decision": "reject", "comment": "no"}),
        409,
        "already answered",
        "already approved by alice",
    )
    _refused(deploy.get(), 409, "already approved by alice")
    assert deploy.stack.thread(deploy.thread.id).version == version
    assert deploy.sfn().successes == 1
    assert len(deploybot.SERVICE.deployments) == 1


def test_arguments_changed_after_the_link_was_made_are_refused_with_409(deploy: Waiting) -> None:
    ddb = deploy.stack.clients["dynamodb"]
    key = {"PK": {"S": f"APPROVAL#{deploy.approval.approval_id}"}, "SK": {"S": "META"}}
    doc = json.loads(ddb.get_item(TableName="stepfold-threads", Key=key)["Item"]["doc"]["S"])
    doc["args_hash"] = "0" * 64  # the record was made for other arguments than the thread's pending call
    ddb.update_item(
        TableName="stepfold-threads",
        Key=key,
        UpdateExpression="SET doc = :doc",
        ExpressionAttributeValues={":doc": {"S": json.dumps(doc)}},
    )
    _refused(deploy.get(), 409, "The request changed", "the tool call changed after this link was made")
    _refused(deploy.post({"by": "alice", "decision": "approve"}), 409, "tool call changed")
    deploy.assert_unchanged()
    assert deploybot.SERVICE.deployments == []


def test_unknown_approval_with_a_valid_signature_is_404(deploy: Waiting) -> None:
    exp = _exp(deploy.query)
    key = deploy.stack.rt.secrets.link_signing_key.encode()
    query = f"exp={exp}&sig={sign(key, 'apr_doesnotexist00', int(exp))}"
    _refused(deploy.get(approval_id="apr_doesnotexist00", query=query), 404, "There is no such request")
    _refused(
        deploy.post({"by": "alice", "decision": "approve"}, approval_id="apr_doesnotexist00", query=query),
        404,
        "no approval",
    )
    deploy.assert_unchanged()


def test_another_threads_approval_id_with_this_links_signature_is_403(stack: LocalStack) -> None:
    first = wait_for_human(stack, "deploybot", "deploy the latest backend to production")
    counting = first.sfn()
    second_thread = stack.launch("deploybot", "deploy the latest frontend to production")
    second_waiting = stack.wait(second_thread.id)
    found = stack.notifier.last_for(second_thread.id)
    assert found is not None
    second = Waiting(stack, second_waiting, found[0], found[1])
    assert second.approval_id != first.approval_id
    # first's signature and expiry, second's id
    _refused(first.get(approval_id=second.approval_id), 403, "signature is not valid")
    _refused(first.post({"by": "mallory", "decision": "approve"}, approval_id=second.approval_id), 403)
    for waiting in (first, second):
        waiting.assert_unchanged()
    assert counting.successes == 0


def test_unknown_route_gets_a_404_page_with_the_security_headers(stack: LocalStack) -> None:
    response = call(http_event("GET", "/approvals", {}))
    assert response["statusCode"] == 404
    assert SECURITY_HEADERS.items() <= response["headers"].items()
    assert "Page not found" in page(response)


# --- secrets stay out of pages and logs ----------------------------------------------------------


class _Records(logging.Handler):
    """Every record of the stepfold logger, with its extra fields, as text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.dumps(record.__dict__, default=str))


@pytest.fixture
def records() -> Iterator[_Records]:
    logger = logging.getLogger("stepfold")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_logs_never_hold_the_signature_or_the_task_token(deploy: Waiting, records: _Records) -> None:
    deploy.get()
    deploy.post({"by": "alice", "decision": "edit", "args": "{"})
    deploy.post({"by": "mallory", "decision": "approve"}, query=_with(deploy.query, sig=_flip(_sig(deploy.query))))
    deploy.post({"by": "alice", "decision": "approve"})
    deploy.stack.wait(deploy.thread.id)
    logs = "\n".join(records.lines)
    assert "human decision" in logs
    assert "approval link refused" in logs
    assert _sig(deploy.query) not in logs
    assert deploy.approval.task_token not in logs


def test_the_decision_is_audited_as_an_event(deploy: Waiting) -> None:
    deploy.post({"by": "alice", "decision": "approve", "comment": "ship it"})
    final = deploy.stack.wait(deploy.thread.id)
    answer = _response(final)
    assert (answer.by, answer.channel, answer.comment) == ("alice", "link", "ship it")
    assert answer.ts is not None
    assert sum(isinstance(e, LLMCall) for e in final.events) >= 2


class _BrokenThreads:
    def __init__(self, inner: Any, message: str) -> None:
        self.inner = inner
        self.message = message

    def load(self, thread_id: str) -> Thread:
        raise RuntimeError(self.message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_system_failure_gets_a_500_page_that_leaks_nothing(deploy: Waiting, records: _Records) -> None:
    rt = deploy.stack.rt
    rt.threads = _BrokenThreads(rt.threads, f"store down while reading {deploy.url}")
    response = deploy.get()
    assert response["statusCode"] == 500
    assert SECURITY_HEADERS.items() <= response["headers"].items()
    body = page(response)
    assert "Something went wrong" in body
    assert _sig(deploy.query) not in body
    logs = "\n".join(records.lines)
    assert "approval page failed" in logs
    assert "sig=[redacted]" in logs
    assert _sig(deploy.query) not in logs


class _TimedOutSfn(CountingSfn):
    def send_task_success(self, **kwargs: Any) -> Any:
        self.successes += 1
        raise self.inner.exceptions.TaskTimedOut(
            {"Error": {"Code": "TaskTimedOut", "Message": "Task Timed Out"}}, "SendTaskSuccess"
        )


def test_a_wait_that_already_ended_keeps_the_decision_and_says_so(deploy: Waiting) -> None:
    deploy.stack.rt.sfn = cast("SFNClient", _TimedOutSfn(deploy.sfn().inner))  # the client, whose wait ended
    response = deploy.post({"by": "alice", "decision": "approve"})
    assert response["statusCode"] == 200, response["body"]
    assert "had already ended" in page(response)
    assert _response(deploy.stack.thread(deploy.thread.id)).decision == "approve"
    assert deploy.stack.rt.approvals.get(deploy.approval.approval_id).state == "approved"


# --- issue 13: ended and paused threads, malformed links and forms -------------------------------------------------


def test_a_link_to_a_thread_cancelled_without_closing_its_record_is_refused_and_records_nothing(
    deploy: Waiting,
) -> None:
    # A cancel whose wait lookup missed the record (it was written a moment later) leaves it pending.
    from core.services.control import cancel  # noqa: PLC0415

    rt = deploy.stack.rt
    cancel(rt.threads, None, deploy.thread.id, by="ops", reason="wrong ticket", clock=rt.clock)
    before = deploy.stack.thread(deploy.thread.id)
    _refused(deploy.get(), 409, "can no longer be answered", "the thread was cancelled")
    _refused(deploy.post({"by": "alice", "decision": "approve"}), 409, "can no longer be answered")
    after = deploy.stack.thread(deploy.thread.id)
    assert after.version == before.version  # no decision after "failed"
    assert fold(after).status == "failed"
    assert rt.approvals.get(deploy.approval.approval_id).state == "cancelled"
    assert deploybot.SERVICE.deployments == []


def test_deciding_on_a_paused_thread_says_it_stays_paused(deploy: Waiting) -> None:
    from core.services.control import pause  # noqa: PLC0415

    rt = deploy.stack.rt
    pause(rt.threads, deploy.thread.id, by="ops", reason="change freeze", clock=rt.clock)
    response = deploy.post({"by": "alice", "decision": "approve"})
    assert response["statusCode"] == 200, response["body"]
    body = html.unescape(page(response))
    assert "the agent continues" not in body
    assert "Approved — recorded; the thread is paused" in body
    assert "it continues when the thread is resumed" in body
    assert fold(deploy.stack.wait(deploy.thread.id)).status == "paused"
    assert deploybot.SERVICE.deployments == []


@pytest.mark.parametrize("exp", ["%C2%B2", "1" * 5_000, "%D9%A1%D9%A2%D9%A3", "-1", "1e9"])
def test_a_link_whose_exp_is_not_ascii_digits_or_too_long_is_403_not_500(deploy: Waiting, exp: str) -> None:
    query = f"exp={exp}&sig={_sig(deploy.query)}"
    _refused(deploy.get(query=query), 403, "this link's 'exp' is not a time we wrote")
    _refused(deploy.post({"by": "mallory", "decision": "approve"}, query=query), 403, "not a time we wrote")
    deploy.assert_unchanged()


def test_a_form_with_more_fields_than_the_page_sends_is_400_not_500(deploy: Waiting) -> None:
    fields = {"by": "alice", "decision": "approve", **{f"f{i}": "x" for i in range(25)}}
    _refused(deploy.post(fields), 400, "more than 20 fields", "send the form from the page")
    deploy.assert_unchanged()
