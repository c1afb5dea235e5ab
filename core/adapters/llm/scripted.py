"""A deterministic model for tests and the demo (like pydantic-ai's ``FunctionModel``).

It is stateless across processes: a script of tool calls is indexed by how many model calls the
thread already has, so a Lambda that runs each step in a fresh invocation replays it correctly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.kernel.context import approx_tokens
from core.kernel.events import LLMCall
from core.kernel.model import LLMRequest, LLMRequestError, LLMResponse, ModelStringError, Usage


@dataclass(frozen=True)
class Say:
    """A scripted answer: call ``tool`` with ``args`` (a dict, or a raw string to test bad JSON)."""

    tool: str | None
    args: dict[str, Any] | str

    @classmethod
    def text(cls, text: str) -> Say:
        """The model answers with prose instead of a tool call."""
        return cls(None, text)


Brain = Callable[[LLMRequest], Say]
Script = Sequence[Say] | Brain
"""What a scripted model plays: a fixed list of answers (one per model call) or a function of the request."""


class ScriptedLLM:
    """Replays a list of :class:`Say`, or asks a function of the request what to say next."""

    def __init__(self, script: Script, *, name: str = "scripted") -> None:
        self.name = name
        self._script = script
        self.calls: list[LLMRequest] = []

    def complete(self, request: LLMRequest) -> LLMResponse:
        self.calls.append(request)
        if callable(self._script):
            say = self._script(request)
        else:
            done = sum(isinstance(e, LLMCall) for e in request.events)
            if done >= len(self._script):
                raise LLMRequestError(self.name, f"script has {len(self._script)} answers; call {done + 1} asked")
            say = self._script[done]
        out = say.args if isinstance(say.args, str) else json.dumps(say.args)
        usage = Usage(approx_tokens(request.system) + approx_tokens(request.context), approx_tokens(out) + 8)
        if say.tool is None:
            return LLMResponse(tool=None, text=out, usage=usage, model=request.model)
        return LLMResponse(tool=say.tool, arguments=say.args, usage=usage, model=request.model)


def scripted_models(brains: Mapping[str, Script]) -> Callable[[str], ScriptedLLM]:
    """The ``scripted:<name>`` factory for ``ProviderConfig(scripted=...)``, over brains the caller owns.

    The kernel knows no agent (ARCHITECTURE.md "User space"): the wiring passes the registry's brains in, so a
    new agent's brain is found without any change here.
    """

    def build(name: str) -> ScriptedLLM:
        try:
            script = brains[name]
        except KeyError:
            known = ", ".join(sorted(brains)) or "none"
            raise ModelStringError(f"no scripted model {name!r}; known: {known}") from None
        return ScriptedLLM(script, name=name)

    return build
