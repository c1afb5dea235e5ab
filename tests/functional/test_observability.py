"""What a step tells CloudWatch: EMF metrics, structured log keys, and never a secret (Powertools output)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from core.kernel.events import LLMCall
from core.kernel.thread import fold, start_thread
from core.services.approvals import Decision
from functions import request_human as request_human_function
from functions import step as step_function
from functions._wiring import Settings
from infra.local.stack import LambdaContext, LocalStack
from tests.provider_server import ProviderServer, error


@pytest.fixture
def loud() -> Iterator[io.StringIO]:
    """The handlers' JSON log lines, at INFO, whatever level an earlier test left their loggers at."""
    sink = io.StringIO()
    loggers = (step_function.logger, request_human_function.logger)
    levels = [lg.log_level for lg in loggers]
    handler = logging.StreamHandler(sink)
    handler.setFormatter(step_function.logger.registered_formatter)
    for lg in loggers:
        lg.setLevel("INFO")
        lg._logger.addHandler(handler)
    yield sink
    for lg, level in zip(loggers, levels, strict=True):
        lg._logger.removeHandler(handler)
        lg.setLevel(level)


def _json_lines(text: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _metrics(lines: list[dict[str, Any]]) -> dict[str, list[tuple[dict[str, str], float]]]:
    """metric name -> [(dimensions, value)] from EMF lines."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in lines:
        meta = line.get("_aws")
        if not meta:
            continue
        for directive in meta["CloudWatchMetrics"]:
            dims = {d: line[d] for group in directive["Dimensions"] for d in group}
            for metric in directive["Metrics"]:
                values = line[metric["Name"]]
                for value in values if isinstance(values, list) else [values]:
                    found.setdefault(metric["Name"], []).append((dims, float(value)))
    return found


def test_a_step_emits_emf_metrics_and_structured_log_keys(
    stack: LocalStack, capsys: pytest.CaptureFixture[str], loud: io.StringIO
) -> None:
    rt = stack.rt
    thread = rt.threads.create(start_thread("th_obs", "calculator", "add 2 and 3", now=rt.now()))
    capsys.readouterr()
    result = step_function.handler(
        {"thread_id": thread.id, "seq": 1, "execution": "arn:aws:states:us-east-1:123456789012:execution:x:th_obs-1"},
        LambdaContext(function_name="StepFunction"),
    )
    lines = _json_lines(capsys.readouterr().out + loud.getvalue())
    metrics = _metrics(lines)
    llm = next(e for e in stack.thread(thread.id).events if isinstance(e, LLMCall))
    assert metrics["StepInvocations"][0][1] == 1
    assert metrics["Steps"] == [({"agent": "calculator", "service": "stepfold"}, 1.0)]
    model_dims = {"agent": "calculator", "model": "scripted:calculator", "service": "stepfold"}
    assert metrics["InputTokens"] == [(model_dims, float(llm.input_tokens))]
    assert metrics["OutputTokens"] == [(model_dims, float(llm.output_tokens))]
    [(cost_dims, cost)] = metrics["CostUSD"]
    assert cost_dims == model_dims
    assert cost == pytest.approx(llm.cost_usd)
    assert metrics["LLMLatency"][0][0] == model_dims
    assert metrics["ToolCalls"] == [
        ({"agent": "calculator", "tool": "add", "outcome": "ok", "service": "stepfold"}, 1.0)
    ]
    step_log = next(line for line in lines if line.get("message") == "step")
    assert step_log["correlation_id"] == "th_obs"
    assert step_log["agent"] == "calculator"
    assert step_log["seq"] == 1
    assert step_log["new_seq"] == result["seq"]
    assert step_log["route"] == "continue"
    assert step_log["execution"].endswith(":th_obs-1")
    assert step_log["function_name"] == "StepFunction"


def test_errors_and_approvals_are_counted_by_kind(
    stack: LocalStack, capsys: pytest.CaptureFixture[str], loud: io.StringIO
) -> None:
    capsys.readouterr()
    thread = stack.launch("deploybot", "deploy the latest backend to production")
    stack.wait(thread.id)
    metrics = _metrics(_json_lines(capsys.readouterr().out))
    assert ({"agent": "deploybot", "kind": "approval", "service": "stepfold"}, 1.0) in metrics["ApprovalsRequested"]
    tools = {(d["tool"], d["outcome"]) for d, _ in metrics["ToolCalls"]}
    assert ("list_git_tags", "ok") in tools


def test_no_secret_task_token_or_signature_reaches_the_logs(
    stack: LocalStack, capsys: pytest.CaptureFixture[str], loud: io.StringIO
) -> None:
    capsys.readouterr()
    thread = stack.launch("deploybot", "deploy the latest backend to production")
    stack.wait(thread.id)
    approval, url = stack.notifier.sent[-1]
    rt = stack.rt
    token = rt.approvals.get(approval.approval_id).task_token
    signature = url.split("sig=")[1]
    stack.decide(approval.approval_id, Decision(decision="approve", by="alice"))
    final = stack.wait(thread.id)
    assert fold(final).status == "done"
    stack.wait_idle()
    captured = capsys.readouterr()
    output = captured.out + captured.err + loud.getvalue()
    assert "human requested" in output, "the handlers did log"
    assert token
    assert token not in output
    assert signature not in output
    assert rt.secrets.link_signing_key not in output


def test_cost_totals_of_a_scripted_thread_match_its_model_calls(stack: LocalStack) -> None:
    thread = stack.launch("calculator", "multiply 3 and 4, then divide the result by 2 and then add 12")
    final = stack.wait(thread.id)
    calls = [e for e in final.events if isinstance(e, LLMCall)]
    state = fold(final)
    assert len(calls) == state.steps == 4
    assert state.cost_usd == pytest.approx(sum(c.cost_usd for c in calls))
    assert state.cost_usd > 0
    from core.kernel.pricing import cost_usd  # noqa: PLC0415

    for call in calls:
        assert call.cost_usd == pytest.approx(cost_usd(call.model, call.input_tokens, call.output_tokens))


def test_a_thread_its_execution_failed_is_counted_once_as_threads_failed_by_agent(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """The model's server answers HTTP 500 to every request (a local server speaking OpenAI's API, through the real
    adapter): the Step's retries run out, the Catch runs RecordFailure (functions/record_end.py), which counts
    ``ThreadsFailed`` with the agent's dimension. No step ever returns route ``failed`` here, so the count can only
    come from record_end. The EventBridge rule's second recording of the same end counts nothing."""
    with ProviderServer(default=error(500, "the model server is on fire"), lifetime_s=120) as server:
        rt = stack.configure({"OPENAI_API_KEY": "sk-test"})  # the key, read at first use as in Lambda
        rt.settings = Settings.model_validate(
            {
                **rt.settings.model_dump(by_alias=True),
                "STEPFOLD_MODEL": "openai:gpt-4o-mini",
                "OPENAI_BASE_URL": server.openai.base_url,
                "STEPFOLD_MODEL_TIMEOUT_SECONDS": 5.0,
            }
        )
        rt.use_provider_config(None)
        capsys.readouterr()
        thread = stack.launch("calculator", "add 2 and 3")
        final = stack.wait(thread.id, until=("failed",), timeout=60)
        stack.wait_idle()
        assert len(server.openai.requests) > 1, "the Step was retried before the execution gave up"
    assert fold(final).failure_error == "ModelUnavailable"
    arn = stack.execution_arn(thread.id)
    assert stack.execution_status(arn) == "FAILED"
    metrics = _metrics(_json_lines(capsys.readouterr().out))
    assert metrics.get("ThreadsFailed") == [({"agent": "calculator", "service": "stepfold"}, 1.0)]
    assert "ThreadsDone" not in metrics

    assert stack.execution_ended(arn) == [{"thread_id": thread.id, "recorded": False}]
    assert "ThreadsFailed" not in _metrics(_json_lines(capsys.readouterr().out)), "an end recorded twice counts once"
