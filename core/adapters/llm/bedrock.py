"""Amazon Bedrock's Converse API: one request shape for every Bedrock model that supports tool use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from core.kernel.model import (
    ContextWindowExceededError,
    LLMRequest,
    LLMRequestError,
    LLMResponse,
    RetryableLLMError,
    StopReason,
    Usage,
    as_problem,
    is_context_overflow,
    read_stop,
)

if TYPE_CHECKING:
    # boto3's client type, from the mypy-boto3-bedrock-runtime stubs: a dev dependency, never in the Lambda package
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

PROVIDER = "bedrock"

RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "InternalServerException",
        "ModelTimeoutException",
        "ModelNotReadyException",
    }
)
"""Converse error codes that a later attempt can fix: throttling, capacity, and models still loading."""

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 40
"""How long the model may take to answer one attempt (botocore's default is 60): a step's 1024 output tokens take
Claude on Bedrock well under half that; two attempts of it must still fit the step's Lambda timeout."""
MAX_ATTEMPTS = 2
"""Attempts inside one step, the first included (botocore's default is 3 in standard mode, 5 in legacy)."""


def client_config() -> dict[str, Any]:
    """The botocore ``Config`` keyword arguments of the ``bedrock-runtime`` client.

    Bounded so that every attempt, with the backoff between them, ends well inside the step function's Lambda
    timeout: a Lambda killed mid-call leaves Step Functions a ``States.Timeout`` instead of a retryable error,
    and botocore's defaults (60 s reads, up to 5 attempts) could take five minutes. Standard mode retries
    throttling and transient faults once here; Step Functions retries what is left on its own schedule.
    """
    return {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "read_timeout": READ_TIMEOUT_S,
        "retries": {"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
    }


_STOPS: dict[str, StopReason] = {
    "tool_use": "tool_use",
    "end_turn": "end_turn",
    "stop_sequence": "end_turn",
    "max_tokens": "output_truncated",
    "guardrail_intervened": "guardrail",
    "content_filtered": "guardrail",
    "malformed_tool_use": "malformed_tool_use",
    "malformed_model_output": "malformed_tool_use",
    "model_context_window_exceeded": "context_window_exceeded",
}
"""Converse ``stopReason`` values (botocore's StopReason enum), in the normalised words of
:data:`~core.kernel.model.StopReason`."""


class BedrockConverse:
    """One Converse call per step, with ``toolChoice`` ``any`` so the model must answer with a tool call.

    Args:
        model_id: a Bedrock model or inference-profile id, e.g. ``us.anthropic.claude-sonnet-4-20250514-v1:0``.
        client: a boto3 ``bedrock-runtime`` client (tests stub it with botocore's Stubber); None builds one on the
            first call, so a cold start that never reaches the model does not pay for boto3.
    """

    def __init__(self, model_id: str, *, client: BedrockRuntimeClient | None = None) -> None:
        self.model_id = model_id
        self._client = client

    @property
    def client(self) -> BedrockRuntimeClient:
        """The injected client, or one built (once) from the environment's region and credentials."""
        if self._client is None:
            import boto3  # noqa: PLC0415 - lazy: boto3 costs cold-start time only when Bedrock is used
            from botocore.config import Config  # noqa: PLC0415

            self._client = boto3.client("bedrock-runtime", config=Config(**client_config()))
        return self._client

    def complete(self, request: LLMRequest) -> LLMResponse:
        """Ask for exactly one tool call; a text-only answer comes back with ``tool=None``.

        Raises:
            RetryableLLMError: throttling, 5xx, model timeouts and not-ready models, connection and read timeouts.
            LLMRequestError: validation, access and unknown-model errors, with Bedrock's own message
                (:class:`ContextWindowExceededError` for a prompt too long for the model).
        """
        try:
            response = self.client.converse(**self.request_params(request))
        except ClientError as exc:
            raise _client_error(exc) from exc
        except (BotoConnectionError, HTTPClientError) as exc:
            raise RetryableLLMError(PROVIDER, f"could not reach Bedrock: {exc}") from exc
        except BotoCoreError as exc:
            raise LLMRequestError(PROVIDER, f"{exc}; check the region, credentials and request") from exc
        if not isinstance(response, dict):
            raise LLMRequestError(PROVIDER, f"unexpected Converse response of type {type(response).__name__}")
        return _parse(response, self.model_id, request.max_output_tokens)

    def request_params(self, request: LLMRequest) -> dict[str, Any]:
        """The ``converse`` arguments: the rendered context as the single user turn, every tool as a toolSpec."""
        params: dict[str, Any] = {
            "modelId": self.model_id,
            "messages": [{"role": "user", "content": [{"text": request.context}]}],
            "toolConfig": {
                "tools": [
                    {"toolSpec": {"name": t.name, "description": t.description, "inputSchema": {"json": t.parameters}}}
                    for t in request.tools
                ],
                "toolChoice": {"any": {}},
            },
            "inferenceConfig": {"maxTokens": request.max_output_tokens},
        }
        if request.system:  # Bedrock rejects an empty system text block
            params["system"] = [{"text": request.system}]
        return params


def _client_error(exc: ClientError) -> RetryableLLMError | LLMRequestError:
    """Sort a Bedrock service error by its code, falling back to its HTTP status for codes not listed."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "")) or "UnknownError"
    message = f"{code}: {error.get('Message') or exc}"
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    status = status if isinstance(status, int) else None
    if code in RETRYABLE_CODES or (status is not None and (status == 429 or status >= 500)):
        return RetryableLLMError(PROVIDER, message, status=status)
    if code == "ValidationException" and is_context_overflow(message):
        return ContextWindowExceededError(PROVIDER, message, status=status)
    return LLMRequestError(PROVIDER, message, status=status)


def _parse(response: Mapping[str, Any], model_id: str, max_output_tokens: int) -> LLMResponse:
    """Read the first ``toolUse`` block (its ``input`` is already an object) and any text around it."""
    output = response.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        raise LLMRequestError(
            PROVIDER, f"unexpected Converse response: no output.message.content (top-level keys: {sorted(response)})"
        )
    blocks = [block for block in content if isinstance(block, dict)]
    text = "".join(b["text"] for b in blocks if isinstance(b.get("text"), str))
    usage = _usage(response.get("usage"))
    model = f"{PROVIDER}:{model_id}"
    tool_use = next((b["toolUse"] for b in blocks if isinstance(b.get("toolUse"), dict)), None)
    name = tool_use.get("name") if tool_use is not None else None
    reason, why = _stop(response.get("stopReason"), name if isinstance(name, str) else None, max_output_tokens)
    if tool_use is None:
        return LLMResponse(tool=None, text=text, usage=usage, model=model, stop_reason=reason, stop_message=why)
    if not isinstance(name, str) or not name:
        raise LLMRequestError(PROVIDER, "unexpected Converse response: a toolUse block has no name")
    arguments = tool_use.get("input")
    if not isinstance(arguments, dict):
        if as_problem(reason) is None:
            raise LLMRequestError(PROVIDER, f"unexpected Converse response: toolUse {name!r} input is not an object")
        arguments = {}  # a cut-off or malformed block; the stop reason, not its input, is what the step records
    return LLMResponse(
        tool=name, arguments=arguments, text=text, usage=usage, model=model, stop_reason=reason, stop_message=why
    )


def _stop(raw: object, tool: str | None, max_output_tokens: int) -> tuple[StopReason | None, str]:
    """The normalised ``stopReason`` and, for a problem stop, its message."""
    return read_stop(raw, _STOPS, provider=PROVIDER, field="stopReason", max_output_tokens=max_output_tokens, tool=tool)


def _usage(usage: object) -> Usage:
    if not isinstance(usage, dict):
        return Usage()
    return Usage(input_tokens=_count(usage.get("inputTokens")), output_tokens=_count(usage.get("outputTokens")))


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
