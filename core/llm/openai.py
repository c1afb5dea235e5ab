"""OpenAI chat completions, and any server that speaks the same API (vLLM, Ollama, LiteLLM, llama.cpp...)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from core.llm._http import JSONPoster, malformed, token_count
from core.llm.base import LLMRequest, LLMRequestError, LLMResponse, Usage

PROVIDER = "openai"

_OPENAI_HOST = "api.openai.com"


class OpenAIChat:
    """One chat completion per step, with ``tool_choice="required"`` so the model must answer with a tool call.

    Args:
        model: the model id the endpoint knows, e.g. ``gpt-4o-mini``.
        base_url: API root including the version, e.g. ``https://api.openai.com/v1`` or ``http://localhost:11434/v1``.
        api_key: sent as a Bearer token; None for local servers that need none.
        client: an httpx client to reuse (tests pass one with ``httpx.MockTransport``); None builds one on first call.
        timeout_s: timeout of the client built when none is injected.
    """

    def __init__(
        self, model: str, *, base_url: str, api_key: str | None, client: httpx.Client | None, timeout_s: float
    ) -> None:
        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self._api_key = api_key
        self._poster = JSONPoster(PROVIDER, client, timeout_s)
        # OpenAI deprecated max_tokens (its reasoning models reject it); most compatible servers only know max_tokens.
        self._max_tokens_field = (
            "max_completion_tokens" if urlsplit(self.url).hostname == _OPENAI_HOST else "max_tokens"
        )

    def complete(self, request: LLMRequest) -> LLMResponse:
        """Ask for exactly one tool call; a text-only answer comes back with ``tool=None``."""
        headers = {"content-type": "application/json"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        data = self._poster.post(self.url, headers=headers, body=self.request_body(request))
        return _parse(data, self.model)

    def request_body(self, request: LLMRequest) -> dict[str, Any]:
        """The chat-completions body: system + rendered context as one user message, every tool as a function."""
        return {
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


def _parse(data: dict[str, Any], requested_model: str) -> LLMResponse:
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
    if not tool_calls:
        return LLMResponse(tool=None, text=text, usage=usage, model=model)
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
    return LLMResponse(tool=name, arguments=arguments, text=text, usage=usage, model=model)


def _usage(usage: object) -> Usage:
    """Token counts; compatible servers sometimes omit them, which counts as zero rather than failing the step."""
    if not isinstance(usage, dict):
        return Usage()
    return Usage(
        input_tokens=token_count(usage.get("prompt_tokens")), output_tokens=token_count(usage.get("completion_tokens"))
    )


def _bad(missing: str, data: dict[str, Any]) -> LLMRequestError:
    return malformed(PROVIDER, "OpenAI chat-completions", missing, data)
