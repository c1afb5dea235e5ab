"""Agents (mounted at ``/agents``): the agents this stack runs, with their prompt version, model and tools."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from core.kernel.agent import Agent
from functions._wiring import Runtime, runtime
from functions.routes.models import AgentList, AgentView, PromptView, ToolView, documented

router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves Router.__init__ unannotated


@router.get("/", tags=["agents"], summary="The agents this stack runs", responses=documented(422))
def list_agents() -> AgentList:
    rt = runtime()
    return AgentList(agents=[_agent_view(rt, agent) for agent in rt.agents.values()])


def _agent_view(rt: Runtime, agent: Agent) -> AgentView:
    prompt = rt.prompts.load(agent.prompt_id, agent.prompt_version)
    tools = [
        ToolView(
            name=t.name, policy=t.policy if isinstance(t.policy, str) else "depends on args", idempotent=t.idempotent
        )
        for t in agent.tools
    ]
    return AgentView(
        name=agent.name,
        description=agent.description,
        prompt=PromptView(id=prompt.id, version=prompt.version, hash=prompt.short_hash),
        model=rt.model_for(agent),
        tools=tools,
    )
