"""BedrockConverse against a real bedrock-runtime client stubbed with botocore's Stubber (no network, no AWS)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from botocore.stub import Stubber

from core.adapters.llm import (
    ContextWindowExceededError,
    LLMRequest,
    LLMRequestError,
    ProviderConfig,
    RetryableLLMError,
    ToolSpec,
    make_llm,
)
from core.adapters.llm.bedrock import BedrockConverse, client_config

FIXTURES = Path(__file__).parent / "fixtures" / "llm"
MODEL_ID = "us.anthropic.claude-sonnet-4-20250514-v1:0"

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
    model=f"bedrock:{MODEL_ID}",
    system="You are a calculator.",
    context="<user_input>what is 2 + 40?</user_input>",
    tools=(ADD,),
    max_output_tokens=300,
)
EXPECTED_PARAMS = {
    "modelId": MODEL_ID,
    "system": [{"text": "You are a calculator."}],
    "messages": [{"role": "user", "content": [{"text": "<user_input>what is 2 + 40?</user_input>"}]}],
    "toolConfig": {
        "tools": [
            {"toolSpec": {"name": "add", "description": "Add two numbers.", "inputSchema": {"json": ADD.parameters}}}
        ],
        "toolChoice": {"any": {}},
    },
    "inferenceConfig": {"maxTokens": 300},
}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def bedrock_client(**config: Any) -> Any:
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(**config) if config else None,
    )


@pytest.fixture
def client() -> Any:
    return bedrock_client()


@pytest.fixture
def stubber(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def test_tool_use_is_parsed_and_the_request_forces_a_tool(client: Any, stubber: Stubber) -> None:
    stubber.add_response("converse", fixture("bedrock_converse_tool_use"), EXPECTED_PARAMS)

    response = BedrockConverse(MODEL_ID, client=client).complete(REQUEST)

    assert response.tool == "add"
    assert response.arguments == {"a": 2, "b": 40}
    assert response.text == "I'll add the two numbers."
    assert (response.usage.input_tokens, response.usage.output_tokens) == (437, 61)
    assert response.model == f"bedrock:{MODEL_ID}"


def test_empty_system_is_left_out(client: Any, stubber: Stubber) -> None:
    request = LLMRequest(model=REQUEST.model, system="", context=REQUEST.context, tools=(ADD,), max_output_tokens=300)
    expected = {key: value for key, value in EXPECTED_PARAMS.items() if key != "system"}
    stubber.add_response("converse", fixture("bedrock_converse_tool_use"), expected)

    assert BedrockConverse(MODEL_ID, client=client).complete(request).tool == "add"


def test_text_only_answer_has_no_tool(client: Any, stubber: Stubber) -> None:
    stubber.add_response("converse", fixture("bedrock_converse_text_only"), EXPECTED_PARAMS)

    response = BedrockConverse(MODEL_ID, client=client).complete(REQUEST)

    assert response.tool is None
    assert response.text == "2 + 40 is 42."
    assert response.usage.output_tokens == 12


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ThrottlingException", 429),
        ("ServiceUnavailableException", 503),
        ("InternalServerException", 500),
        ("ModelTimeoutException", 408),
        ("ModelNotReadyException", 429),
        ("SomeFutureServerFault", 502),
    ],
)
def test_throttling_and_server_faults_are_retryable(client: Any, stubber: Stubber, code: str, status: int) -> None:
    stubber.add_client_error("converse", code, f"{code} happened, try later", http_status_code=status)

    with pytest.raises(RetryableLLMError) as caught:
        BedrockConverse(MODEL_ID, client=client).complete(REQUEST)

    assert caught.value.provider == "bedrock"
    assert caught.value.status == status
    assert caught.value.detail == f"{code}: {code} happened, try later"


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        ("ValidationException", 400, "The model returned the following errors: tools.0.name: String should match"),
        ("AccessDeniedException", 403, "You don't have access to the model with the specified model ID."),
        ("ResourceNotFoundException", 404, "Model not found."),
        ("ModelErrorException", 424, "The model produced an invalid response."),
    ],
)
def test_request_errors_carry_the_bedrock_message(
    client: Any, stubber: Stubber, code: str, status: int, message: str
) -> None:
    stubber.add_client_error("converse", code, message, http_status_code=status)

    with pytest.raises(LLMRequestError) as caught:
        BedrockConverse(MODEL_ID, client=client).complete(REQUEST)

    assert not isinstance(caught.value, RetryableLLMError)
    assert caught.value.status == status
    assert caught.value.detail == f"{code}: {message}"


@pytest.mark.parametrize(
    "error",
    [
        ReadTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com"),
        ConnectTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com"),
        EndpointConnectionError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com"),
    ],
    ids=["read-timeout", "connect-timeout", "no-endpoint"],
)
def test_timeouts_and_connection_failures_are_retryable(error: Exception) -> None:
    client = bedrock_client(retries={"total_max_attempts": 1})
    sent: list[str] = []

    def fail_before_sending(request: Any, **_: Any) -> None:
        sent.append(request.url)
        raise error

    # before-send is the last hook before the socket: raising there stands in for the network failing.
    client.meta.events.register("before-send.bedrock-runtime.Converse", fail_before_sending)

    with pytest.raises(RetryableLLMError) as caught:
        BedrockConverse(MODEL_ID, client=client).complete(REQUEST)

    assert caught.value.__cause__ is error
    assert sent == [f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{MODEL_ID.replace(':', '%3A')}/converse"]


class FakeRuntime:
    """Stands in for boto3 where the Stubber cannot go: it validates responses, so it can't return malformed ones."""

    def __init__(self, response: object) -> None:
        self.response = response

    def converse(self, **_: Any) -> object:
        return self.response


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        pytest.param({"output": {}}, "no output.message.content", id="no-message"),
        pytest.param({"stopReason": "end_turn"}, "no output.message.content", id="no-output"),
        pytest.param(
            {"output": {"message": {"content": [{"toolUse": {"toolUseId": "t", "input": {}}}]}}},
            "has no name",
            id="no-name",
        ),
        pytest.param(
            {"output": {"message": {"content": [{"toolUse": {"name": "add", "input": "{}"}}]}}},
            "input is not an object",
            id="string-input",
        ),
        pytest.param(["not", "a", "dict"], "unexpected Converse response", id="list"),
    ],
)
def test_malformed_response_is_a_request_error(response: object, expected: str) -> None:
    with pytest.raises(LLMRequestError, match=expected) as caught:
        # FakeRuntime returns what the typed client's ConverseResponseTypeDef rules out: that is the point here
        BedrockConverse(MODEL_ID, client=FakeRuntime(response)).complete(REQUEST)  # type: ignore[arg-type]

    assert not isinstance(caught.value, RetryableLLMError)


def test_make_llm_builds_a_working_bedrock_provider(client: Any, stubber: Stubber) -> None:
    stubber.add_response("converse", fixture("bedrock_converse_tool_use"), EXPECTED_PARAMS)

    llm = make_llm(f"bedrock:{MODEL_ID}", ProviderConfig(bedrock_client=client))

    assert isinstance(llm, BedrockConverse)
    assert llm.complete(REQUEST).tool == "add"


def test_constructing_without_a_client_does_not_import_boto3() -> None:
    code = (
        "import sys; from core.adapters.llm.bedrock import BedrockConverse as B; B('m'); print('boto3' in sys.modules)"
    )

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "False"


# --- on the wire: Bedrock's real error and stop shapes, through botocore's own parsing and retries ----------


class _Body:
    """The raw body botocore reads an HTTP response from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


Wire = tuple[int, dict[str, str], Any]


def wired(replies: list[Wire], **config: Any) -> tuple[BedrockConverse, list[Any]]:
    """A Bedrock provider whose client (with :func:`client_config`, or ``config``) gets ``replies`` off the wire.

    ``before-send`` is the last hook before the socket: what it returns is parsed, retried and raised by botocore
    exactly as a response from Bedrock would be.
    """
    client = bedrock_client(**(config or client_config()))
    sent: list[Any] = []

    def send(request: Any, **_: Any) -> AWSResponse:
        sent.append(request)
        status, headers, body = replies.pop(0)
        data = json.dumps(body).encode()
        return AWSResponse(request.url, status, {"content-type": "application/json", **headers}, _Body(data))

    client.meta.events.register("before-send.bedrock-runtime.Converse", send)
    return BedrockConverse(MODEL_ID, client=client), sent


def bedrock_error(status: int, code: str, message: str) -> Wire:
    """An error as Bedrock sends it: the code in ``x-amzn-errortype``, the message in the JSON body."""
    headers = {"x-amzn-errortype": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    return status, {**headers, "x-amzn-requestid": "req-1"}, {"message": message}


def converse_answer(stop_reason: str, content: list[dict[str, Any]] | None = None) -> Wire:
    body = {
        "output": {"message": {"role": "assistant", "content": content or [{"text": "Hello."}]}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": 437, "outputTokens": 300, "totalTokens": 737},
        "metrics": {"latencyMs": 1530},
    }
    return 200, {"x-amzn-requestid": "req-1"}, body


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (429, "ThrottlingException", "Too many requests, please wait before trying again."),
        (503, "ServiceUnavailableException", "Bedrock is unable to process your request."),
        (500, "InternalServerException", "The server encountered an internal error."),
        (408, "ModelTimeoutException", "Model has timed out in processing the request."),
        (429, "ModelNotReadyException", "Model is not ready to serve inference requests."),
    ],
)
def test_wire_faults_that_a_later_attempt_can_fix_are_retryable(status: int, code: str, message: str) -> None:
    llm, sent = wired([bedrock_error(status, code, message)], retries={"total_max_attempts": 1})

    with pytest.raises(RetryableLLMError) as caught:
        llm.complete(REQUEST)

    assert (caught.value.status, caught.value.detail) == (status, f"{code}: {message}")
    assert len(sent) == 1


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (400, "ValidationException", "The model returned the following errors: tools.0.name: String should match"),
        (403, "AccessDeniedException", "You don't have access to the model with the specified model ID."),
        (404, "ResourceNotFoundException", "Model not found."),
    ],
)
def test_wire_faults_no_retry_fixes_are_request_errors(status: int, code: str, message: str) -> None:
    llm, sent = wired([bedrock_error(status, code, message)])

    with pytest.raises(LLMRequestError) as caught:
        llm.complete(REQUEST)

    assert type(caught.value) is LLMRequestError
    assert (caught.value.status, caught.value.detail, caught.value.kind) == (status, f"{code}: {message}", "llm_error")
    assert len(sent) == 1  # botocore does not retry them either


@pytest.mark.parametrize(
    "message",
    [
        "Input is too long for requested model.",
        "The model returned the following errors: Input is too long for requested model.",
        "The model returned the following errors: prompt is too long: 208310 tokens > 200000 maximum",
    ],
)
def test_a_prompt_over_the_context_window_is_its_own_kind(message: str) -> None:
    llm, _ = wired([bedrock_error(400, "ValidationException", message)])

    with pytest.raises(ContextWindowExceededError) as caught:
        llm.complete(REQUEST)

    assert caught.value.kind == "context_window_exceeded"
    assert not isinstance(caught.value, RetryableLLMError)


def test_the_client_config_retries_a_server_fault_once_then_gives_up() -> None:
    fault = bedrock_error(500, "InternalServerException", "The server encountered an internal error.")
    llm, sent = wired([fault, fault, fault])

    with pytest.raises(RetryableLLMError):
        llm.complete(REQUEST)

    assert len(sent) == client_config()["retries"]["total_max_attempts"] == 2


def test_the_client_config_recovers_from_one_server_fault() -> None:
    fault = bedrock_error(503, "ServiceUnavailableException", "Bedrock is unable to process your request.")
    llm, sent = wired(
        [fault, converse_answer("tool_use", fixture("bedrock_converse_tool_use")["output"]["message"]["content"])]
    )

    response = llm.complete(REQUEST)

    assert (response.tool, response.stop_reason, len(sent)) == ("add", "tool_use", 2)


STOP_REASONS = {
    "end_turn": "end_turn",
    "tool_use": "tool_use",
    "stop_sequence": "end_turn",
    "max_tokens": "output_truncated",
    "guardrail_intervened": "guardrail",
    "content_filtered": "guardrail",
    "malformed_model_output": "malformed_tool_use",
    "malformed_tool_use": "malformed_tool_use",
    "model_context_window_exceeded": "context_window_exceeded",
}


def test_every_stop_reason_botocore_knows_is_mapped_on_purpose(client: Any) -> None:
    enum = client.meta.service_model.shape_for("StopReason").enum

    assert sorted(enum) == sorted(STOP_REASONS)


@pytest.mark.parametrize(("raw_reason", "expected"), sorted(STOP_REASONS.items()))
def test_stop_reasons_are_normalised(raw_reason: str, expected: str) -> None:
    content = [{"toolUse": {"toolUseId": "t1", "name": "add", "input": {"a": 2}}}]
    llm, _ = wired([converse_answer(raw_reason, content)])

    response = llm.complete(REQUEST)

    assert response.stop_reason == expected
    if response.problem is None:
        assert response.stop_message == ""
    else:
        assert response.problem == expected
        assert f"bedrock stopReason {raw_reason!r}" in response.stop_message


def test_max_tokens_names_the_limit() -> None:
    content = [{"toolUse": {"toolUseId": "t1", "name": "add", "input": {"a": 2}}}]
    llm, _ = wired([converse_answer("max_tokens", content)])

    response = llm.complete(REQUEST)

    assert response.stop_message.startswith(
        "the model's output was cut off at the 300-token output limit (max_output_tokens; "
        "bedrock stopReason 'max_tokens') before the tool call was complete"
    )


def test_a_guardrail_without_a_tool_call_is_still_a_guardrail() -> None:
    llm, _ = wired([converse_answer("guardrail_intervened", [{"text": "Sorry, the model cannot answer this."}])])

    response = llm.complete(REQUEST)

    assert (response.tool, response.problem) == (None, "guardrail")


@pytest.mark.usefixtures("offline_aws_credentials")
def test_the_client_built_without_injection_has_bounded_timeouts_and_retries() -> None:

    config = BedrockConverse(MODEL_ID).client.meta.config

    assert (config.connect_timeout, config.read_timeout) == (5, 40)
    assert config.retries == {"mode": "standard", "total_max_attempts": 2}
