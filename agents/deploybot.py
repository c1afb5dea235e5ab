"""deploybot: deploys tagged builds; staging automatically, production only after a human approves.

The tags and deployments live in :class:`DeployService`, a small in-process stand-in for a real CI/CD
API. It counts every call by idempotency key, so tests can prove a deploy ran exactly once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agents._fake import FakeSystem
from agents._script import ask, done, last_of, results, since_last_input
from core.adapters.llm.scripted import Say
from core.kernel.agent import Agent, Limits, Prefetch
from core.kernel.events import Event, HumanResponse, ToolResult
from core.kernel.model import LLMRequest
from core.kernel.tools import Policy, Tool, ToolContext

Environment = Literal["staging", "production"]


@dataclass
class DeployService(FakeSystem):
    """The external system deploybot acts on (a fake with the shape of a real deploy API)."""

    tags: tuple[str, ...] = ("v1.5.0", "v1.4.2", "v1.4.1", "v1.4.0")
    deployments: list[dict[str, str]] = field(default_factory=list)
    RECORDS = ("deployments",)

    def deploy(self, component: str, tag: str, environment: str, key: str) -> dict[str, str]:
        if tag not in self.tags:
            raise ValueError(f"tag {tag} does not exist; known tags: {', '.join(self.tags)}")
        with self._lock:
            self.runs[key] += 1
            record = {"component": component, "tag": tag, "environment": environment, "key": key}
            self.deployments.append(record)
        return {
            "status": "deployed",
            "component": component,
            "tag": tag,
            "environment": environment,
            "url": f"https://{'' if environment == 'production' else 'staging.'}example.com",
        }


SERVICE = DeployService()


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeployArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tag: str = Field(pattern=r"^v\d+\.\d+\.\d+(?:-[a-z0-9.]+)?$", description="A git tag from list_git_tags.")
    environment: Environment


def list_git_tags(_: NoArgs, __: ToolContext) -> list[str]:
    return list(SERVICE.tags)


def deploy_backend(args: DeployArgs, ctx: ToolContext) -> dict[str, str]:
    return SERVICE.deploy("backend", args.tag, args.environment, ctx.idempotency_key)


def deploy_frontend(args: DeployArgs, ctx: ToolContext) -> dict[str, str]:
    return SERVICE.deploy("frontend", args.tag, args.environment, ctx.idempotency_key)


def production_needs_approval(args: DeployArgs) -> Policy:
    """Deterministic code, not the model, decides which deploys need a human."""
    return "needs_approval" if args.environment == "production" else "auto"


TOOLS = (
    Tool("list_git_tags", "List release tags, newest first.", NoArgs, list_git_tags, idempotent=True),
    Tool(
        "deploy_backend",
        "Deploy a backend tag to an environment.",
        DeployArgs,
        deploy_backend,
        policy=production_needs_approval,
    ),
    Tool(
        "deploy_frontend",
        "Deploy a frontend tag to an environment.",
        DeployArgs,
        deploy_frontend,
        policy=production_needs_approval,
    ),
)

AGENT = Agent(
    name="deploybot",
    description="Deploys tagged builds: staging automatically, production only with a human's approval.",
    prompt_id="deploybot",
    prompt_version=1,
    tools=TOOLS,
    model="scripted:deploybot",
    limits=Limits(max_steps=15),
    prefetch=(Prefetch("list_git_tags"),),
)


# --- the scripted brain ---------------------------------------------------------------------------

_TAG = re.compile(r"\bv\d+\.\d+\.\d+(?:-[a-z0-9.]+)?\b")
_ALWAYS_DEPLOY_TO = re.compile(r"^\s*-\s*always deploy to (staging|production)\b", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class PromptRules:
    """The rules the brain takes from the system prompt it is given, as a model would (so a prompt edit
    changes its decisions, and evals can catch a bad one). v1 has none that override the request."""

    environment: str | None = None
    """A rule line ``- Always deploy to <environment>`` sends every deploy there, whatever was asked."""


def prompt_rules(system: str) -> PromptRules:
    """The rule lines of a rendered deploybot system prompt that change what the brain decides."""
    always = _ALWAYS_DEPLOY_TO.search(system)
    return PromptRules(environment=always[1].lower() if always else None)


@dataclass(frozen=True)
class _Want:
    components: tuple[str, ...]
    environment: str | None
    tag: str | None


def _wanted(text: str, tags: list[str], told: PromptRules) -> _Want:
    lower = text.lower()
    components = tuple(c for c in ("backend", "frontend") if c in lower) or (
        ("backend", "frontend") if "both" in lower or "everything" in lower else ()
    )
    environment = (
        "production" if re.search(r"\bprod(uction)?\b", lower) else ("staging" if "staging" in lower else None)
    )
    explicit = _TAG.search(lower)
    tag = explicit[0] if explicit else (tags[0] if tags and ("latest" in lower or "newest" in lower) else None)
    if environment is not None and told.environment is not None:
        environment = told.environment
    return _Want(components, environment, tag)


def brain(request: LLMRequest) -> Say:
    """What a model does with the deploybot prompt it is given, deterministically."""
    told = prompt_rules(request.system)
    first, after = since_last_input(request.events)
    tag_results = [r for r in results(request.events, prefetch=True) if r.tool == "list_git_tags"]
    tags = list(tag_results[-1].result) if tag_results else []
    if not tags:
        return Say("list_git_tags", {})
    want = _wanted(first.text if first else "", tags, told)
    if not want.components or not want.environment:
        answer = last_of(after, HumanResponse)
        if answer is not None and answer.answer:
            want = _wanted(f"{first.text if first else ''} {answer.answer}", tags, told)
        if not want.components or not want.environment:
            return ask(
                "Which component (backend, frontend or both) and which environment (staging or production)?",
                context=first.text if first else "",
            )
    tag = want.tag or tags[0]
    deployed = {
        (r.result["component"], r.result["environment"])
        for r in results(after)
        if r.tool.startswith("deploy") and isinstance(r.result, dict)
    }
    rejection = _last_rejection(after)
    if rejection is not None:
        reason = rejection.comment.lower()
        other = _TAG.search(reason)
        if "staging" in reason and (want.components[0], "staging") not in deployed:
            return Say(f"deploy_{want.components[0]}", {"tag": tag, "environment": "staging"})
        if other and other[0] != tag and (want.components[0], want.environment) not in deployed:
            return Say(f"deploy_{want.components[0]}", {"tag": other[0], "environment": want.environment})
        done_text = ", ".join(f"{c} to {e}" for c, e in sorted(deployed)) or "nothing"
        why = (
            "nobody approved it before the request expired"
            if rejection.decision == "expired"
            else f"{rejection.by} rejected it: {rejection.comment or 'no reason given'}"
        )
        return done(f"Deployed {done_text}. Did not deploy {tag} to {want.environment}: {why}.")
    for component in want.components:
        if (component, want.environment) not in deployed:
            return Say(f"deploy_{component}", {"tag": tag, "environment": want.environment})
    summary = ", ".join(f"{c} {tag} to {want.environment}" for c in want.components)
    return done(f"Deployed {summary}.")


def _last_rejection(events: list[Event]) -> HumanResponse | None:
    for event in reversed(events):
        if isinstance(event, ToolResult):
            return None
        if isinstance(event, HumanResponse) and event.decision in ("reject", "expired"):
            return event
    return None


BRAIN = brain
"""The scripted model for offline runs (``scripted:deploybot``): agents/__init__.py registers it with AGENT."""
