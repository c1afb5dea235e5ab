"""The example agents (Factor 10) and their scripted brains: explicit registries, nothing registers itself."""

from __future__ import annotations

from core.agent import Agent, UnknownAgentError
from core.agents import calculator, deploybot, triage
from core.llm.scripted import Brain

AGENTS: dict[str, Agent] = {a.name: a for a in (calculator.AGENT, deploybot.AGENT, triage.AGENT)}
SCRIPTED_BRAINS: dict[str, Brain] = {
    "calculator": calculator.brain,
    "deploybot": deploybot.brain,
    "triage": triage.brain,
}


def get_agent(name: str) -> Agent:
    try:
        return AGENTS[name]
    except KeyError:
        raise UnknownAgentError(name, sorted(AGENTS)) from None


__all__ = ["AGENTS", "SCRIPTED_BRAINS", "UnknownAgentError", "get_agent"]
