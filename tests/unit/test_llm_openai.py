"""OpenAIChat against httpx.MockTransport: the request it sends, the answers it reads, the errors it maps."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.llm import LLMRequest, LLMRequestError, ProviderConfig, RetryableLLMError, ToolSpec, make_llm
from core.llm._http import JSONPoster, RetryableHTTPError
from core.llm.openai import OpenAIChat

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
DONE = ToolSpec(
    name="done",
    description="Finish with an answer for the user.",
    parameters={"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]},
)
REQUEST = LLMRequest(
    model="openai:gpt-4o-mini",
    system="You are a calculator.",
    context="<user_input>what is 2 + 40?</user_input>",
    tools=(ADD, DONE),
    max_output_tokens=256,
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


def chat(
    recorder: Recorder, *, base_url: str = "https://api.openai.com/v1", api_key: str | None = "sk-test"
) -> OpenAIChat:
    client = httpx.Client(transport=httpx.MockTransport(recorder))
    return OpenAIChat("gpt-4o-mini", base_url=base_url, api_key=api_key, client=client, timeout_s=5.0)


def test_tool_call_is_parsed_with_raw_arguments_and_usage() -> None:
    recorder = Recorder(httpx.Response(200, json=fixture("openai_chat_tool_call")))

    response = chat(recorder).complete(REQUEST)

    assert response.tool == "add"
    assert response.arguments == '{"a":2,"b":40}'
    assert response.text == ""
    assert response.usage.input_tokens == 131
    assert response.usage.output_tokens == 18
    assert response.model == "openai:gpt-4o-mini-2024-07-18"


def test_request_forces_exactly_one_tool_call() -> None:
    recorder = Recorder(httpx.Response(200, json=fixture("openai_chat_tool_call")))

    chat(recorder).complete(REQUEST)

    [sent] = recorder.requests
    assert sent.method == "POST"
    assert str(sent.url) == "https://api.openai.com/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.headers["content-type"] == "application/json"
    assert recorder.body == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a calculator."},
            {"role": "user", "content": "<user_input>what is 2 + 40?</user_input>"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "add", "description": "Add two numbers.", "parameters": ADD.parameters},
            },
            {
                "type": "function",
                "function": {"name": "done", "description": DONE.description, "parameters": DONE.parameters},
            },
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_completion_tokens": 256,
    }


def test_compatible_server_gets_max_tokens_and_no_auth_header_without_key() -> None:
    recorder = Recorder(httpx.Response(200, json=fixture("openai_chat_tool_call")))

    chat(recorder, base_url="http://localhost:11434/v1/", api_key=None).complete(REQUEST)

    [sent] = recorder.requests
    assert str(sent.url) == "http://localhost:11434/v1/chat/completions"
    assert "authorization" not in sent.headers
    assert recorder.body["max_tokens"] == 256
    assert "max_completion_tokens" not in recorder.body


def test_text_only_answer_has_no_tool() -> None:
    recorder = Recorder(httpx.Response(200, json=fixture("openai_chat_text_only")))

    response = chat(recorder).complete(REQUEST)

    assert response.tool is None
    assert response.text == "2 + 40 is 42."
    assert response.usage.output_tokens == 9


def test_only_the_first_of_several_tool_calls_is_kept() -> None:
    body = fixture("openai_chat_tool_call")
    calls = body["choices"][0]["message"]["tool_calls"]
    calls.append({"id": "call_2", "type": "function", "function": {"name": "done", "arguments": '{"answer":"42"}'}})
    recorder = Recorder(httpx.Response(200, json=body))

    response = chat(recorder).complete(REQUEST)

    assert (response.tool, response.arguments) == ("add", '{"a":2,"b":40}')


def test_rate_limit_is_retryable_with_message_and_retry_after() -> None:
    recorder = Recorder(
        httpx.Response(429, json=fixture("openai_error_rate_limit"), headers={"retry-after": "1", "x-request-id": "r"})
    )

    with pytest.raises(RetryableLLMError) as caught:
        chat(recorder).complete(REQUEST)

    err = caught.value
    assert err.status == 429
    assert err.provider == "openai"
    assert err.detail.startswith("rate_limit_exceeded: Rate limit reached for gpt-4o-mini")
    assert isinstance(err, RetryableHTTPError)
    assert err.retry_after_s == 1.0
    assert "retry after 1s" in str(err)


def test_retry_after_ms_is_preferred_to_retry_after() -> None:
    headers = {"retry-after-ms": "346", "retry-after": "1"}
    recorder = Recorder(httpx.Response(429, json=fixture("openai_error_rate_limit"), headers=headers))

    with pytest.raises(RetryableHTTPError) as caught:
        chat(recorder).complete(REQUEST)

    assert caught.value.retry_after_s == pytest.approx(0.346)


@pytest.mark.parametrize("status", [500, 502, 503, 408, 409])
def test_server_errors_and_timeout_statuses_are_retryable(status: int) -> None:
    body = {"error": {"message": "The server had an error while processing your request.", "type": "server_error"}}
    recorder = Recorder(httpx.Response(status, json=body))

    with pytest.raises(RetryableLLMError) as caught:
        chat(recorder).complete(REQUEST)

    assert caught.value.status == status
    assert caught.value.detail.startswith("server_error: The server had an error")
    assert getattr(caught.value, "retry_after_s", "missing") is None


def test_gateway_error_page_is_retryable_and_quoted() -> None:
    recorder = Recorder(httpx.Response(502, text="<html><body>502 Bad Gateway</body></html>"))

    with pytest.raises(RetryableLLMError, match="502 Bad Gateway"):
        chat(recorder).complete(REQUEST)


@pytest.mark.parametrize(
    ("status", "name", "expected"),
    [
        pytest.param(
            400,
            "openai_error_invalid_request",
            "invalid_function_parameters: Invalid schema for function 'add'",
            id="400",
        ),
        pytest.param(401, "openai_error_invalid_api_key", "invalid_api_key: Incorrect API key provided", id="401"),
    ],
)
def test_client_errors_are_not_retryable_and_carry_the_provider_message(status: int, name: str, expected: str) -> None:
    recorder = Recorder(httpx.Response(status, json=fixture(name)))

    with pytest.raises(LLMRequestError) as caught:
        chat(recorder).complete(REQUEST)

    assert not isinstance(caught.value, RetryableLLMError)
    assert caught.value.status == status
    assert caught.value.detail.startswith(expected)
    assert f"(HTTP {status})" in str(caught.value)


def test_unauthorized_says_what_to_check() -> None:
    recorder = Recorder(httpx.Response(401, json=fixture("openai_error_invalid_api_key")))

    with pytest.raises(LLMRequestError, match="check the API key"):
        chat(recorder).complete(REQUEST)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"error": "model 'llama3' not found"}, "model 'llama3' not found", id="ollama-string"),
        pytest.param({"detail": "Not Found"}, "Not Found", id="fastapi-detail"),
        pytest.param({"message": "no such model"}, "no such model", id="plain-message"),
    ],
)
def test_error_messages_of_compatible_servers_are_kept(body: dict[str, Any], expected: str) -> None:
    recorder = Recorder(httpx.Response(404, json=body))

    with pytest.raises(LLMRequestError) as caught:
        chat(recorder, base_url="http://localhost:8000/v1").complete(REQUEST)

    assert caught.value.detail == f"{expected}; check the model name and the base URL"


def test_server_may_veto_a_retry_with_x_should_retry() -> None:
    recorder = Recorder(
        httpx.Response(500, json={"error": {"message": "bad tool"}}, headers={"x-should-retry": "false"})
    )

    with pytest.raises(LLMRequestError) as caught:
        chat(recorder).complete(REQUEST)

    assert not isinstance(caught.value, RetryableLLMError)


@pytest.mark.parametrize(
    "exc_type", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.ConnectError, httpx.RemoteProtocolError]
)
def test_timeouts_and_connection_failures_are_retryable(exc_type: type[httpx.TransportError]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)

    with pytest.raises(RetryableLLMError) as caught:
        chat(Recorder(fail)).complete(REQUEST)

    assert caught.value.status is None
    assert isinstance(caught.value.__cause__, exc_type)


def test_url_without_scheme_is_a_request_error_not_a_retry() -> None:
    # The real transport refuses the scheme before opening any connection; MockTransport would not check it.
    with httpx.Client() as client:
        llm = OpenAIChat("gpt-4o-mini", base_url="localhost:8000/v1", api_key=None, client=client, timeout_s=1.0)
        with pytest.raises(LLMRequestError, match="check the base URL") as caught:
            llm.complete(REQUEST)

    assert not isinstance(caught.value, RetryableLLMError)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        pytest.param(
            httpx.Response(200, json={"id": "x", "object": "chat.completion"}), "no choices[0]", id="no-choices"
        ),
        pytest.param(httpx.Response(200, json={"choices": [{"index": 0}]}), "no choices[0].message", id="no-message"),
        pytest.param(
            httpx.Response(200, json={"choices": [{"message": {"tool_calls": [{"type": "function"}]}}]}),
            "tool_calls[0].function",
            id="no-function",
        ),
        pytest.param(
            httpx.Response(200, json={"choices": [{"message": {"tool_calls": [{"function": {"arguments": "{}"}}]}}]}),
            "function.name",
            id="no-name",
        ),
        pytest.param(httpx.Response(200, text="<html>captive portal</html>"), "not JSON", id="html"),
        pytest.param(httpx.Response(200, json=[1, 2]), "JSON list, expected an object", id="list"),
    ],
)
def test_malformed_success_body_is_a_request_error(response: httpx.Response, expected: str) -> None:
    with pytest.raises(LLMRequestError, match=re.escape(expected)) as caught:
        chat(Recorder(response)).complete(REQUEST)

    assert not isinstance(caught.value, RetryableLLMError)


def test_missing_usage_counts_as_zero() -> None:
    body = fixture("openai_chat_tool_call")
    del body["usage"]

    response = chat(Recorder(httpx.Response(200, json=body))).complete(REQUEST)

    assert (response.usage.input_tokens, response.usage.output_tokens) == (0, 0)


def test_make_llm_builds_a_working_openai_chat() -> None:
    recorder = Recorder(httpx.Response(200, json=fixture("openai_chat_tool_call")))
    config = ProviderConfig(openai_api_key="sk-cfg", http_client=httpx.Client(transport=httpx.MockTransport(recorder)))

    llm = make_llm("openai:gpt-4o-mini", config)
    response = llm.complete(REQUEST)

    assert isinstance(llm, OpenAIChat)
    assert response.tool == "add"
    assert recorder.requests[0].headers["authorization"] == "Bearer sk-cfg"
    assert recorder.body["model"] == "gpt-4o-mini"


def test_poster_builds_its_client_once_with_the_timeout() -> None:
    poster = JSONPoster("openai", None, 7.5)

    client = poster.client

    assert client is poster.client
    assert client.timeout == httpx.Timeout(7.5)
    client.close()


def test_importing_core_llm_loads_neither_httpx_nor_botocore() -> None:
    code = "import core.llm, sys; print('httpx' in sys.modules, 'botocore' in sys.modules)"

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.split() == ["False", "False"]
