"""Prompt rollout and rollback on the local stack (Factor 2): ``STEPFOLD_PROMPT_VERSIONS`` (the template's
``PromptVersions`` parameter) picks the prompt version of NEW threads; a thread keeps the version it was launched
with. Rolling back is setting the parameter back. Also: a fork at an approval runs as its own execution.

In AWS a parameter change is a redeploy, and new containers read it at their cold start. :func:`_redeploy` does
what that cold start does, on the running local stack's runtime, so one stack shows old and new threads side by side.
"""

from __future__ import annotations

import json
import os

import pytest

from agents import AGENTS, deploybot
from core.kernel.events import LLMCall, ToolCall
from core.kernel.prompts import PromptLibrary
from core.kernel.thread import Thread, fold
from core.services.approvals import Decision
from core.services.control import thread_id_for
from core.services.replay import FORKED_FROM, fork
from functions import api
from functions._wiring import Settings, agents_with_prompt_versions, parse_prompt_versions
from infra.local.stack import LambdaContext, LocalStack
from tests.functional._http import http_event
from tests.functional.conftest import Shared

PRODUCTION = "deploy the latest backend to production"
STAGING = "deploy the frontend to staging"
V1 = PromptLibrary().load("deploybot", 1)
V2 = PromptLibrary().load("deploybot", 2)


def _redeploy(stack: LocalStack, prompt_versions: str) -> None:
    """A deploy with ``PromptVersions=<prompt_versions>``: containers rebuild their settings and agents."""
    rt = stack.rt
    rt.settings = Settings.from_env({**os.environ, "STEPFOLD_PROMPT_VERSIONS": prompt_versions})
    rt.agents = agents_with_prompt_versions(AGENTS, rt.settings.prompt_versions, rt.prompts)


def _hashes(thread: Thread) -> set[str]:
    return {e.prompt_hash for e in thread.events if isinstance(e, LLMCall)}


def _decide(stack: LocalStack, thread_id: str, decision: Decision) -> None:
    approval_id = fold(stack.thread(thread_id)).open_request
    assert approval_id is not None
    stack.decide(approval_id.approval_id, decision)


def _live_versions() -> dict[str, int]:
    """What ``GET /agents`` says each agent's prompt version is."""
    result = api.handler(http_event("GET", "/agents"), LambdaContext(function_name="ApiFunction"))
    return {a["name"]: a["prompt"]["version"] for a in json.loads(result["body"])["agents"]}


def test_new_threads_take_the_deployed_prompt_version_and_old_threads_keep_theirs(stack: LocalStack) -> None:
    old = stack.launch("deploybot", PRODUCTION)
    waiting = stack.wait(old.id)
    assert fold(waiting).status == "awaiting_human"
    assert waiting.labels["prompt_version"] == "1"
    assert _hashes(waiting) == {V1.hash}

    _redeploy(stack, "deploybot=2")  # roll out v2 (the deliberately broken one: evals would have stopped this)

    assert _live_versions()["deploybot"] == 2
    assert _live_versions()["calculator"] == 1
    new = stack.wait(stack.launch("deploybot", STAGING).id)
    assert new.labels["prompt_version"] == "2"
    assert _hashes(new) == {V2.hash}
    assert fold(new).status == "awaiting_human", "v2 turned a staging deploy into a production one"
    assert [c.args["environment"] for c in new.events if isinstance(c, ToolCall) and not c.prefetch] == ["production"]

    _decide(stack, old.id, Decision(decision="approve", by="alice"))
    finished = stack.wait(old.id)
    assert fold(finished).answer == "Deployed backend v1.5.0 to production."
    assert _hashes(finished) == {V1.hash}, "the old thread kept v1 for the steps it ran after the rollout"

    _redeploy(stack, "")  # roll back: the parameter's default, each agent's own version

    assert _live_versions()["deploybot"] == 1
    after = stack.wait(stack.launch("deploybot", STAGING).id)
    assert after.labels["prompt_version"] == "1"
    assert _hashes(after) == {V1.hash}
    assert fold(after).answer == "Deployed frontend v1.5.0 to staging."
    _decide(stack, new.id, Decision(decision="reject", by="alice", comment="wrong environment"))
    rejected = stack.wait(new.id)
    assert _hashes(rejected) == {V2.hash}, "a thread started under v2 stays on v2 after the rollback"
    assert [(d["environment"], d["component"]) for d in deploybot.SERVICE.deployments] == [
        ("production", "backend"),
        ("staging", "frontend"),
    ]


def test_the_prompt_versions_are_read_at_cold_start(shared: Shared) -> None:
    env = {"POWERTOOLS_LOG_LEVEL": "WARNING", "STEPFOLD_PROMPT_VERSIONS": "deploybot=v2"}
    with shared.lease(env) as stack:
        assert stack.rt.settings.prompt_versions == {"deploybot": 2}
        assert {name: a.prompt_version for name, a in stack.rt.agents.items()}["deploybot"] == 2
        thread = stack.wait(stack.launch("deploybot", STAGING).id)
        assert _hashes(thread) == {V2.hash}


def test_a_fork_at_an_approval_waits_for_its_own_human_and_ends_on_its_own(stack: LocalStack) -> None:
    original = stack.wait(stack.launch("deploybot", PRODUCTION).id)
    rt = stack.rt
    forked = fork(
        rt.threads,
        original.id,
        original.version,
        new_id=thread_id_for("deploybot", None),
        executions=rt.executions,
        agents=rt.agents,
        prompts=rt.prompts,
    )
    waiting = stack.wait(forked.id)
    assert fold(waiting).status == "awaiting_human"
    assert waiting.labels[FORKED_FROM] == original.id
    sent = {approval.thread_id: approval.approval_id for approval, _ in stack.notifier.sent}
    assert sent[forked.id] != sent[original.id], "the fork's link answers the fork only"

    _decide(stack, forked.id, Decision(decision="approve", by="alice"))
    _decide(stack, original.id, Decision(decision="reject", by="bob"))

    assert fold(stack.wait(forked.id)).answer == "Deployed backend v1.5.0 to production."
    assert fold(stack.wait(original.id)).answer == (
        "Deployed nothing. Did not deploy v1.5.0 to production: bob rejected it: no reason given."
    )
    assert [d["key"].split(":")[0] for d in deploybot.SERVICE.deployments] == [forked.id]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", {}),
        ("deploybot=2", {"deploybot": 2}),
        (" deploybot = v2 , calculator=1 ,", {"deploybot": 2, "calculator": 1}),
    ],
)
def test_the_setting_parses_agent_equals_version(value: str, expected: dict[str, int]) -> None:
    assert parse_prompt_versions(value) == expected


@pytest.mark.parametrize("value", ["deploybot", "deploybot=", "deploybot=two", "=2", "deploybot=0"])
def test_a_malformed_setting_is_refused_with_the_expected_shape(value: str) -> None:
    with pytest.raises(ValueError, match=r"must look like agent=N, e\.g\. support=2"):
        Settings.from_env({"STEPFOLD_PROMPT_VERSIONS": value})


def test_an_unknown_agent_or_a_missing_prompt_fails_at_cold_start() -> None:
    with pytest.raises(ValueError, match="names deplyobot, which this stack does not run"):
        agents_with_prompt_versions(AGENTS, {"deplyobot": 2}, PromptLibrary())
    with pytest.raises(ValueError, match="no prompt calculator/v3"):
        agents_with_prompt_versions(AGENTS, {"calculator": 3}, PromptLibrary())
    pinned = agents_with_prompt_versions(AGENTS, {"deploybot": 2}, PromptLibrary())
    assert pinned["deploybot"].prompt_version == 2
    assert AGENTS["deploybot"].prompt_version == 1, "the registry itself is not changed"
