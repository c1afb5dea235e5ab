"""Model providers behind one Protocol. Provider modules are imported lazily: cold start is a feature."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.kernel.model import (
    LLM,
    ContextWindowExceededError,
    LLMError,
    LLMRequest,
    LLMRequestError,
    LLMResponse,
    ModelStringError,
    RetryableLLMError,
    StopProblem,
    StopReason,
    ToolSpec,
    Usage,
    parse_model_string,
)

__all__ = [
    "LLM",
    "ContextWindowExceededError",
    "LLMError",
    "LLMRequest",
    "LLMRequestError",
    "LLMResponse",
    "ModelStringError",
    "ProviderConfig",
    "RetryableLLMError",
    "StopProblem",
    "StopReason",
    "ToolSpec",
    "Usage",
    "make_llm",
    "parse_model_string",
]


@dataclass(frozen=True)
class ProviderConfig:
    """What providers need from the outside world, injected (core never reads the environment).

    ``http_client`` builds the httpx client (tests pass one with ``httpx.MockTransport``);
    ``bedrock_client`` is a boto3 ``bedrock-runtime`` client (tests use botocore's Stubber); None builds one with
    :func:`core.adapters.llm.bedrock.client_config`'s timeouts and retries.
    ``timeout_s`` is the read timeout of the httpx providers (how long the model may take to answer one request)
    and ``connect_timeout_s`` their connect timeout; one step makes one attempt, so together with the write and
    pool timeouts of ``core.adapters.llm._http`` they must fit the step function's Lambda timeout (a unit test checks).
    ``scripted`` builds ``scripted:<name>`` models; the kernel has no brains of its own, so without it a scripted
    model string is refused (the agents registry supplies one: ``agents.scripted_model``).
    """

    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: str | None = None
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_api_key: str | None = None
    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    http_client: Any = None
    bedrock_client: Any = None
    scripted: Callable[[str], LLM] | None = None


def make_llm(model: str, config: ProviderConfig | None = None) -> LLM:
    """Build the provider for a model string such as ``openai:gpt-4o-mini`` or ``scripted:<agent>``."""
    config = config or ProviderConfig()
    provider, name = parse_model_string(model)
    if provider == "openai":
        from core.adapters.llm.openai import OpenAIChat  # noqa: PLC0415 - lazy: keeps cold start small

        return OpenAIChat(
            name,
            base_url=config.openai_base_url,
            api_key=config.openai_api_key,
            client=config.http_client,
            timeout_s=config.timeout_s,
            connect_timeout_s=config.connect_timeout_s,
        )
    if provider == "anthropic":
        from core.adapters.llm.anthropic import AnthropicMessages  # noqa: PLC0415

        return AnthropicMessages(
            name,
            base_url=config.anthropic_base_url,
            api_key=config.anthropic_api_key,
            client=config.http_client,
            timeout_s=config.timeout_s,
            connect_timeout_s=config.connect_timeout_s,
        )
    if provider == "bedrock":
        from core.adapters.llm.bedrock import BedrockConverse  # noqa: PLC0415

        return BedrockConverse(name, client=config.bedrock_client)
    if config.scripted is None:
        # the kernel holds no brains (ARCHITECTURE.md "User space"): the caller injects the registry's
        raise ModelStringError(
            f"no scripted model {name!r}: no scripted brains were given; pass ProviderConfig(scripted=...) "
            "(functions/_wiring.py passes the agents package's)"
        )
    return config.scripted(name)
