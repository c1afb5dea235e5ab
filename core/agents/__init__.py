"""The example agents (Factor 10) and their scripted brains: explicit registries, nothing registers itself."""

from __future__ import annotations

from core.agent import Agent, UnknownAgentError
from core.agents import calculator, deploybot, orders, standup, triage
from core.llm.scripted import Brain
from core.triggers import Trigger

AGENTS: dict[str, Agent] = {
    a.name: a for a in (calculator.AGENT, deploybot.AGENT, triage.AGENT, standup.AGENT, orders.AGENT)
}
SCRIPTED_BRAINS: dict[str, Brain] = {
    "calculator": calculator.brain,
    "deploybot": deploybot.brain,
    "triage": triage.brain,
    "standup": standup.brain,
    "orders": orders.brain,
}
TRIGGERS: dict[str, tuple[Trigger, ...]] = {a.name: a.triggers for a in AGENTS.values() if a.triggers}
"""Each agent's webhooks, schedules and event rules (Factor 11); core.triggers reads them from the agents."""


def get_agent(name: str) -> Agent:
    try:
        return AGENTS[name]
    except KeyError:
        raise UnknownAgentError(name, sorted(AGENTS)) from None


__all__ = ["AGENTS", "SCRIPTED_BRAINS", "TRIGGERS", "UnknownAgentError", "get_agent"]
