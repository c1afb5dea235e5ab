"""oncall: looks into a service alert with its own tool and the tools of an MCP server (ARCHITECTURE.md "MCP tools").

Its own tool, ``recent_deploys``, reads the deploy log (:data:`DEPLOYS`, a fake). The ``ops`` MCP server (in
``make demo`` and the tests the example server of infra/local/mcp_server.py; in production any streamable HTTP MCP
server, its URL in ``STEPFOLD_MCP_OPS_URL`` and its token in the ``mcp_servers`` key of the step's secret) lists
``service_status``, which it marks read-only, so it runs unasked, and ``restart_service``, which it marks
destructive, so a person approves each restart. Nothing here says so: the server's annotations do.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents._script import done, failed_after_last_result, results, since_last_input
from core.adapters.llm.scripted import Say
from core.kernel.agent import Agent, Limits
from core.kernel.events import HumanResponse
from core.kernel.mcp import McpServer
from core.kernel.model import LLMRequest
from core.kernel.tools import Tool, ToolContext

DEPLOYS: dict[str, list[dict[str, Any]]] = {
    "checkout": [{"version": "v2.8.1", "at": "2026-12-01T08:55:00Z", "by": "ci"}],
    "search": [{"version": "v5.2.0", "at": "2026-11-30T16:10:00Z", "by": "ci"}],
}


class Service(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: str = Field(min_length=1, max_length=64, description="The service's name, e.g. checkout.")


def recent_deploys(args: Service, ctx: ToolContext) -> list[dict[str, Any]]:
    return DEPLOYS.get(args.service, [])


OPS = McpServer("ops", url_setting="STEPFOLD_MCP_OPS_URL", only=("service_status", "restart_service"))
"""The ops server's tools this agent uses; their policies come from the server's annotations."""

AGENT = Agent(
    name="oncall",
    description="Looks into a service alert and restarts the service once a person approves.",
    prompt_id="oncall",
    prompt_version=1,
    tools=(Tool("recent_deploys", "The latest deploys of a service.", Service, recent_deploys, idempotent=True),),
    mcp=(OPS,),
    model="scripted:oncall",
    limits=Limits(max_steps=10, max_cost_usd=0.50),
)


def brain(request: LLMRequest) -> Say:
    """Deploys, then status, then a restart if the service is not ok; a failure or a rejection ends the thread."""
    user, since = since_last_input(request.events)
    text = user.text.lower() if user is not None else ""
    service = next((name for name in DEPLOYS if name in text), "checkout")
    done_tools = {r.tool: r.result for r in results(since)}
    if (error := failed_after_last_result(since)) is not None:
        return done(f"Could not finish looking into {service}: {error.message}")
    if any(isinstance(e, HumanResponse) and e.decision == "reject" for e in since):
        return done(f"{service} is not ok; the restart was rejected, so it was left as it is.")
    if "recent_deploys" not in done_tools:
        return Say("recent_deploys", {"service": service})
    if "service_status" not in done_tools:
        return Say("service_status", {"service": service})
    status = done_tools["service_status"]
    state = status.get("status") if isinstance(status, dict) else None
    if state == "ok":
        return done(f"{service} is ok; nothing to do.")
    if "restart_service" not in done_tools:
        return Say("restart_service", {"service": service, "reason": f"status {state} after the latest deploy"})
    return done(f"{service} was {state}; restarted it after approval.")


BRAIN = brain
