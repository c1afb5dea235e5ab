"""AnthropicMessages against httpx.MockTransport: the request it sends, the answers it reads, the errors it maps."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.adapters.llm import (
    ContextWindowExceededError,
    LLMRequest,
    LLMRequestError,
    ProviderConfig,
    RetryableLLMError,
    ToolSpec,
    make_llm,
)
from core.adapters.llm._http import RetryableHTTPError
from core.adapters.llm.anthropic import AnthropicMessages
from tests.provider_server import (
    Answer,
    ProviderServer,
    context_too_long,
    delay,
    disconnect,
    error,
    insufficient_quota,
    overloaded,
    rate_limited,
    raw,
    refusal,
    stop,
    text,
    tool_call,
    truncated,
)

FIXTURES = Path(__file__).parent / "fixtures" / "llm"

ADD = ToolSpec(
    name="add",
    description="Add two numbers.",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    },
)
REQUEST = LLMRequest(
    model="anthropic:claude-sonnet-4-5",
    system="You are a calculator.",
    context="<user_input>what is 2 + 40?</user_input>",
    tools=(ADD,),
    max_output_tokens=512,
)

Handler = Callable[[httpx.Request], httpx.Response]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


class Recorder:
    """A MockTransport handler that answers with one canned response and keeps the requests it saw."""

    def __init__(self, response: httpx.Response | Handler) -> None:
        self.requests: list[httpx.Request] = []
        self._response = response

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._response(request) if callable(self._response) else self._response

    @property
    def body(self) -> Any:
        return json.loads(self.requests[-1].content)


def messages(recorder: Recorder, *, api_key: str | None = "sk-ant-test") -> AnthropicMessages:
    client = httpx.Client(transport=httpx.MockTransport(recorder))
    return AnthropicMessages(
        "claude-sonnet-4-5", base_url="https://api.anthropic.com/", api_key=api_key, client=client, timeout_s=5.0
    )


def test_tool_use_block_is_parsed_with_input_object_text_and_usage() -> None:
    recorder = Recorder(httpx.Response(200, json=fixture("anthropic_messages_tool_use")))

    response = messages(recorder).complete(REQUEST)

    assert response.tool == "add"
    assert response.arguments == {"a": 2, "b": 40}
    assert response.text == "I'll add the two numbers."
    assert (response.usage.input_tokens, response.usage.output_tokens) == (412, 57)
    assert response.model == "anthropic:claude-sonnet-4-5-20250929"


def test_request_forces_exactly_one_tool_use() -> None:
    recorder = Recorder(httpx.Response(200, json=fixture("anthropic_messages_tool_use")))

    messages(recorder).complete(REQUEST)

    [sent] = recorder.requests
    assert sent.method == "POST"
    assert str(sent.url) == "https://api.anthropic.com/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-test"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers
    assert recorder.body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "system": "You are a calculator.",
        "messages": [{"role": "user", "content": "<user_input>what is 2 + 40?</user_input>"}],
        "tools": [{"name": "add", "description": "Add two numbers.", "input_schema": ADD.parameters}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }


def test_empty_system_and_missing_key_are_left_out() -> None:
    recorder = Recorder(httpx.Response(200, json=fixture("anthropic_messages_tool_use")))
    request = LLMRequest(model=REQUEST.model, system="", context="hi", tools=(ADD,))

    messages(recorder, api_key=None).complete(request)

    assert "system" not in recorder.body
    assert "x-api-key" not in recorder.requests[0].headers
    assert recorder.body["max_tokens"] == 1024


def test_text_only_answer_has_no_tool() -> None:
    recorder = Recorder(httpx.Response(200, json=fixture("anthropic_messages_text_only")))

    response = messages(recorder).complete(REQUEST)

    assert response.tool is None
    assert response.text == "2 + 40 is 42."
    assert response.usage.output_tokens == 11


def test_rate_limit_is_retryable_with_message_and_retry_after() -> None:
    recorder = Recorder(httpx.Response(429, json=fixture("anthropic_error_rate_limit"), headers={"retry-after": "20"}))

    with pytest.raises(RetryableHTTPError) as caught:
        messages(recorder).complete(REQUEST)

    err = caught.value
    assert isinstance(err, RetryableLLMError)
    assert (err.provider, err.status, err.retry_after_s) == ("anthropic", 429, 20.0)
    assert err.detail.startswith("rate_limit_error: This request would exceed the rate limit")
    assert err.detail.endswith("; retry after 20s")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        pytest.param(
            500,
            {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}},
            "api_error: Internal server error",
            id="500",
        ),
        pytest.param(529, fixture("anthropic_error_overloaded"), "overloaded_error: Overloaded", id="529"),
        pytest.param(
            503,
            {"type": "error", "error": {"type": "api_error", "message": "Service unavailable"}},
            "api_error: Service unavailable",
            id="503",
        ),
    ],
)
def test_server_errors_are_retryable(status: int, body: dict[str, Any], expected: str) -> None:
    recorder = Recorder(httpx.Response(status, json=body))

    with pytest.raises(RetryableLLMError) as caught:
        messages(recorder).complete(REQUEST)

    assert caught.value.status == status
    assert caught.value.detail == expected


@pytest.mark.parametrize(
    ("status", "name", "expected"),
    [
        pytest.param(
            400, "anthropic_error_invalid_request", "invalid_request_error: max_tokens: 100000 > 64000", id="400"
        ),
        pytest.param(401, "anthropic_error_authentication", "authentication_error: invalid x-api-key", id="401"),
    ],
)
def test_client_errors_are_not_retryable_and_carry_the_provider_message(status: int, name: str, expected: str) -> None:
    recorder = Recorder(httpx.Response(status, json=fixture(name)))

    with pytest.raises(LLMRequestError) as caught:
        messages(recorder).complete(REQUEST)

    assert not isinstance(caught.value, RetryableLLMError)
    assert caught.value.status == status
    assert caught.value.detail.startswith(expected)
    assert str(caught.value).startswith(f"anthropic: {expected}")


@pytest.mark.parametrize("exc_type", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.ConnectError])
def test_timeouts_and_connection_failures_are_retryable(exc_type: type[httpx.TransportError]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)

    with pytest.raises(RetryableLLMError) as caught:
        messages(Recorder(fail)).complete(REQUEST)

    assert caught.value.provider == "anthropic"
    assert isinstance(caught.value.__cause__, exc_type)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"type": "message", "role": "assistant"}, "no content list", id="no-content"),
        pytest.param(
            {"content": [{"type": "tool_use", "id": "toolu_1", "input": {}}]}, "no name in the tool_use", id="no-name"
        ),
        pytest.param(
            {"content": [{"type": "tool_use", "id": "toolu_1", "name": "add", "input": "{}"}]},
            "input is not an object",
            id="string-input",
        ),
    ],
)
def test_malformed_success_body_is_a_request_error(body: dict[str, Any], expected: str) -> None:
    with pytest.raises(LLMRequestError, match=expected) as caught:
        messages(Recorder(httpx.Response(200, json=body))).complete(REQUEST)

    assert not isinstance(caught.value, RetryableLLMError)
    assert caught.value.provider == "anthropic"


def test_make_llm_builds_a_working_anthropic_provider() -> None:
    recorder = Recorder(httpx.Response(200, json=fixture("anthropic_messages_tool_use")))
    config = ProviderConfig(
        anthropic_api_key="sk-ant-cfg",
        anthropic_base_url="https://proxy.internal",
        http_client=httpx.Client(transport=httpx.MockTransport(recorder)),
    )

    llm = make_llm("anthropic:claude-sonnet-4-5", config)
    response = llm.complete(REQUEST)

    assert isinstance(llm, AnthropicMessages)
    assert response.tool == "add"
    assert str(recorder.requests[0].url) == "https://proxy.internal/v1/messages"
    assert recorder.requests[0].headers["x-api-key"] == "sk-ant-cfg"


# --- against a real local server: what goes on the wire, and faults injected there ----------------------------

Served = Callable[..., AnthropicMessages]


@pytest.fixture
def srv() -> Iterator[ProviderServer]:
    with ProviderServer() as server:
        yield server


@pytest.fixture
def served(srv: ProviderServer) -> Iterator[Served]:
    """Builds the adapter as production does (make_llm, its own httpx client), pointed at the local server."""
    built: list[AnthropicMessages] = []

    def build(*, timeout_s: float = 5.0) -> AnthropicMessages:
        config = ProviderConfig(
            anthropic_base_url=srv.anthropic.base_url, anthropic_api_key="sk-ant-test", timeout_s=timeout_s
        )
        llm = make_llm("anthropic:claude-sonnet-4-5", config)
        assert isinstance(llm, AnthropicMessages)
        built.append(llm)
        return llm

    yield build
    for llm in built:
        llm.close()


def test_a_served_tool_use_round_trips(srv: ProviderServer, served: Served) -> None:
    srv.anthropic.push(tool_call("add", {"a": 2, "b": 40}, text="Adding.", usage=(300, 20)))

    response = served().complete(REQUEST)

    assert (response.tool, response.arguments, response.text) == ("add", {"a": 2, "b": 40}, "Adding.")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (300, 20)
    assert (response.stop_reason, response.problem, response.model) == (
        "tool_use",
        None,
        "anthropic:claude-sonnet-4-5",
    )
    [sent] = srv.anthropic.requests
    assert sent.path == "/v1/messages"
    assert (sent.headers["x-api-key"], sent.headers["anthropic-version"]) == ("sk-ant-test", "2023-06-01")
    assert sent.body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert sent.body["max_tokens"] == 512


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        pytest.param(overloaded(), 529, id="529-overloaded"),
        pytest.param(error(500), 500, id="500"),
        pytest.param(error(503, "Service unavailable"), 503, id="503"),
        pytest.param(error(409, "conflict"), 409, id="409"),
    ],
)
def test_served_server_errors_are_retryable(srv: ProviderServer, served: Served, answer: Answer, status: int) -> None:
    srv.anthropic.push(answer)

    with pytest.raises(RetryableLLMError) as caught:
        served().complete(REQUEST)

    assert caught.value.status == status
    assert len(srv.anthropic.requests) == 1  # no hidden retries: Step Functions owns them


def test_overloaded_keeps_the_error_type(srv: ProviderServer, served: Served) -> None:
    srv.anthropic.push(overloaded())

    with pytest.raises(RetryableLLMError) as caught:
        served().complete(REQUEST)

    assert caught.value.detail == "overloaded_error: Overloaded"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(rate_limited(retry_after=3), 3.0, id="retry-after"),
        pytest.param(rate_limited(retry_after=None, retry_after_ms=1500), 1.5, id="retry-after-ms"),
    ],
)
def test_a_served_429_is_retryable_with_its_retry_after(
    srv: ProviderServer, served: Served, answer: Answer, expected: float
) -> None:
    srv.anthropic.push(answer)

    with pytest.raises(RetryableHTTPError) as caught:
        served().complete(REQUEST)

    assert (caught.value.status, caught.value.retry_after_s) == (429, expected)
    assert caught.value.detail.startswith("rate_limit_error: ")


def test_x_should_retry_false_vetoes_a_retry_of_a_500(srv: ProviderServer, served: Served) -> None:
    srv.anthropic.push(error(500, "do not retry this", headers={"x-should-retry": "false"}))

    with pytest.raises(LLMRequestError) as caught:
        served().complete(REQUEST)

    assert not isinstance(caught.value, RetryableLLMError)


def test_a_low_credit_balance_is_not_retryable(srv: ProviderServer, served: Served) -> None:
    srv.anthropic.push(insufficient_quota())

    with pytest.raises(LLMRequestError, match="credit balance is too low") as caught:
        served().complete(REQUEST)

    assert not isinstance(caught.value, RetryableLLMError)
    assert caught.value.kind == "llm_error"


def test_a_billing_error_says_to_check_billing(srv: ProviderServer, served: Served) -> None:
    srv.anthropic.push(error(402, "Payment required"))

    with pytest.raises(LLMRequestError, match="check the account's billing") as caught:
        served().complete(REQUEST)

    assert not isinstance(caught.value, RetryableLLMError)


@pytest.mark.parametrize(
    "message",
    [
        "prompt is too long: 208310 tokens > 200000 maximum",
        "input length and `max_tokens` exceed context limit: 197000 + 8192 > 200000, decrease input length or "
        "`max_tokens` and try again",
    ],
)
def test_a_prompt_over_the_context_window_is_its_own_kind(srv: ProviderServer, served: Served, message: str) -> None:
    srv.anthropic.push(error(400, message))

    with pytest.raises(ContextWindowExceededError) as caught:
        served().complete(REQUEST)

    assert caught.value.kind == "context_window_exceeded"
    assert caught.value.detail == f"invalid_request_error: {message}"


def test_the_context_too_long_answer_is_recognised(srv: ProviderServer, served: Served) -> None:
    srv.anthropic.push(context_too_long())

    with pytest.raises(ContextWindowExceededError):
        served().complete(REQUEST)


def test_a_stalled_server_times_out_as_retryable(srv: ProviderServer, served: Served) -> None:
    srv.anthropic.push(delay(5.0))
    started = time.monotonic()

    with pytest.raises(RetryableLLMError, match="timed out"):
        served(timeout_s=0.2).complete(REQUEST)

    assert time.monotonic() - started < 2.0


def test_a_dropped_connection_is_retryable(srv: ProviderServer, served: Served) -> None:
    srv.anthropic.push(disconnect())

    with pytest.raises(RetryableLLMError, match="could not reach"):
        served().complete(REQUEST)


def test_a_tool_use_cut_off_at_max_tokens_is_reported_as_truncated(srv: ProviderServer, served: Served) -> None:
    srv.anthropic.push(truncated("add", {"a": 2, "b": 40}))

    response = served().complete(REQUEST)

    assert (response.tool, response.arguments) == ("add", {"a": 2})
    assert response.problem == "output_truncated"
    assert response.stop_message.startswith(
        "the model's output was cut off at the 512-token output limit (max_output_tokens; "
        "anthropic stop_reason 'max_tokens') before the tool call was complete"
    )


def test_a_cut_off_block_without_an_input_object_is_still_truncation(srv: ProviderServer, served: Served) -> None:
    body = fixture("anthropic_messages_tool_use")
    body["stop_reason"] = "max_tokens"
    for block in body["content"]:
        if block["type"] == "tool_use":
            block["input"] = '{"a": 2, "b'
    srv.anthropic.push(raw(200, body))

    response = served().complete(REQUEST)

    assert (response.tool, response.arguments, response.problem) == ("add", {}, "output_truncated")


def test_a_refusal_is_reported_as_refused_with_its_words(srv: ProviderServer, served: Served) -> None:
    srv.anthropic.push(refusal("I can't help with that request."))

    response = served().complete(REQUEST)

    assert response.tool is None
    assert response.problem == "refused"
    assert "stop_reason 'refusal'" in response.stop_message
    assert response.stop_message.endswith(': "I can\'t help with that request."')


def test_a_full_context_window_stop_is_reported(srv: ProviderServer, served: Served) -> None:
    srv.anthropic.push(stop("model_context_window_exceeded", tool="add", args={}))

    response = served().complete(REQUEST)

    assert response.problem == "context_window_exceeded"
    assert "stop_reason 'model_context_window_exceeded'" in response.stop_message


@pytest.mark.parametrize(
    ("raw_reason", "expected"),
    [("end_turn", "end_turn"), ("stop_sequence", "end_turn"), ("pause_turn", "other"), ("something_new", "other")],
)
def test_ordinary_stop_reasons_are_not_problems(
    srv: ProviderServer, served: Served, raw_reason: str, expected: str
) -> None:
    srv.anthropic.push(stop(raw_reason, text="Hello."))

    response = served().complete(REQUEST)

    assert (response.stop_reason, response.problem, response.stop_message) == (expected, None, "")


def test_a_text_answer_is_an_ordinary_end_of_turn(srv: ProviderServer, served: Served) -> None:
    srv.anthropic.push(text("2 + 40 is 42."))

    response = served().complete(REQUEST)

    assert (response.tool, response.text, response.stop_reason) == (None, "2 + 40 is 42.", "end_turn")
