"""OpenAIChat against httpx.MockTransport: the request it sends, the answers it reads, the errors it maps."""

from __future__ import annotations

import json
import re
import subprocess
import sys
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
from core.adapters.llm._http import JSONPoster, RetryableHTTPError
from core.adapters.llm.openai import OpenAIChat
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
    poster = JSONPoster("openai", None, 7.5, 2.0)

    client = poster.client

    assert client is poster.client
    assert client.timeout == httpx.Timeout(7.5, connect=2.0, write=7.5, pool=5.0)
    client.close()


def test_importing_core_llm_loads_neither_httpx_nor_botocore() -> None:
    code = "import core.adapters.llm, sys; print('httpx' in sys.modules, 'botocore' in sys.modules)"

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.split() == ["False", "False"]


# --- against a real local server: what goes on the wire, and faults injected there ----------------------------


Served = Callable[..., OpenAIChat]


@pytest.fixture
def srv() -> Iterator[ProviderServer]:
    with ProviderServer() as server:
        yield server


@pytest.fixture
def served(srv: ProviderServer) -> Iterator[Served]:
    """Builds the adapter as production does (make_llm, its own httpx client), pointed at the local server."""
    built: list[OpenAIChat] = []

    def build(model: str = "gpt-4o-mini", *, timeout_s: float = 5.0) -> OpenAIChat:
        config = ProviderConfig(openai_base_url=srv.openai.base_url, openai_api_key="sk-test", timeout_s=timeout_s)
        llm = make_llm(f"openai:{model}", config)
        assert isinstance(llm, OpenAIChat)
        built.append(llm)
        return llm

    yield build
    for llm in built:
        llm.close()


def test_a_served_tool_call_round_trips(srv: ProviderServer, served: Served) -> None:
    srv.openai.push(tool_call("add", {"a": 2, "b": 40}, usage=(120, 14)))

    response = served().complete(REQUEST)

    assert (response.tool, response.arguments) == ("add", '{"a":2,"b":40}')
    assert (response.usage.input_tokens, response.usage.output_tokens) == (120, 14)
    assert (response.stop_reason, response.problem) == ("tool_use", None)
    [sent] = srv.openai.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.body["parallel_tool_calls"] is False
    assert sent.body["max_tokens"] == 256  # a compatible server, not api.openai.com


@pytest.mark.parametrize(
    "model", ["o1", "o1-mini", "o3", "o3-mini", "o3-mini-2025-01-31", "o4-mini", "openai/o4-mini", "o3-pro"]
)
def test_o_series_models_get_neither_parallel_tool_calls_nor_max_tokens(
    srv: ProviderServer, served: Served, model: str
) -> None:
    served(model).complete(REQUEST)

    body = srv.openai.requests[0].body
    assert "parallel_tool_calls" not in body
    assert "max_tokens" not in body
    assert body["max_completion_tokens"] == 256
    assert "temperature" not in body
    assert body["tool_choice"] == "required"


@pytest.mark.parametrize("model", ["gpt-5", "gpt-5-mini", "gpt-5-nano-2025-08-07"])
def test_gpt_5_models_keep_parallel_tool_calls_but_get_max_completion_tokens(
    srv: ProviderServer, served: Served, model: str
) -> None:
    served(model).complete(REQUEST)

    body = srv.openai.requests[0].body
    assert body["parallel_tool_calls"] is False
    assert body["max_completion_tokens"] == 256
    assert "max_tokens" not in body


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-5-chat-latest", "llama3.1", "omni-moderation"])
def test_other_models_on_a_compatible_server_keep_max_tokens(srv: ProviderServer, served: Served, model: str) -> None:
    served(model).complete(REQUEST)

    body = srv.openai.requests[0].body
    assert (body["parallel_tool_calls"], body["max_tokens"]) == (False, 256)


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        pytest.param(error(500), 500, id="500"),
        pytest.param(error(503, "Service Unavailable"), 503, id="503"),
        pytest.param(overloaded(), 503, id="overloaded"),
        pytest.param(error(502, type="server_error"), 502, id="502"),
        pytest.param(error(400, "try again", headers={"x-should-retry": "true"}), 400, id="x-should-retry-true"),
    ],
)
def test_served_server_errors_are_retryable(srv: ProviderServer, served: Served, answer: Answer, status: int) -> None:
    srv.openai.push(answer)

    with pytest.raises(RetryableLLMError) as caught:
        served().complete(REQUEST)

    assert caught.value.status == status
    assert len(srv.openai.requests) == 1  # no hidden retries: Step Functions owns them


def test_a_served_429_is_retryable_with_its_retry_after(srv: ProviderServer, served: Served) -> None:
    srv.openai.push(rate_limited(retry_after=2))

    with pytest.raises(RetryableHTTPError) as caught:
        served().complete(REQUEST)

    assert (caught.value.status, caught.value.retry_after_s) == (429, 2.0)
    assert caught.value.detail.startswith("rate_limit_exceeded: Rate limit reached")


def test_a_served_retry_after_ms_wins(srv: ProviderServer, served: Served) -> None:
    srv.openai.push(rate_limited(retry_after=1, retry_after_ms=250))

    with pytest.raises(RetryableHTTPError) as caught:
        served().complete(REQUEST)

    assert caught.value.retry_after_s == pytest.approx(0.25)


def test_x_should_retry_false_vetoes_a_retry_of_a_500(srv: ProviderServer, served: Served) -> None:
    srv.openai.push(error(500, "this request cannot succeed", headers={"x-should-retry": "false"}))

    with pytest.raises(LLMRequestError) as caught:
        served().complete(REQUEST)

    assert not isinstance(caught.value, RetryableLLMError)
    assert caught.value.status == 500


def test_insufficient_quota_is_not_retryable_and_points_at_billing(srv: ProviderServer, served: Served) -> None:
    srv.openai.push(insufficient_quota())

    with pytest.raises(LLMRequestError) as caught:
        served().complete(REQUEST)

    err = caught.value
    assert not isinstance(err, RetryableLLMError)
    assert err.status == 429
    assert err.detail.startswith("insufficient_quota: You exceeded your current quota")
    assert "billing" in err.detail
    assert "retrying will not help" in err.detail
    assert err.kind == "llm_error"


def test_insufficient_quota_stays_fatal_even_if_the_server_says_retry(srv: ProviderServer, served: Served) -> None:
    quota = {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": None}}
    srv.openai.push(raw(429, quota, {"x-should-retry": "true", "retry-after": "1"}))

    with pytest.raises(LLMRequestError) as caught:
        served().complete(REQUEST)

    assert not isinstance(caught.value, RetryableLLMError)


def test_a_prompt_over_the_context_window_is_its_own_kind(srv: ProviderServer, served: Served) -> None:
    srv.openai.push(context_too_long())

    with pytest.raises(ContextWindowExceededError) as caught:
        served().complete(REQUEST)

    assert caught.value.kind == "context_window_exceeded"
    assert caught.value.status == 400
    assert "maximum context length is 128000 tokens" in caught.value.detail
    assert not isinstance(caught.value, RetryableLLMError)


def test_an_ordinary_400_is_a_plain_request_error(srv: ProviderServer, served: Served) -> None:
    srv.openai.push(error(400, "Invalid schema for function 'add'", code="invalid_function_parameters"))

    with pytest.raises(LLMRequestError) as caught:
        served().complete(REQUEST)

    assert type(caught.value) is LLMRequestError
    assert caught.value.kind == "llm_error"


def test_a_stalled_server_times_out_as_retryable(srv: ProviderServer, served: Served) -> None:
    srv.openai.push(delay(5.0))
    started = time.monotonic()

    with pytest.raises(RetryableLLMError, match="timed out"):
        served(timeout_s=0.2).complete(REQUEST)

    assert time.monotonic() - started < 2.0


def test_a_dropped_connection_is_retryable(srv: ProviderServer, served: Served) -> None:
    srv.openai.push(disconnect())

    with pytest.raises(RetryableLLMError, match="could not reach"):
        served().complete(REQUEST)


def test_the_next_call_succeeds_after_a_fault(srv: ProviderServer, served: Served) -> None:
    srv.openai.push(error(500), tool_call("add", {"a": 1, "b": 2}))
    llm = served()

    with pytest.raises(RetryableLLMError):
        llm.complete(REQUEST)
    response = llm.complete(REQUEST)

    assert response.tool == "add"
    assert srv.openai.pending == 0


def test_a_tool_call_cut_off_at_the_limit_is_reported_as_truncated(srv: ProviderServer, served: Served) -> None:
    srv.openai.push(truncated("add", {"a": 2, "b": 40}))

    response = served().complete(REQUEST)

    assert response.tool == "add"
    assert isinstance(response.arguments, str)
    assert not response.arguments.endswith("}")
    assert (response.stop_reason, response.problem) == ("output_truncated", "output_truncated")
    assert response.stop_message.startswith(
        "the model's output was cut off at the 256-token output limit (max_output_tokens; "
        "openai finish_reason 'length') before the tool call was complete"
    )


def test_reasoning_tokens_are_named_when_they_ate_the_limit(srv: ProviderServer, served: Served) -> None:
    body = fixture("openai_chat_tool_call")
    body["choices"][0]["finish_reason"] = "length"
    body["usage"]["completion_tokens_details"] = {"reasoning_tokens": 256}
    srv.openai.push(raw(200, body))

    response = served("o4-mini").complete(REQUEST)

    assert response.problem == "output_truncated"
    assert "256 of the output tokens went to the model's hidden reasoning" in response.stop_message


def test_a_refusal_is_reported_as_refused_with_its_words(srv: ProviderServer, served: Served) -> None:
    srv.openai.push(refusal("I'm sorry, I can't help with that."))

    response = served().complete(REQUEST)

    assert response.tool is None
    assert response.problem == "refused"
    assert response.stop_message.endswith(": \"I'm sorry, I can't help with that.\"")
    assert "message.refusal" in response.stop_message


def test_the_content_filter_is_reported_as_a_guardrail(srv: ProviderServer, served: Served) -> None:
    srv.openai.push(stop("content_filter"))

    response = served().complete(REQUEST)

    assert response.problem == "guardrail"
    assert "finish_reason 'content_filter'" in response.stop_message


def test_a_text_answer_is_an_ordinary_end_of_turn(srv: ProviderServer, served: Served) -> None:
    srv.openai.push(text("2 + 40 is 42."))

    response = served().complete(REQUEST)

    assert (response.tool, response.text, response.stop_reason, response.problem) == (
        None,
        "2 + 40 is 42.",
        "end_turn",
        None,
    )


def test_an_empty_queue_answers_with_the_default(srv: ProviderServer, served: Served) -> None:
    response = served().complete(REQUEST)

    assert (response.tool, json.loads(str(response.arguments))) == ("done_for_now", {"answer": "done"})
