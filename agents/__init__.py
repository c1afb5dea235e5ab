"""User space: the agents this stack runs, found in this package (ARCHITECTURE.md "User space").

Adding an agent is adding a module here: every module whose name does not start with ``_`` is imported once, in
name order, and one that defines ``AGENT`` (a :class:`core.kernel.agent.Agent`) is registered under ``AGENT.name``; its
``BRAIN``, if it defines one, is the scripted model ``scripted:<name>`` that runs it offline (tests, ``make demo``,
``stepfold serve``). Nothing else names an agent: the wiring, the CLI, the evals and the tests read these mappings.
Modules starting with ``_`` are helpers (``_fake``, ``_script``) and are never registered.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import replace
from typing import TYPE_CHECKING

from core.adapters.llm import LLM, ProviderConfig, make_llm
from core.adapters.llm.scripted import Script, scripted_models
from core.kernel.agent import Agent, UnknownAgentError

if TYPE_CHECKING:
    from core.kernel.trigger_types import Trigger


def _discover() -> tuple[dict[str, Agent], dict[str, Script]]:
    """Import every public module of this package and collect its ``AGENT`` and ``BRAIN``.

    Two modules declaring one name, or an ``AGENT`` that is not an Agent, stop the import: a registry that
    silently kept one of them would run the wrong agent.
    """
    found: dict[str, Agent] = {}
    brains: dict[str, Script] = {}
    owner: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        agent = getattr(module, "AGENT", None)
        if agent is None:
            continue
        if not isinstance(agent, Agent):
            raise TypeError(f"{module.__name__}.AGENT is a {type(agent).__name__}, not a core.kernel.agent.Agent")
        if agent.name in found:
            raise ValueError(f"agent {agent.name!r} is declared by both {owner[agent.name]} and {module.__name__}")
        found[agent.name] = agent
        owner[agent.name] = module.__name__
        brain = getattr(module, "BRAIN", None)
        if brain is not None:
            brains[agent.name] = brain
    return found, brains


AGENTS, BRAINS = _discover()
"""Every agent by name, and the scripted brain of those that have one."""

TRIGGERS: dict[str, tuple[Trigger, ...]] = {a.name: a.triggers for a in AGENTS.values() if a.triggers}
"""Each agent's webhooks, schedules and event rules (Factor 11); core.services.triggers reads them from the agents."""

scripted_model = scripted_models(BRAINS)
"""``scripted_model("travel")``: a fresh :class:`core.adapters.llm.scripted.ScriptedLLM` playing that agent's brain; the
wiring passes it as ``ProviderConfig(scripted=...)``. An unknown name is a ModelStringError listing the known ones."""


def build_llm(model: str, config: ProviderConfig | None = None) -> LLM:
    """:func:`core.adapters.llm.make_llm` with this registry's brains for ``scripted:<name>``.

    For tests, evals and the CLI.
    """
    config = config or ProviderConfig()
    return make_llm(model, config if config.scripted else replace(config, scripted=scripted_model))


def get_agent(name: str) -> Agent:
    try:
        return AGENTS[name]
    except KeyError:
        raise UnknownAgentError(name, sorted(AGENTS)) from None


__all__ = ["AGENTS", "BRAINS", "TRIGGERS", "UnknownAgentError", "build_llm", "get_agent", "scripted_model"]
