"""Failure is truthful: every way a step fails in AWS is retried or recorded, through the real seams.

Each cell drives a whole thread through the real state machine on the local stack, with the fault injected
where production meets it: a local HTTP server speaking OpenAI's and Anthropic's wire formats for the model
(tests/provider_server.py, through the real httpx adapters), botocore event hooks returning the real error
shapes for Bedrock and DynamoDB, and the Lambda runtime's own error names through moto's Lambda. The outcome
of each cell is one of: finished, failed with a reason (recorded on the thread, the execution FAILED), or
waiting for a human. No cell may end with a thread that says ``running`` and has no execution.

The matrix is printed at the end of the module (``-s`` or the CI log shows it).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from pydantic import BaseModel, ConfigDict

from agents import AGENTS, scripted_model
from core.adapters.llm import ProviderConfig
from core.adapters.llm.scripted import Say, ScriptedLLM
from core.kernel.agent import Agent, Limits
from core.kernel.events import Error, Failed, HumanRequest, Retried
from core.kernel.thread import Thread, fold
from core.kernel.tools import Tool
from core.services.approvals import Decision, ThreadEndedError
from core.services.notify import SIGNATURE_HEADER, verify_webhook
from functions._wiring import Settings, build_notifier
from infra.local.stack import LocalStack
from tests.functional.conftest import Shared
from tests.provider_server import (
    Answer,
    ProviderServer,
    delay,
    error,
    insufficient_quota,
    overloaded,
    rate_limited,
    tool_call,
    truncated,
)

RESULTS: list[tuple[str, str, str]] = []
MODELS = {"openai": "openai:gpt-4o-mini", "anthropic": "anthropic:claude-sonnet-4-5"}
ENV = {
    "POWERTOOLS_LOG_LEVEL": "CRITICAL",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "OPENAI_API_KEY": "sk-test",
    "ANTHROPIC_API_KEY": "sk-ant-test",
}


@dataclass
class World:
    stack: LocalStack
    server: ProviderServer


@pytest.fixture(scope="module")
def world(shared: Shared) -> Iterator[World]:
    with ProviderServer(lifetime_s=900) as server, shared.lease(ENV) as stack:
        yield World(stack, server)


@pytest.fixture
def w(world: World) -> Iterator[World]:
    """The shared stack with its model, settings and agents as they were, whatever a test changed."""
    rt = world.stack.rt
    settings, agents, config, notifier = rt.settings, rt.agents, rt.provider_config, rt.notifier
    yield world
    world.server.openai.requests.clear()
    world.server.anthropic.requests.clear()
    rt.settings, rt.agents, rt.notifier = settings, agents, notifier
    rt.use_provider_config(config)
    world.stack.wait_idle()


def _use(w: World, provider: str, **settings: Any) -> None:
    """Every agent runs on ``provider``'s model, served by the local provider server, with a 1 s read timeout."""
    rt = w.stack.rt
    rt.settings = Settings.model_validate(
        {
            **rt.settings.model_dump(by_alias=True),
            "STEPFOLD_MODEL": MODELS[provider],
            "OPENAI_BASE_URL": w.server.openai.base_url,
            "ANTHROPIC_BASE_URL": w.server.anthropic.base_url,
            "STEPFOLD_MODEL_TIMEOUT_SECONDS": 1.0,
            **settings,
        }
    )
    rt.use_provider_config(None)


def _run(w: World, *, until: tuple[str, ...] = ("done", "failed", "awaiting_human"), timeout: float = 60) -> Thread:
    thread = w.stack.launch("calculator", "add 2 and 3")
    final = w.stack.wait(thread.id, until=until, timeout=timeout)
    w.stack.wait_idle()
    return final


def _execution(w: World, thread: Thread) -> str:
    arns = [
        e
        for e in w.stack.clients["stepfunctions"].list_executions(stateMachineArn=w.stack.state_machine_arn)[
            "executions"
        ]
        if e["name"].startswith(f"{thread.id}-")
    ]
    return str(sorted(arns, key=lambda e: e["startDate"])[-1]["status"])


def _outcome(w: World, thread: Thread) -> str:
    """The cell's outcome as the matrix prints it, after checking it is truthful."""
    state = fold(thread)
    status = _execution(w, thread)
    assert not (state.status == "running" and status != "RUNNING"), "a running thread with no execution"
    if state.status == "done":
        assert status == "SUCCEEDED"
        return "finished"
    if state.status == "failed":
        assert status == "FAILED"
        assert state.failure_error, "a failed thread says which error ended it"
        return f"failed: {state.failure_error}"
    if state.status == "awaiting_human":
        return "waiting for a human"
    return state.status


def _record(fault: str, provider: str, outcome: str) -> None:
    RESULTS.append((fault, provider, outcome))


# --- the model, on the wire -----------------------------------------------------------------------------------

ONCE: dict[str, Any] = {
    "429": lambda: rate_limited(retry_after=0),
    "500": lambda: error(500),
    "503": lambda: error(503),
    "529 / overloaded": overloaded,
    "timeout": lambda: delay(3),
}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("fault", list(ONCE))
def test_a_transient_model_fault_is_retried_and_the_thread_finishes(w: World, provider: str, fault: str) -> None:
    _use(w, provider)
    script = w.server.script(provider)  # type: ignore[arg-type]
    answer: Answer = ONCE[fault]()
    script.push(answer)
    final = _run(w)
    assert _outcome(w, final) == "finished"
    assert len(script.requests) == 2, "one failed request, then the retry"
    _record(f"model {fault} once", provider, "finished")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_model_that_keeps_failing_fails_the_thread_with_the_reason(w: World, provider: str) -> None:
    _use(w, provider)
    script = w.server.script(provider)  # type: ignore[arg-type]
    script.push(*(error(500, "the model server is on fire") for _ in range(4)))  # first try + 3 retries
    final = _run(w)
    assert _outcome(w, final) == "failed: ModelUnavailable"
    state = fold(final)
    assert "the model server is on fire" in (state.failure or "")
    assert "HTTP 500" in (state.failure or "")
    assert "retry" in (state.failure or ""), "the reason says how to recover"
    failed = [e for e in final.events if isinstance(e, Failed)]
    assert failed[-1].execution
    assert failed[-1].execution.endswith(f"{final.id}-1")
    alerts = [a for a in w.stack.notifier.alerts if a.thread_id == final.id]
    assert alerts
    assert "ModelUnavailable" in alerts[0].title
    assert alerts[0].url.endswith(f"/threads/{final.id}/view")
    _record("model 500 until retries run out", provider, _outcome(w, final))


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_truncated_output_is_an_error_the_model_sees_then_it_finishes(w: World, provider: str) -> None:
    _use(w, provider)
    script = w.server.script(provider)  # type: ignore[arg-type]
    script.push(truncated("add", {"a": 2, "b": 3}))
    final = _run(w)
    errors = [e for e in final.events if isinstance(e, Error)]
    assert [e.kind for e in errors] == ["output_truncated"]
    assert "token" in errors[0].message
    assert _outcome(w, final) == "finished"
    _record("truncated output", provider, "finished (output_truncated error, then the model retried)")


def test_insufficient_quota_is_not_retried_and_asks_a_human(w: World) -> None:
    _use(w, "openai")
    w.server.openai.push(*(insufficient_quota() for _ in range(3)))
    final = _run(w)
    errors = [e for e in final.events if isinstance(e, Error)]
    assert [e.kind for e in errors] == ["llm_error"] * 3
    assert "quota" in errors[0].message
    assert len(w.server.openai.requests) == 3, "each step asked once: Step Functions retried nothing"
    assert _outcome(w, final) == "waiting for a human"
    _record("insufficient_quota", "openai", "waiting for a human (3 errors in a row)")


# --- Bedrock, through botocore ----------------------------------------------------------------------------------


class _Response:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.headers: dict[str, str] = {}
        self.content = b""
        self.raw = None


def _converse_ok(tool: str, args: dict[str, Any], stop: str = "tool_use") -> dict[str, Any]:
    return {
        "output": {
            "message": {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": tool, "input": args}}]}
        },
        "stopReason": stop,
        "usage": {"inputTokens": 100, "outputTokens": 10, "totalTokens": 110},
        "metrics": {"latencyMs": 5},
        "ResponseMetadata": {"HTTPStatusCode": 200},
    }


def _bedrock(answers: list[tuple[int, dict[str, Any]]]) -> tuple[Any, list[int]]:
    """A real bedrock-runtime client whose Converse calls get ``answers`` in order, then a done_for_now."""
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    calls: list[int] = []
    lock = threading.Lock()

    def answer(**_: Any) -> Any:
        with lock:
            calls.append(1)
            status, body = answers.pop(0) if answers else (200, _converse_ok("done_for_now", {"answer": "done"}))
        return _Response(status), body

    client.meta.events.register("before-call.bedrock-runtime.Converse", answer)
    return client, calls


def _bedrock_error(code: str, status: int, message: str = "injected") -> tuple[int, dict[str, Any]]:
    return status, {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}


def _use_bedrock(w: World, client: Any) -> None:
    rt = w.stack.rt
    rt.settings = Settings.model_validate(
        {**rt.settings.model_dump(by_alias=True), "STEPFOLD_MODEL": "bedrock:anthropic.claude-3-haiku-20240307-v1:0"}
    )
    rt.use_provider_config(ProviderConfig(bedrock_client=client))


@pytest.mark.parametrize(
    "fault",
    [
        ("ThrottlingException", 429),
        ("ServiceUnavailableException", 503),
        ("InternalServerException", 500),
        ("ModelTimeoutException", 408),
        ("ModelNotReadyException", 429),
    ],
    ids=lambda f: f[0],
)
def test_bedrock_transient_faults_are_retried(w: World, fault: tuple[str, int]) -> None:
    client, calls = _bedrock([_bedrock_error(*fault)])
    _use_bedrock(w, client)
    final = _run(w)
    assert _outcome(w, final) == "finished"
    assert len(calls) == 2
    _record(f"bedrock {fault[0]} once", "bedrock", "finished")


def test_bedrock_max_tokens_is_a_truncation_error(w: World) -> None:
    client, _ = _bedrock([(200, _converse_ok("add", {"a": 2}, stop="max_tokens"))])
    _use_bedrock(w, client)
    final = _run(w)
    assert [e.kind for e in final.events if isinstance(e, Error)] == ["output_truncated"]
    assert _outcome(w, final) == "finished"
    _record("truncated output", "bedrock", "finished (output_truncated error, then the model retried)")


# --- AWS and Lambda faults ----------------------------------------------------------------------------------------


def test_a_dynamodb_write_throttled_once_is_retried(w: World) -> None:
    """The step's intent commit (a conditional PutItem of the next item: the status does not change) is throttled
    once, with the error shape DynamoDB sends; Step Functions retries the step and it finishes."""
    _use(w, "openai")
    w.server.openai.push(tool_call("add", {"a": 2, "b": 3}))
    ddb = w.stack.rt.clients["dynamodb"]
    fired: list[bool] = []

    def throttle(params: dict[str, Any], **_: Any) -> Any:
        body = params.get("body") or b""
        body = body if isinstance(body, bytes) else body.encode()
        if b'tool_call"}' in body.replace(b" ", b"") and not fired:
            fired.append(True)
            return _Response(400), {
                "Error": {
                    "Code": "ProvisionedThroughputExceededException",
                    "Message": "The level of configured provisioned throughput for the table was exceeded.",
                },
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
        return None

    ddb.meta.events.register("before-call.dynamodb.PutItem", throttle, unique_id="truth-throttle")
    try:
        final = _run(w)
    finally:
        ddb.meta.events.unregister("before-call.dynamodb.PutItem", unique_id="truth-throttle")
    assert fired
    assert _outcome(w, final) == "finished"
    _record("DynamoDB write throttled once", "-", "finished")


@pytest.mark.parametrize("error_type", ["Sandbox.Timedout", "Runtime.OutOfMemory", "Lambda.Unknown"])
def test_a_step_the_lambda_runtime_killed_is_retried(w: World, error_type: str) -> None:
    stack = w.stack
    _use(w, "openai")
    fired: list[str] = []
    original = stack._invoke

    def invoke(function_name: str, body: Any, response_headers: dict[str, str]) -> bytes:
        """What Lambda answers when the runtime died: an Unhandled function error with the runtime's own name."""
        if function_name.endswith("StepFunction") and not fired:
            fired.append(error_type)
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": error_type, "errorMessage": "injected by the test"}).encode()
        return original(function_name, body, response_headers)

    stack._invoke = invoke  # type: ignore[method-assign]
    try:
        final = _run(w)
    finally:
        stack._invoke = original  # type: ignore[method-assign]
    assert fired
    assert _outcome(w, final) == "finished"
    _record(f"Lambda {error_type}", "-", "finished")


def test_an_unknown_route_is_recorded(w: World) -> None:
    stack = w.stack
    _use(w, "openai")
    w.server.openai.push(tool_call("add", {"a": 2, "b": 3}))  # a step that would continue
    original = stack._invoke

    def invoke(function_name: str, body: Any, response_headers: dict[str, str]) -> bytes:
        answer = original(function_name, body, response_headers)
        if function_name.endswith("StepFunction") and "x-amz-function-error" not in response_headers:
            result = json.loads(answer)
            return json.dumps({**result, "route": "sideways"}).encode()
        return answer

    stack._invoke = invoke  # type: ignore[method-assign]
    try:
        final = _run(w, until=("failed",))
    finally:
        stack._invoke = original  # type: ignore[method-assign]
    assert _outcome(w, final) == "failed: UnknownRoute"
    _record("unknown route (contract bug)", "-", "failed: UnknownRoute")


# --- the human-request notification, on the wire --------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    path: str
    signature: str
    body: bytes


class FailingReceiver:
    """A real local HTTP server standing in for the notification webhook's receiver: it answers the first
    ``failures`` POSTs (every one, by default) with HTTP 500, the rest with 200, and keeps what arrived."""

    def __init__(self, failures: int | None = None) -> None:
        self.deliveries: list[Delivery] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.deliveries.append(Delivery(self.path, self.headers.get(SIGNATURE_HEADER) or "", body))
                failing = failures is None or len(receiver.deliveries) <= failures
                answer = b"receiver is down for maintenance" if failing else b"ok"
                self.send_response(500 if failing else 200)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/hooks/stepfold"
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FailingReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(d.body) for d in self.deliveries]


def _retrier(w: World, state: str, error: str) -> dict[str, Any]:
    """The Retry of ``state`` that lists ``error``, in the definition the stack's executions run."""
    sfn = w.stack.clients["stepfunctions"]
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=w.stack.state_machine_arn)["definition"])
    (retrier,) = [r for r in definition["States"][state]["Retry"] if error in r["ErrorEquals"]]
    return dict(retrier)


def test_a_notification_webhook_that_keeps_failing_fails_the_thread_with_notify_failed(w: World) -> None:
    """deploybot asks for approval; the configured notification webhook (the production channel built by
    ``build_notifier`` from its URL and signing secret) is a local server answering HTTP 500 to every delivery.
    request_human raises, the boundary names it NotifyFailed, WaitForHuman retries it until its retries run out, and
    the Catch records the failure: the thread ends ``failed`` with error NotifyFailed and the channel's answer as
    the cause, never left ``awaiting_human`` with nobody told and no execution."""
    stack, rt = w.stack, w.stack.rt
    secret = "notify-functional-secret"
    with FailingReceiver() as receiver:
        settings = rt.settings.model_copy(update={"notify_webhook_url": receiver.url})
        rt.notifier = build_notifier(settings, rt.secrets.model_copy(update={"notify_webhook_secret": secret}))
        thread = stack.launch("deploybot", "deploy the latest backend to production")
        assert stack.wait_execution(stack.execution_arn(thread.id), timeout=60) == "FAILED"
        stack.wait_idle()
    final = stack.thread(thread.id)
    state = fold(final)
    assert state.status == "failed", f"the execution ended; the thread says {state.status}"

    retrier = _retrier(w, "WaitForHuman", "NotifyFailed")
    attempts = retrier["MaxAttempts"]
    assert attempts >= 1
    kinds = [p["type"] for p in receiver.payloads()]
    assert kinds == ["approval_requested"] * (attempts + 1) + ["thread_failed"], "each try, then the failure alert"
    assert {d.path for d in receiver.deliveries} == {"/hooks/stepfold"}
    for d in receiver.deliveries:  # the HMAC over its own timestamp (the receiver's clock is no part of this test)
        sent_at = int(dict(part.split("=", 1) for part in d.signature.split(","))["t"])
        assert verify_webhook(secret, d.signature, d.body, now=sent_at), "each delivery is signed with the secret"
    waits = [r for r in stack.retry_waits if r.execution == f"{thread.id}-1" and r.state == "WaitForHuman"]
    assert [r.retry for r in waits] == list(range(1, attempts + 1)), "WaitForHuman's own Retry, not the Step's"

    assert _outcome(w, final) == "failed: NotifyFailed"
    failure = state.failure or ""
    assert "HTTP 500" in failure
    assert "receiver is down for maintenance" in failure, "the channel's answer is the cause"
    assert "webhook to 127.0.0.1" in failure
    assert "retry" in failure, "the reason says how to recover"
    assert secret not in failure
    assert receiver.url not in failure, "the channel's URL is redacted to its host"
    failed = [e for e in final.events if isinstance(e, Failed)]
    assert len(failed) == 1
    assert failed[0].error == "NotifyFailed"
    assert (failed[0].execution or "").endswith(f"{thread.id}-1")
    (request,) = [e for e in final.events if isinstance(e, HumanRequest)]
    assert failed[0].seq > request.seq, "recorded after the request nobody heard of"
    with pytest.raises(ThreadEndedError):  # the request's record stays for a retry; nobody can answer it now
        stack.decide(request.approval_id, Decision(decision="approve", by="alice"))
    assert stack.thread(thread.id).version == final.version, "nothing was recorded after the failure"

    for status in ("running", "awaiting_human"):
        rows, _ = rt.threads.list_threads(status=status)  # type: ignore[attr-defined]
        assert thread.id not in [r.thread_id for r in rows], f"the listing still says {status}"
    assert stack.running_executions(thread.id) == []
    assert stack.execution_status(stack.execution_arn(thread.id)) == "FAILED"
    _record("notification webhook 500 until retries run out", "-", f"failed: {state.failure_error}")


def test_a_notification_that_fails_once_is_sent_again_and_the_thread_waits_for_its_human(w: World) -> None:
    """The webhook answers 500 once, then 200: WaitForHuman's retry calls request_human again, which stores a new
    task token and notifies again, and the execution waits on that token (not on the first attempt's, which no
    one will ever answer): the approval resumes the thread to done."""
    stack, rt = w.stack, w.stack.rt
    with FailingReceiver(failures=1) as receiver:
        settings = rt.settings.model_copy(update={"notify_webhook_url": receiver.url})
        rt.notifier = build_notifier(settings, rt.secrets.model_copy(update={"notify_webhook_secret": "s"}))
        thread = stack.launch("deploybot", "deploy the latest backend to production")
        deadline = time.monotonic() + 30  # the stack's wait knows links sent by its recording notifier, not this one
        while len(receiver.deliveries) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        stack.wait_idle()
        waiting = stack.thread(thread.id)
        assert fold(waiting).status == "awaiting_human"
        assert [p["type"] for p in receiver.payloads()] == ["approval_requested"] * 2
        execution = stack.execution_arn(thread.id)
        assert stack.execution_status(execution) == "RUNNING", "parked on the second attempt's token"
        waits = [r for r in stack.retry_waits if r.execution == f"{thread.id}-1" and r.state == "WaitForHuman"]
        assert [r.retry for r in waits] == [1]
        request = fold(waiting).open_request
        assert request is not None
        stack.decide(request.approval_id, Decision(decision="approve", by="alice"))
        final = stack.wait(thread.id)
    assert fold(final).status == "done", fold(final).failure
    assert stack.wait_execution(execution) == "SUCCEEDED"
    _record("notification webhook 500 once", "-", "finished")


# --- the history limit, aborts, recovery ----------------------------------------------------------------------------


class CountArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int


def _counter_brain(request: Any) -> Say:
    done = sum(1 for e in request.events if getattr(e, "type", "") == "tool_result")
    return Say("count", {"n": done + 1}) if done < 29 else Say("done_for_now", {"answer": f"counted to {done}"})


def test_a_thirty_step_thread_continues_across_executions(w: World) -> None:
    counter = Agent(
        name="counter",
        description="counts to thirty, one step at a time",
        prompt_id="calculator",
        prompt_version=1,
        model="scripted:counter",
        tools=(Tool("count", "Count one more.", CountArgs, lambda args, _: {"n": args.n}, idempotent=True),),
        limits=Limits(max_steps=40, max_repeats=40, max_stale_results=40),
    )
    brain = ScriptedLLM(_counter_brain, name="counter")
    stack, rt = w.stack, w.stack.rt
    short_loop = stack.add_state_machine("short-loop", MaxIterations=10)
    rt.settings = rt.settings.model_copy(update={"state_machine_arn": short_loop})
    rt.agents = {**AGENTS, "counter": counter}
    rt.use_provider_config(ProviderConfig(scripted=lambda n: brain if n == "counter" else scripted_model(n)))
    thread = stack.launch("counter", "count to thirty")
    final = stack.wait(thread.id, until=("done", "failed"), timeout=120)
    stack.wait_idle()
    executions = [
        e
        for e in stack.clients["stepfunctions"].list_executions(stateMachineArn=short_loop)["executions"]
        if e["name"].startswith(f"{thread.id}-")
    ]
    assert fold(final).status == "done", fold(final).failure
    assert fold(final).steps == 30
    assert len(executions) >= 3
    assert {e["status"] for e in executions} == {"SUCCEEDED"}
    _record("history limit (30 steps, MaxIterations 10)", "-", f"finished across {len(executions)} executions")


class Nothing(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _bulky_brain(request: Any) -> Say:
    ran = [e.tool for e in request.events if getattr(e, "type", "") == "tool_result"]
    if not ran:
        return Say("report", {})
    if ran == ["report"]:
        return Say("tidy", {})
    return Say("done_for_now", {"answer": "read the report"})


def test_a_payload_missing_from_s3_fails_the_thread_and_says_where(w: World) -> None:
    """A 40 KB result lives in S3; its object is deleted (a lifecycle rule, a hand) and the next step runs in a new
    container, which must read it: the thread cannot be read, so its header is marked failed and people told."""
    stack, rt = w.stack, w.stack.rt
    s3 = stack.clients["s3"]

    def tidy(_: Nothing, ctx: Any) -> dict[str, Any]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=rt.settings.bucket):
            for item in page.get("Contents", []):
                s3.delete_object(Bucket=rt.settings.bucket, Key=item["Key"])
        rt.threads._cache.clear()  # type: ignore[attr-defined]  # the next step runs in a new container
        return {"tidied": True}

    bulky = Agent(
        name="bulky",
        description="writes a big report, then someone tidies S3",
        prompt_id="calculator",
        prompt_version=1,
        model="scripted:bulky",
        tools=(
            Tool("report", "A big report.", Nothing, lambda _, __: {"report": "r" * 40_000}, idempotent=True),
            Tool("tidy", "Delete objects.", Nothing, tidy, idempotent=True),
        ),
    )
    brain = ScriptedLLM(_bulky_brain, name="bulky")
    rt.agents = {**AGENTS, "bulky": bulky}
    rt.use_provider_config(ProviderConfig(scripted=lambda n: brain if n == "bulky" else scripted_model(n)))
    thread = stack.launch("bulky", "write the report")
    assert stack.wait_execution(stack.execution_arn(thread.id), timeout=60) == "FAILED"
    rows, _ = rt.threads.list_threads(status="failed", agent="bulky")  # type: ignore[attr-defined]
    assert [r.thread_id for r in rows] == [thread.id], "the listing says failed, not running"
    header = stack.clients["dynamodb"].get_item(
        TableName=rt.settings.table, Key={"PK": {"S": f"THREAD#{thread.id}"}, "SK": {"S": "META"}}
    )["Item"]
    assert header["failure_error"]["S"] == "Unrecoverable"
    assert "is missing" in header["failure"]["S"]
    assert "cannot be read" in header["failure"]["S"]
    alerts = [a for a in stack.notifier.alerts if a.thread_id == thread.id]
    assert alerts
    assert alerts[0].agent == "bulky"
    _record("S3 payload object missing", "-", "failed: Unrecoverable (header marked; events unreadable)")


def test_an_aborted_execution_is_recorded_through_the_event_rule(w: World) -> None:
    stack = w.stack
    thread = stack.launch("deploybot", "deploy the latest backend to production")
    waiting = stack.wait(thread.id, until=("awaiting_human",), timeout=30)
    arn = stack.execution_arn(thread.id)
    stack.clients["stepfunctions"].stop_execution(executionArn=arn)
    answers = stack.execution_ended(arn)
    assert answers == [{"thread_id": thread.id, "recorded": True, "seq": waiting.version}]
    final = stack.thread(thread.id)
    state = fold(final)
    assert state.status == "failed"
    assert state.failure_error == "ExecutionAborted"
    assert "ABORTED" in (state.failure or "")
    assert stack.execution_ended(arn) == [{"thread_id": thread.id, "recorded": False}], "recording twice is harmless"
    _record("execution aborted", "-", f"failed: {state.failure_error}")


def test_a_timed_out_execution_is_recorded_through_the_event_rule(w: World) -> None:
    """An execution that runs out of time (Step Functions ``TIMED_OUT``: the state machine's ``TimeoutSeconds``) ends
    with no Catch running, so only the EventBridge rule can record it, as it does an abort. moto's engine does time an
    execution out: the deployed loop (the real ASL, with the stack's substitutions) gets a top-level
    ``TimeoutSeconds`` of 1 for this test, and the first step's Lambda is held until the execution has timed out (a
    step still running when the time is up; the engine then ignores its answer). The thread, left ``running`` with no
    execution, is recorded ``failed`` through the template's rule and functions/record_end.py, exactly the path of
    ``test_an_aborted_execution_is_recorded_through_the_event_rule``."""
    stack = w.stack
    sfn = stack.clients["stepfunctions"]
    machine = stack.state_machine_arn
    deployed = sfn.describe_state_machine(stateMachineArn=machine)["definition"]
    assert "TimeoutSeconds" not in json.loads(deployed), "the loop as deployed has no execution timeout of its own"
    timed = json.dumps({**json.loads(deployed), "TimeoutSeconds": 1})
    time_is_up = threading.Event()
    held: list[str] = []
    original = stack._invoke

    def invoke(function_name: str, body: Any, response_headers: dict[str, str]) -> bytes:
        if function_name.endswith("StepFunction") and not held:
            held.append(function_name)
            time_is_up.wait(timeout=60)
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out"}).encode()
        return original(function_name, body, response_headers)

    stack._invoke = invoke  # type: ignore[method-assign]
    sfn.update_state_machine(stateMachineArn=machine, definition=timed)
    try:
        thread = stack.launch("calculator", "add 2 and 3")
        arn = stack.execution_arn(thread.id)
        assert stack.wait_execution(arn, timeout=30) == "TIMED_OUT"
        assert held, "the step was still running when the execution timed out"
        assert fold(stack.thread(thread.id)).status == "running", "no Catch ran: the thread says running, no execution"
        answers = stack.execution_ended(arn)
    finally:
        time_is_up.set()
        stack._invoke = original  # type: ignore[method-assign]
        sfn.update_state_machine(stateMachineArn=machine, definition=deployed)
    assert answers == [{"thread_id": thread.id, "recorded": True, "seq": thread.version}]
    final = stack.thread(thread.id)
    state = fold(final)
    assert state.status == "failed"
    assert state.failure_error == "ExecutionTimedOut"
    assert "TIMED_OUT" in (state.failure or "")
    failed = [e for e in final.events if isinstance(e, Failed)]
    assert [e.execution for e in failed] == [arn]
    alerts = [a for a in stack.notifier.alerts if a.thread_id == thread.id]
    assert [a.title for a in alerts] == [f"calculator: thread {thread.id} failed (ExecutionTimedOut)"]
    assert stack.execution_ended(arn) == [{"thread_id": thread.id, "recorded": False}], "recording twice is harmless"
    _record("execution timed out", "-", f"failed: {state.failure_error}")


def test_a_failed_thread_is_retried_from_where_it_stopped(w: World) -> None:
    _use(w, "openai")
    w.server.openai.push(tool_call("add", {"a": 2, "b": 3}), *(error(503) for _ in range(4)))
    failed = _run(w)
    assert _outcome(w, failed) == "failed: ModelUnavailable"
    from core.services import control  # noqa: PLC0415

    rt = w.stack.rt
    control.retry(rt.threads, rt.executions, failed.id, by="alice", clock=rt.clock)
    final = w.stack.wait(failed.id, until=("done", "failed"), timeout=60)
    w.stack.wait_idle()
    assert _outcome(w, final) == "finished"
    retried = [e for e in final.events if isinstance(e, Retried)]
    assert [e.by for e in retried] == ["alice"]
    assert sum(1 for e in final.events if getattr(e, "tool", None) == "add" and e.type == "tool_result") == 1


def test_print_the_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last in this module: the fault x provider -> outcome matrix the tests above filled in."""
    if not RESULTS:
        pytest.skip("run together with the tests above")
    width = max(len(f) for f, _, _ in RESULTS)
    lines = [f"{'fault':<{width}}  {'provider':<9}  outcome", "-" * (width + 60)]
    lines += [f"{f:<{width}}  {p:<9}  {o}" for f, p, o in RESULTS]
    with capsys.disabled():
        print("\n" + "\n".join(lines))
