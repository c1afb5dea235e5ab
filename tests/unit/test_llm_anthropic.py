"""AnthropicMessages against httpx.MockTransport: the request it sends, the answers it reads, the errors it maps."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.llm import LLMRequest, LLMRequestError, ProviderConfig, RetryableLLMError, ToolSpec, make_llm
from core.llm._http import RetryableHTTPError
from core.llm.anthropic import AnthropicMessages

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
