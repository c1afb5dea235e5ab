"""triage: started by an event (a new issue webhook), not a person. Labels, routes and acknowledges the issue;
a security report pages on-call only after a human approves. Its final answer is typed (:class:`TriageAnswer`), so a
parent workflow branches on the label and team, not on the summary's words (ARCHITECTURE.md "An agent as a step").

:class:`IssueTracker` stands in for the real tracker's API and counts calls by idempotency key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents._fake import FakeSystem
from agents._script import results, since_last_input
from core.adapters.llm.scripted import Say
from core.kernel.agent import Agent, Limits
from core.kernel.model import LLMRequest
from core.kernel.tools import Tool, ToolContext
from core.kernel.trigger_types import Webhook

Label = Literal["bug", "feature", "question", "security"]
Team = Literal["backend", "frontend", "docs", "product"]


@dataclass
class IssueTracker(FakeSystem):
    """The issue tracker triage acts on (a fake with the shape of GitHub's issues API)."""

    labels: dict[int, set[str]] = field(default_factory=dict)
    teams: dict[int, str] = field(default_factory=dict)
    comments: list[tuple[int, str]] = field(default_factory=list)
    pages: list[tuple[int, str]] = field(default_factory=list)
    RECORDS = ("labels", "teams", "comments", "pages")


TRACKER = IssueTracker()


class LabelArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    issue: int = Field(ge=1)
    label: Label


class TeamArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    issue: int = Field(ge=1)
    team: Team


class CommentArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    issue: int = Field(ge=1)
    body: str = Field(min_length=1, max_length=4000)


class PageArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    issue: int = Field(ge=1)
    summary: str = Field(min_length=1, max_length=500)


class TriageAnswer(BaseModel):
    """What triage decided: the issue, its label, the team it went to and whether on-call was paged."""

    model_config = ConfigDict(extra="forbid")
    issue: int = Field(ge=1, description="The issue's number.")
    label: Label = Field(description="The one label it was given.")
    team: Team | None = Field(description="The team it was routed to; null when it went to nobody (security).")
    paged: bool = Field(description="Whether security on-call was paged (a person approved the page).")


def add_label(args: LabelArgs, ctx: ToolContext) -> dict[str, Any]:
    TRACKER.record(ctx.idempotency_key)
    TRACKER.labels.setdefault(args.issue, set()).add(args.label)
    return {"issue": args.issue, "labels": sorted(TRACKER.labels[args.issue])}


def assign_team(args: TeamArgs, ctx: ToolContext) -> dict[str, Any]:
    TRACKER.record(ctx.idempotency_key)
    TRACKER.teams[args.issue] = args.team
    return {"issue": args.issue, "team": args.team}


def post_comment(args: CommentArgs, ctx: ToolContext) -> dict[str, Any]:
    TRACKER.record(ctx.idempotency_key)
    TRACKER.comments.append((args.issue, args.body))
    return {"issue": args.issue, "comment_id": len(TRACKER.comments)}


def page_oncall(args: PageArgs, ctx: ToolContext) -> dict[str, Any]:
    TRACKER.record(ctx.idempotency_key)
    TRACKER.pages.append((args.issue, args.summary))
    return {"issue": args.issue, "paged": "security-oncall"}


TOOLS = (
    Tool("add_label", "Add one label to the issue.", LabelArgs, add_label, idempotent=True),
    Tool("assign_team", "Route the issue to a team.", TeamArgs, assign_team, idempotent=True),
    Tool("post_comment", "Post a comment on the issue (visible to the reporter).", CommentArgs, post_comment),
    Tool("page_oncall", "Page the security on-call engineer.", PageArgs, page_oncall, policy="needs_approval"),
)


def issue_input(payload: dict[str, Any]) -> str:
    """The first user input for a GitHub ``issues.opened`` payload: only what the model needs (Factor 3)."""
    issue = payload.get("issue") or {}
    repo = (payload.get("repository") or {}).get("full_name", "unknown repo")
    body = str(issue.get("body") or "")[:2000]
    return (
        f"New issue #{issue.get('number')} in {repo} by {(issue.get('user') or {}).get('login', 'unknown')}\n"
        f"Title: {issue.get('title', '')}\n\n{body}"
    )


AGENT = Agent(
    name="triage",
    description="Triages new issues from a webhook: label, route, acknowledge; security pages need approval.",
    prompt_id="triage",
    prompt_version=1,
    tools=TOOLS,
    model="scripted:triage",
    limits=Limits(max_steps=10),
    answer=TriageAnswer,
    triggers=(Webhook("github", ["issues.opened"], issue_input),),
)


# --- the scripted brain ---------------------------------------------------------------------------

_KEYWORDS: tuple[tuple[Label, Team | None, re.Pattern[str]], ...] = (
    ("security", None, re.compile(r"security|vulnerab|xss|injection|leak|cve|exploit", re.I)),
    ("bug", "backend", re.compile(r"crash|error|exception|bug|broken|fails?|500", re.I)),
    ("feature", "product", re.compile(r"feature|would be (nice|great)|support for|please add|request", re.I)),
)


def classify(text: str) -> tuple[Label, Team | None]:
    title = next((line for line in text.splitlines() if line.startswith("Title:")), text)
    for label, team, pattern in _KEYWORDS:
        if pattern.search(title) or pattern.search(text):
            return label, (
                "frontend" if label == "bug" and re.search(r"\b(ui|page|button|css)\b", text, re.I) else team
            )
    return "question", "docs"


def brain(request: LLMRequest) -> Say:
    """What a good model does with the triage prompt, deterministically."""
    first, after = since_last_input(request.events)
    text = first.text if first else ""
    number_match = re.search(r"#(\d+)", text)
    issue = int(number_match[1]) if number_match else 1
    label, team = classify(text)
    done_tools = {r.tool for r in results(after)}
    rejected = any(getattr(e, "decision", None) in ("reject", "expired") for e in after)
    if "add_label" not in done_tools:
        return Say("add_label", {"issue": issue, "label": label})
    if label == "security" and "page_oncall" not in done_tools and not rejected:
        return Say("page_oncall", {"issue": issue, "summary": text.splitlines()[1][:200] if "\n" in text else text})
    if team is not None and "assign_team" not in done_tools:
        return Say("assign_team", {"issue": issue, "team": team})
    if "post_comment" not in done_tools:
        return Say(
            "post_comment",
            {
                "issue": issue,
                "body": "Thanks for the report! We have triaged it and the right team will follow up here.",
            },
        )
    paged = label == "security" and not rejected
    routed = "security on-call" if paged else (team or "nobody")
    return Say(
        "done_for_now",
        {
            "answer": f"Issue #{issue}: labelled {label}, routed to {routed}, reporter acknowledged.",
            "issue": issue,
            "label": label,
            "team": team,
            "paged": paged,
        },
    )


BRAIN = brain
"""The scripted model for offline runs (``scripted:triage``): agents/__init__.py registers it with AGENT."""
