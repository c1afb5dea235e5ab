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
from botocore.config import Config
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from botocore.stub import Stubber

from core.llm import LLMRequest, LLMRequestError, ProviderConfig, RetryableLLMError, ToolSpec, make_llm
from core.llm.bedrock import BedrockConverse

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
        BedrockConverse(MODEL_ID, client=FakeRuntime(response)).complete(REQUEST)

    assert not isinstance(caught.value, RetryableLLMError)


def test_make_llm_builds_a_working_bedrock_provider(client: Any, stubber: Stubber) -> None:
    stubber.add_response("converse", fixture("bedrock_converse_tool_use"), EXPECTED_PARAMS)

    llm = make_llm(f"bedrock:{MODEL_ID}", ProviderConfig(bedrock_client=client))

    assert isinstance(llm, BedrockConverse)
    assert llm.complete(REQUEST).tool == "add"


def test_constructing_without_a_client_does_not_import_boto3() -> None:
    code = "import sys; from core.llm.bedrock import BedrockConverse as B; B('m'); print('boto3' in sys.modules)"

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "False"
