"""The model interface (Factor 1): rendered context + tool specs in, exactly one tool call out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.events import Event


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model sees it: name, description and the JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class LLMRequest:
    """One model call. ``events`` is the thread itself, for scripted models; real providers ignore it."""

    model: str
    system: str
    context: str
    tools: Sequence[ToolSpec]
    events: Sequence[Event] = ()
    prompt_hash: str = ""
    max_output_tokens: int = 1024


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class LLMResponse:
    """What the model chose. ``arguments`` is kept raw (a JSON string or a dict) so validation happens in one place.

    ``tool`` is None when the model answered with text only (recorded as a ``no_tool_call`` error).
    """

    tool: str | None
    arguments: str | dict[str, Any] = field(default_factory=dict)
    text: str = ""
    usage: Usage = field(default_factory=Usage)
    model: str = ""


class LLM(Protocol):
    """A model provider. One method; implementations raise :class:`RetryableLLMError` or
    :class:`LLMRequestError` for provider failures."""

    def complete(self, request: LLMRequest) -> LLMResponse: ...


class LLMError(Exception):
    """Base of provider errors."""

    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{provider}: {message}" + (f" (HTTP {status})" if status is not None else ""))
        self.provider = provider
        self.status = status
        self.detail = message


class RetryableLLMError(LLMError):
    """Throttling (429), provider 5xx, timeouts and connection errors: Step Functions retries these."""


class LLMRequestError(LLMError):
    """The provider refused the request (4xx other than 429): retrying would not help."""


class ModelStringError(ValueError):
    """A model string like ``openai:gpt-4o-mini`` could not be understood."""


def parse_model_string(model: str) -> tuple[str, str]:
    """Split ``provider:model-id`` and check the provider is one we know."""
    provider, sep, name = model.partition(":")
    if not sep or not name:
        raise ModelStringError(
            f"model string {model!r} must look like 'provider:model', e.g. 'openai:gpt-4o-mini', "
            "'anthropic:claude-sonnet-4-5', 'bedrock:anthropic.claude-3-haiku-20240307-v1:0' or 'scripted:calculator'"
        )
    if provider not in PROVIDERS:
        raise ModelStringError(f"unknown model provider {provider!r} in {model!r}; known: {', '.join(PROVIDERS)}")
    return provider, name


PROVIDERS = ("openai", "anthropic", "bedrock", "scripted")
