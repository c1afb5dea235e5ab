"""The model interface (Factor 1): rendered context + tool specs in, exactly one tool call out."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from core.kernel.events import ErrorKind, Event


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


StopProblem = Literal["output_truncated", "refused", "guardrail", "malformed_tool_use", "context_window_exceeded"]
"""Stops that leave no tool call worth running, each also an :data:`~core.kernel.events.ErrorKind` of the same name."""

StopReason = Literal["tool_use", "end_turn", "other", StopProblem]
"""Why the model stopped, the same words for every provider (``finish_reason``, ``stop_reason``, ``stopReason``)."""

_PROBLEMS: dict[str, StopProblem] = {
    "output_truncated": "output_truncated",
    "refused": "refused",
    "guardrail": "guardrail",
    "malformed_tool_use": "malformed_tool_use",
    "context_window_exceeded": "context_window_exceeded",
}


@dataclass(frozen=True)
class LLMResponse:
    """What the model chose. ``arguments`` is kept raw (a JSON string or a dict) so validation happens in one place.

    ``tool`` is None when the model answered with text only (recorded as a ``no_tool_call`` error).
    ``stop_reason`` is None when the provider did not say (scripted models); ``stop_message`` says, for a
    :data:`StopProblem`, what happened in words the model and an operator both understand.
    """

    tool: str | None
    arguments: str | dict[str, Any] = field(default_factory=dict)
    text: str = ""
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    stop_reason: StopReason | None = None
    stop_message: str = ""

    @property
    def problem(self) -> StopProblem | None:
        """The stop reason when it means the answer is unusable (cut off, refused, filtered...), else None.

        Checked before the tool call is validated: a cut-off call must be reported as cut off, not as bad JSON,
        and a cut-off call that happens to parse must not run with half its arguments.
        """
        return as_problem(self.stop_reason)


def as_problem(reason: str | None) -> StopProblem | None:
    """``reason`` as a :data:`StopProblem` when it is one, else None."""
    return _PROBLEMS.get(reason or "")


_QUOTE_CHARS = 200


def stop_message(
    problem: StopProblem, provider: str, raw: str, *, max_output_tokens: int, tool: str | None, quote: str = ""
) -> str:
    """The message of a problem stop: what happened, the provider's own word for it, and what would help.

    Args:
        problem: the normalised stop reason.
        provider: ``openai``, ``anthropic`` or ``bedrock``; with ``raw`` it names the provider's field value.
        raw: the provider's stop value, e.g. ``finish_reason 'length'``.
        max_output_tokens: the request's output limit, named in the truncation message.
        tool: the tool the model had started to call, if any.
        quote: what the model said, e.g. its refusal, quoted (shortened) at the end.
    """
    message = _stop_text(problem, f"{provider} {raw}", max_output_tokens, tool)
    quote = " ".join(quote.split())
    if len(quote) > _QUOTE_CHARS:
        quote = quote[:_QUOTE_CHARS] + "..."
    return f'{message}: "{quote}"' if quote else message


def read_stop(
    raw: object,
    table: dict[str, StopReason],
    *,
    provider: str,
    field: str,
    max_output_tokens: int,
    tool: str | None,
    quote: str = "",
) -> tuple[StopReason | None, str]:
    """A provider's raw stop value (``table`` maps its words) as the normalised reason and, for a problem stop, its
    message; ``None`` when the provider did not say. A word the table lacks is ``other``."""
    if not isinstance(raw, str):
        return None, ""
    reason = table.get(raw, "other")
    problem = as_problem(reason)
    if problem is None:
        return reason, ""
    return reason, stop_message(
        problem, provider, f"{field} {raw!r}", max_output_tokens=max_output_tokens, tool=tool, quote=quote
    )


def _stop_text(problem: StopProblem, said: str, max_output_tokens: int, tool: str | None) -> str:
    if problem == "output_truncated":
        what = "before the tool call was complete" if tool else "before it made a tool call"
        return (
            f"the model's output was cut off at the {max_output_tokens}-token output limit (max_output_tokens; {said}) "
            f"{what}; make the tool call again with shorter arguments"
        )
    if problem == "refused":
        return f"the model refused to answer ({said}); the request may need rewording or a person's help"
    if problem == "guardrail":
        return f"a content filter or guardrail stopped the model's output ({said})"
    if problem == "malformed_tool_use":
        return f"the model produced a malformed tool call ({said}); make the tool call again with valid JSON arguments"
    return (
        f"the thread no longer fits in the model's context window ({said}); "
        "it needs a model with a larger window or a shorter context"
    )


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
    """The provider refused the request (4xx other than 429): retrying would not help.

    The step records it as an error event of :attr:`kind`, which subclasses make more specific.
    """

    kind: ClassVar[ErrorKind] = "llm_error"


class ContextWindowExceededError(LLMRequestError):
    """The prompt alone is longer than the model's context window: a retry sends the same prompt and fails again."""

    kind: ClassVar[ErrorKind] = "context_window_exceeded"


_CONTEXT_OVERFLOW = re.compile(
    r"context[ _]length|context window|maximum context|exceeds? (?:the )?context limit|prompt is too long"
    r"|input is too long|input tokens exceed|too many input tokens",
    re.IGNORECASE,
)
"""How the APIs say a prompt does not fit: OpenAI (and vLLM) "This model's maximum context length is ...",
code ``context_length_exceeded``; Anthropic "prompt is too long: N tokens > M maximum" and "input length and
`max_tokens` exceed context limit"; Bedrock "Input is too long for requested model"."""


def is_context_overflow(message: str) -> bool:
    """Whether a provider's 400 message says the prompt is too long for the model's context window."""
    return _CONTEXT_OVERFLOW.search(message) is not None


class ModelStringError(ValueError):
    """A model string like ``openai:gpt-4o-mini`` could not be understood."""


def parse_model_string(model: str) -> tuple[str, str]:
    """Split ``provider:model-id`` and check the provider is one we know."""
    provider, sep, name = model.partition(":")
    if not sep or not name:
        raise ModelStringError(
            f"model string {model!r} must look like 'provider:model', e.g. 'openai:gpt-4o-mini', "
            "'anthropic:claude-sonnet-4-5', 'bedrock:anthropic.claude-3-haiku-20240307-v1:0' or 'scripted:<agent>'"
        )
    if provider not in PROVIDERS:
        raise ModelStringError(f"unknown model provider {provider!r} in {model!r}; known: {', '.join(PROVIDERS)}")
    return provider, name


PROVIDERS = ("openai", "anthropic", "bedrock", "scripted")
