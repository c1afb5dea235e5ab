"""OpenAI chat completions, and any server that speaks the same API (vLLM, Ollama, LiteLLM, llama.cpp...)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx

from core.adapters.llm._http import CONNECT_TIMEOUT_S, JSONPoster, malformed, token_count
from core.kernel.model import LLMRequest, LLMRequestError, LLMResponse, StopReason, Usage, as_problem, stop_message

PROVIDER = "openai"

_OPENAI_HOST = "api.openai.com"

_O_SERIES = re.compile(r"o\d")
"""o1, o1-mini, o3, o3-mini, o4-mini... (dated ids too): they answer 400 ``unsupported_parameter`` to
``parallel_tool_calls`` and to ``max_tokens``."""

_FINISH: dict[str, StopReason] = {
    "stop": "end_turn",  # also what a forced tool call (tool_choice "required") finishes with
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "output_truncated",
    "content_filter": "guardrail",
}
"""Chat-completions ``finish_reason`` values, in the normalised words of :data:`~core.kernel.model.StopReason`."""


def _model_name(model: str) -> str:
    """The bare model id: proxies such as OpenRouter and LiteLLM prefix it (``openai/o3-mini``)."""
    return model.rsplit("/", 1)[-1].lower()


def is_o_series(model: str) -> bool:
    """An o-series reasoning model, which refuses ``parallel_tool_calls`` (and ``max_tokens``)."""
    return _O_SERIES.match(_model_name(model)) is not None


def is_reasoning_model(model: str) -> bool:
    """A reasoning model (o-series, gpt-5 but not gpt-5-chat): it takes ``max_completion_tokens``, never ``max_tokens``.

    gpt-5 models do accept ``parallel_tool_calls``; like the o-series they refuse ``temperature``, which this
    provider never sends.
    """
    name = _model_name(model)
    return is_o_series(model) or (name.startswith("gpt-5") and not name.startswith("gpt-5-chat"))


class OpenAIChat:
    """One chat completion per step, with ``tool_choice="required"`` so the model must answer with a tool call.

    Args:
        model: the model id the endpoint knows, e.g. ``gpt-4o-mini``.
        base_url: API root including the version, e.g. ``https://api.openai.com/v1`` or ``http://localhost:11434/v1``.
        api_key: sent as a Bearer token; None for local servers that need none.
        client: an httpx client to reuse (tests pass one with ``httpx.MockTransport``); None builds one on first call.
        timeout_s: read timeout of the client built when none is injected: how long the model may take to answer.
        connect_timeout_s: connect timeout of that client.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key: str | None,
        client: httpx.Client | None,
        timeout_s: float,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self._api_key = api_key
        self._poster = JSONPoster(PROVIDER, client, timeout_s, connect_timeout_s)
        # OpenAI deprecated max_tokens (its reasoning models reject it, wherever they are served from); most
        # compatible servers only know max_tokens.
        self._max_tokens_field = (
            "max_completion_tokens"
            if urlsplit(self.url).hostname == _OPENAI_HOST or is_reasoning_model(model)
            else "max_tokens"
        )
        self._parallel_tool_calls = not is_o_series(model)

    def close(self) -> None:
        """Close the HTTP client built for this model, if one was (a Lambda container keeps it for its lifetime)."""
        self._poster.close()

    def complete(self, request: LLMRequest) -> LLMResponse:
        """Ask for exactly one tool call; a text-only answer comes back with ``tool=None``."""
        headers = {"content-type": "application/json"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        data = self._poster.post(self.url, headers=headers, body=self.request_body(request))
        return _parse(data, self.model, request.max_output_tokens)

    def request_body(self, request: LLMRequest) -> dict[str, Any]:
        """The chat-completions body: system + rendered context as one user message, every tool as a function.

        ``parallel_tool_calls`` is false, so "required" means exactly one call, except for the o-series, which
        refuse the parameter (and make one call at a time anyway).
        """
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.context},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in request.tools
            ],
            "tool_choice": "required",
            "parallel_tool_calls": False,
            self._max_tokens_field: request.max_output_tokens,
        }
        if not self._parallel_tool_calls:
            del body["parallel_tool_calls"]
        return body


def _parse(data: dict[str, Any], requested_model: str, max_output_tokens: int) -> LLMResponse:
    """Read the first tool call of the first choice, keeping its arguments as the raw JSON string."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _bad("no choices[0]", data)
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise _bad("no choices[0].message", data)
    text = message.get("content") or message.get("refusal") or ""
    if not isinstance(text, str):
        raise _bad("choices[0].message.content is not a string", data)
    tool_calls = message.get("tool_calls") or []
    if not isinstance(tool_calls, list):
        raise _bad("choices[0].message.tool_calls is not a list", data)
    reported = data.get("model")
    model = f"{PROVIDER}:{reported if isinstance(reported, str) and reported else requested_model}"
    usage = _usage(data.get("usage"))
    call = _tool_call(tool_calls, data)
    reason, why = _stop(choices[0], message, call[0] if call else None, max_output_tokens, data.get("usage"))
    if call is None:
        return LLMResponse(tool=None, text=text, usage=usage, model=model, stop_reason=reason, stop_message=why)
    name, arguments = call
    return LLMResponse(
        tool=name, arguments=arguments, text=text, usage=usage, model=model, stop_reason=reason, stop_message=why
    )


def _tool_call(tool_calls: list[Any], data: dict[str, Any]) -> tuple[str, str | dict[str, Any]] | None:
    """The first tool call's name and raw arguments, or None when the model made none."""
    if not tool_calls:
        return None
    function = tool_calls[0].get("function") if isinstance(tool_calls[0], dict) else None
    if not isinstance(function, dict):
        raise _bad("no choices[0].message.tool_calls[0].function", data)
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise _bad("no tool_calls[0].function.name", data)
    arguments = function.get("arguments")
    if arguments is None:
        arguments = "{}"
    if not isinstance(arguments, str | dict):
        raise _bad("tool_calls[0].function.arguments is neither a JSON string nor an object", data)
    return name, arguments


def _stop(
    choice: dict[str, Any], message: dict[str, Any], tool: str | None, max_output_tokens: int, usage: object
) -> tuple[StopReason | None, str]:
    """The normalised stop reason and, for a problem stop, its message.

    A refusal comes as ``message.refusal`` with an ordinary ``finish_reason``; a reasoning model's truncation
    often spent the whole budget on reasoning, which the message says, since a larger limit is then the fix.
    """
    raw = choice.get("finish_reason")
    reason: StopReason | None = _FINISH.get(raw, "other") if isinstance(raw, str) else None
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal and as_problem(reason) is None:
        return "refused", stop_message(
            "refused", PROVIDER, "message.refusal", max_output_tokens=max_output_tokens, tool=tool, quote=refusal
        )
    if reason == "end_turn" and tool is not None:
        reason = "tool_use"
    problem = as_problem(reason)
    if problem is None:
        return reason, ""
    why = stop_message(problem, PROVIDER, f"finish_reason {raw!r}", max_output_tokens=max_output_tokens, tool=tool)
    reasoning = _reasoning_tokens(usage)
    if problem == "output_truncated" and reasoning:
        why += f" ({reasoning} of the output tokens went to the model's hidden reasoning: raise max_output_tokens)"
    return reason, why


def _reasoning_tokens(usage: object) -> int:
    """``usage.completion_tokens_details.reasoning_tokens`` of a reasoning model, else zero."""
    details = usage.get("completion_tokens_details") if isinstance(usage, dict) else None
    return token_count(details.get("reasoning_tokens")) if isinstance(details, dict) else 0


def _usage(usage: object) -> Usage:
    """Token counts; compatible servers sometimes omit them, which counts as zero rather than failing the step."""
    if not isinstance(usage, dict):
        return Usage()
    return Usage(
        input_tokens=token_count(usage.get("prompt_tokens")), output_tokens=token_count(usage.get("completion_tokens"))
    )


def _bad(missing: str, data: dict[str, Any]) -> LLMRequestError:
    return malformed(PROVIDER, "OpenAI chat-completions", missing, data)
