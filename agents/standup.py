"""standup: started by a schedule every weekday morning (or by Slack's ``/standup``), not by a person in a chat.

It reads what merged since the previous working day and which incidents are open, posts one digest to the
team channel and says what it posted. :class:`TeamBoard` stands in for the code host and incident tracker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents._fake import FakeSystem
from agents._script import done, results, since_last_input
from core.adapters.llm.scripted import Say
from core.kernel.agent import Agent, Limits
from core.kernel.model import LLMRequest
from core.kernel.tools import Tool, ToolContext
from core.kernel.trigger_types import Schedule, Webhook

CHANNEL = "#standup"


@dataclass
class TeamBoard(FakeSystem):
    """What the digest reads and where it posts (a fake with the shape of a code host + chat)."""

    merged: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"number": 481, "title": "Retry provider throttling with jitter", "merged_on": "2025-01-03"},
            {"number": 484, "title": "Approval pages: keyboard shortcuts", "merged_on": "2025-01-06"},
            {"number": 486, "title": "Fix flaky thread listing test", "merged_on": "2025-01-07"},
        ]
    )
    incidents: list[dict[str, Any]] = field(
        default_factory=lambda: [{"id": "INC-73", "title": "Checkout latency above SLO", "severity": "sev2"}]
    )
    posts: list[tuple[str, str]] = field(default_factory=list)
    RECORDS = ("posts",)

    def post(self, channel: str, text: str, key: str) -> int:
        with self._lock:
            self.runs[key] += 1
            self.posts.append((channel, text))
            return len(self.posts)


BOARD = TeamBoard()


class SinceArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: date | None = Field(default=None, description="Only pull requests merged on or after this day.")


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PostArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=3000, description="The digest, as it should appear in the channel.")


def list_merged_prs(args: SinceArgs, _: ToolContext) -> list[dict[str, Any]]:
    since = args.since.isoformat() if args.since else ""
    return [pr for pr in BOARD.merged if pr["merged_on"] >= since]


def list_open_incidents(_: NoArgs, __: ToolContext) -> list[dict[str, Any]]:
    return list(BOARD.incidents)


def post_digest(args: PostArgs, ctx: ToolContext) -> dict[str, Any]:
    return {"channel": CHANNEL, "message": BOARD.post(CHANNEL, args.text, ctx.idempotency_key)}


TOOLS = (
    Tool("list_merged_prs", "Pull requests merged since a day.", SinceArgs, list_merged_prs, idempotent=True),
    Tool("list_open_incidents", "Incidents that are still open.", NoArgs, list_open_incidents, idempotent=True),
    Tool("post_digest", f"Post the digest to {CHANNEL} (once).", PostArgs, post_digest),
)


def schedule_input(when: datetime) -> str:
    """The first user input of a scheduled run: the day it is for, nothing else (Factor 3)."""
    return (
        f"Write the standup digest for {when:%A %Y-%m-%d}: what merged since the previous working day "
        "and which incidents are still open."
    )


def slash_input(form: dict[str, Any]) -> str:
    """The first user input for Slack's ``/standup``: who asked, where, and what they typed."""
    extra = str(form.get("text") or "").strip()[:500]
    who = str(form.get("user_name") or "someone")
    where = str(form.get("channel_name") or "a channel")
    return f"{who} asked for the standup digest in #{where}." + (f" They added: {extra}" if extra else "")


AGENT = Agent(
    name="standup",
    description="Posts the team's standup digest every weekday morning: merged PRs and open incidents.",
    prompt_id="standup",
    prompt_version=1,
    tools=TOOLS,
    model="scripted:standup",
    limits=Limits(max_steps=8),
    triggers=(
        Schedule("cron(0 9 ? * MON-FRI *)", schedule_input, name="standup-weekdays", timezone="UTC"),
        Webhook("slack", ["/standup"], slash_input),
    ),
)


# --- the scripted brain ---------------------------------------------------------------------------

_DAY = re.compile(r"\b(\d{4}-\d{2}-\d{2})\b")


def previous_working_day(day: date) -> date:
    back = 3 if day.weekday() == 0 else 2 if day.weekday() == 6 else 1
    return day - timedelta(days=back)


def brain(request: LLMRequest) -> Say:
    """What a good model does with the standup prompt, deterministically."""
    first, after = since_last_input(request.events)
    text = first.text if first else ""
    found = _DAY.search(text)
    day = date.fromisoformat(found[1]) if found else None
    by_tool = {r.tool: r.result for r in results(after)}
    if "list_merged_prs" not in by_tool:
        return Say("list_merged_prs", {"since": previous_working_day(day).isoformat()} if day else {})
    if "list_open_incidents" not in by_tool:
        return Say("list_open_incidents", {})
    merged = by_tool["list_merged_prs"] if isinstance(by_tool["list_merged_prs"], list) else []
    incidents = by_tool["list_open_incidents"] if isinstance(by_tool["list_open_incidents"], list) else []
    if "post_digest" not in by_tool:
        lines = [f"Standup digest{f' for {day:%A %Y-%m-%d}' if day else ''}"]
        lines += [f"- merged #{pr['number']} {pr['title']}" for pr in merged if isinstance(pr, dict)] or [
            "- nothing merged"
        ]
        lines += [f"- open {i['id']} ({i['severity']}): {i['title']}" for i in incidents if isinstance(i, dict)]
        return Say("post_digest", {"text": "\n".join(lines)})
    when = f" for {day:%A %Y-%m-%d}" if day else ""
    return done(
        f"Posted the standup digest{when} to {CHANNEL}: {_count(len(merged), 'merged pull request')}, "
        f"{_count(len(incidents), 'open incident')}."
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


BRAIN = brain
"""The scripted model for offline runs (``scripted:standup``): agents/__init__.py registers it with AGENT."""
