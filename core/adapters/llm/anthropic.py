"""Anthropic Messages API over plain httpx: one POST per step does not need the SDK's import weight."""

from __future__ import annotations

from typing import Any

import httpx

from core.adapters.llm._http import CONNECT_TIMEOUT_S, JSONPoster, malformed, token_count
from core.kernel.model import LLMRequest, LLMRequestError, LLMResponse, StopReason, Usage, as_problem, read_stop

PROVIDER = "anthropic"

API_VERSION = "2023-06-01"
"""The ``anthropic-version`` header: the only version of the Messages API so far."""

_STOPS: dict[str, StopReason] = {
    "tool_use": "tool_use",
    "end_turn": "end_turn",
    "stop_sequence": "end_turn",
    "pause_turn": "other",
    "max_tokens": "output_truncated",
    "refusal": "refused",
    "model_context_window_exceeded": "context_window_exceeded",
}
"""The Messages API's ``stop_reason`` values, in the normalised words of :data:`~core.kernel.model.StopReason`."""


class AnthropicMessages:
    """One Messages call per step, with ``tool_choice`` ``any`` so the model must answer with a tool call.

    Args:
        model: the model id, e.g. ``claude-sonnet-4-5``.
        base_url: API root without the version, e.g. ``https://api.anthropic.com``.
        api_key: sent as ``x-api-key``; None when a proxy in front of the API adds it.
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
        self.url = base_url.rstrip("/") + "/v1/messages"
        self._api_key = api_key
        self._poster = JSONPoster(PROVIDER, client, timeout_s, connect_timeout_s)

    def close(self) -> None:
        """Close the HTTP client built for this model, if one was (a Lambda container keeps it for its lifetime)."""
        self._poster.close()

    def complete(self, request: LLMRequest) -> LLMResponse:
        """Ask for exactly one tool call; a text-only answer comes back with ``tool=None``."""
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        data = self._poster.post(self.url, headers=headers, body=self.request_body(request))
        return _parse(data, self.model, request.max_output_tokens)

    def request_body(self, request: LLMRequest) -> dict[str, Any]:
        """The Messages body: the rendered context as the single user turn, every tool with its input schema.

        ``disable_parallel_tool_use`` makes "any" mean exactly one tool call, as ``parallel_tool_calls=false`` does
        for OpenAI.
        """
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_output_tokens,
            "messages": [{"role": "user", "content": request.context}],
            "tools": [
                {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in request.tools
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        }
        if request.system:
            body["system"] = request.system
        return body


def _parse(data: dict[str, Any], requested_model: str, max_output_tokens: int) -> LLMResponse:
    """Read the first ``tool_use`` block (its ``input`` is already an object) and any text around it."""
    content = data.get("content")
    if not isinstance(content, list):
        raise _bad("no content list", data)
    blocks = [block for block in content if isinstance(block, dict)]
    text = "".join(b["text"] for b in blocks if b.get("type") == "text" and isinstance(b.get("text"), str))
    reported = data.get("model")
    model = f"{PROVIDER}:{reported if isinstance(reported, str) and reported else requested_model}"
    usage = _usage(data.get("usage"))
    tool_use = next((b for b in blocks if b.get("type") == "tool_use"), None)
    name = tool_use.get("name") if tool_use is not None else None
    reason, why = _stop(data.get("stop_reason"), name if isinstance(name, str) else None, max_output_tokens, text)
    if tool_use is None:
        return LLMResponse(tool=None, text=text, usage=usage, model=model, stop_reason=reason, stop_message=why)
    if not isinstance(name, str) or not name:
        raise _bad("no name in the tool_use block", data)
    arguments = tool_use.get("input")
    if not isinstance(arguments, dict):
        if as_problem(reason) is None:
            raise _bad("the tool_use block's input is not an object", data)
        arguments = {}  # a cut-off block; the stop reason, not its input, is what the step records
    return LLMResponse(
        tool=name, arguments=arguments, text=text, usage=usage, model=model, stop_reason=reason, stop_message=why
    )


def _stop(raw: object, tool: str | None, max_output_tokens: int, text: str) -> tuple[StopReason | None, str]:
    """The normalised ``stop_reason`` and, for a problem stop, its message (a refusal quotes what Claude said)."""
    quote = text if raw == "refusal" else ""
    return read_stop(
        raw, _STOPS, provider=PROVIDER, field="stop_reason", max_output_tokens=max_output_tokens, tool=tool, quote=quote
    )


def _usage(usage: object) -> Usage:
    """Token counts. ``input_tokens`` excludes prompt-cache reads and writes, which this provider does not request."""
    if not isinstance(usage, dict):
        return Usage()
    return Usage(
        input_tokens=token_count(usage.get("input_tokens")), output_tokens=token_count(usage.get("output_tokens"))
    )


def _bad(missing: str, data: dict[str, Any]) -> LLMRequestError:
    return malformed(PROVIDER, "Anthropic Messages", missing, data)
