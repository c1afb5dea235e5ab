"""Every command block of the README is run by a test, or says here why it cannot run on this machine.

A block is keyed by its section and first line. A new or changed command block fails
:func:`test_every_command_block_is_accounted_for` until it is added to ``RUN`` (with the test that runs it as
written) or ``NOT_HERE`` (with the reason: a real AWS account or a provider's key). The checks below run the
blocks that are configuration or declarations rather than commands, against the code that reads them.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from functions._wiring import Secrets
from infra.local.template import load_template
from tests import readme
from tests.readme import README, missing_in_order, normal

ROOT = README.parent

RUN: dict[tuple[str, str], str] = {
    ("stepfold", "make demo"): ".ci/run (its first two commands), tests/unit/test_readme.py (that they open it)",
    ("What `make demo` shows", "== deploybot"): "tests/unit/test_readme_blocks.py::test_the_demo_excerpt_*",
    ("Write your own agent", "---"): "tests/unit/test_readme.py",
    ("Write your own agent", "from pydantic import BaseModel"): "tests/unit/test_readme.py",
    ("Write your own agent", "from datetime import UTC, datetime"): "tests/unit/test_readme.py",
    ("Write your own agent", "{"): "tests/unit/test_readme.py",
    ("Use tools from an MCP server", "from mcp.server.mcpserver import MCPServer"): "tests/unit/test_readme.py",
    ("Use tools from an MCP server", "from core.kernel.agent import Agent"): "tests/unit/test_readme.py",
    ("Use tools from an MCP server", '{"mcp_servers"'): "tests/unit/test_readme.py",
    ("Use tools from an MCP server", "from datetime import UTC, datetime"): "tests/unit/test_readme.py",
    ("Use the kernel on its own", "from datetime import UTC, datetime"): "tests/unit/test_readme_kernel.py",
    ("The CLI and the HTTP API", "$ STEPFOLD_API_KEY=sk-local-demo stepfold serve"): "tests/e2e/test_readme_session.py",
    ("The CLI and the HTTP API", "$ stepfold launch deploybot"): "tests/e2e/test_readme_session.py",
    ("The CLI and the HTTP API", '{"ops-bot"'): "tests/unit/test_readme_blocks.py::test_the_api_keys_example_*",
    ("Triggers", "SECRET=$STEPFOLD_GITHUB_WEBHOOK_SECRET"): "tests/functional/test_readme_triggers.py",
    ("Triggers", "SECRET=$STEPFOLD_WEBHOOK_SECRET"): "tests/functional/test_readme_triggers.py",
    ("Triggers", 'Schedule("cron(0 9 ? * MON-FRI *)"'): "tests/unit/test_readme_blocks.py::test_the_schedule_*",
    ("Triggers", "stepfold schedules"): "tests/e2e/test_cli_local_triggers.py",
    ("Triggers", "stepfold put-event"): "tests/e2e/test_cli_local_triggers.py",
    ("Development", "make check"): "tests/unit/test_readme_blocks.py::test_every_make_target_*",
    ("When a thread fails", "stepfold list --status failed"): "tests/e2e/test_operate.py",
}
"""Blocks run as written (ids aside) by the named test."""

NOT_HERE: dict[tuple[str, str], str] = {
    ("What `make demo` shows", "STEPFOLD_MODEL=openai:gpt-4o-mini"): (
        "needs a provider's key or a model server; tests/e2e/test_demo_model_unreachable.py runs the same "
        "command against a model that does not answer"
    ),
    ("Write your own agent", "$ stepfold serve"): (
        "uses the travel agent the walkthrough creates in a copy of the tree; tests/unit/test_readme.py runs "
        "its demo thread (launch, approval, booking) there"
    ),
    ("Triggers", "aws events put-events"): (
        "needs an AWS account; `stepfold put-event` (run by tests/e2e/test_cli_local_triggers.py) puts the same "
        "event on serve's bus, through the template's rules"
    ),
    ("Prompts: evals, replay, fork, rollout and rollback", "stepfold export th_..."): (
        "names a thread of yours (th_...); tests/unit/test_evals.py runs export and eval --compare on the CLI"
    ),
    ("Prompts: evals, replay, fork, rollout and rollback", "export OPENAI_API_KEY=sk-..."): (
        "needs a provider's key; tests/unit/test_eval_cassettes.py runs --record, --cassettes and --strict "
        "against the local fake provider (OPENAI_BASE_URL)"
    ),
    ("Deploy to AWS", "sam build && sam deploy --guided"): "deploy needs an AWS account; .ci/run runs `sam build`",
    ("Deploy to AWS", "LAMBDA_POWERTOOLS=bundle sam build"): (
        "deploy needs an AWS account; tests/infra/test_template.py checks the bundle packaging the Makefile makes"
    ),
    ("Deploy to AWS", "aws secretsmanager put-secret-value"): (
        "needs an AWS account; test_the_secret_outputs_the_deploy_section_names checks the outputs it reads"
    ),
}
"""Blocks that cannot run on a machine without AWS or a provider's key, and what runs in their place."""


def _key(block: readme.Block) -> tuple[str, str] | None:
    for section, start in (*RUN, *NOT_HERE):
        if block.section == section and block.first_line.startswith(start):
            return section, start
    return None


def _commands(block: readme.Block) -> bool:
    """A block a reader runs or copies: shell, code or configuration (not a tree, a diagram or an output)."""
    return block.lang in {"bash", "python", "json", "markdown"} or "\n$ " in "\n" + block.body


def test_every_command_block_is_accounted_for() -> None:
    blocks = readme.blocks()
    unaccounted = [(b.section, b.first_line) for b in blocks if _commands(b) and _key(b) is None]
    assert not unaccounted, f"README blocks no test runs and NOT_HERE does not explain: {unaccounted}"
    keys = {_key(b) for b in blocks}
    gone = [key for key in (*RUN, *NOT_HERE) if key not in keys]
    assert not gone, f"RUN/NOT_HERE name blocks the README no longer has: {gone}"


def test_the_tests_named_as_running_blocks_exist() -> None:
    for where in RUN.values():
        for name in re.findall(r"(?:tests|\.ci)/[\w/.]+", where):
            assert (ROOT / name.rstrip(".")).exists(), name


def test_the_demo_excerpt_is_what_the_demo_prints() -> None:
    """The README's excerpt of ``make demo``, in order, in what the demo prints (ids and figures aside)."""
    block = next(b for b in readme.blocks() if (b.section, b.lang) == ("What `make demo` shows", ""))
    demo = subprocess.run(
        [str(Path(__import__("sys").executable)), "-m", "infra.local.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    missing = missing_in_order(normal(block.body.splitlines()), normal(demo.stdout.splitlines()))
    assert not missing, f"the demo did not print {missing[0]!r} where the README shows it:\n{demo.stdout}"


def test_the_api_keys_example_is_a_valid_api_keys_secret() -> None:
    block = next(b for b in readme.blocks() if b.first_line.startswith('{"ops-bot"'))
    example = json.loads(block.body.replace("<at least 16 characters>", "k" * 16).replace("<another key>", "j" * 16))
    secrets = Secrets.model_validate({"link_signing_key": "x" * 32, "api_keys": example})
    assert {name: sorted(key.scopes) for name, key in secrets.principals().items()} == {
        "ops-bot": ["operate", "read"],
        "alice": ["approve", "read"],
    }


def test_the_schedule_the_readme_shows_is_the_standup_agents() -> None:
    block = next(b for b in readme.blocks() if b.first_line.startswith('Schedule("cron('))
    assert block.body.strip() in (ROOT / "agents" / "standup.py").read_text(encoding="utf-8")


def test_every_make_target_the_development_section_lists_exists() -> None:
    block = next(b for b in readme.blocks() if b.section == "Development" and b.lang == "bash")
    targets = [line.split("#")[0].split()[1] for line in block.body.splitlines() if line.startswith("make ")]
    assert targets
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in targets:
        assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), f"make {target}: no such target"


def test_the_secret_outputs_the_deploy_section_names() -> None:
    block = next(b for b in readme.blocks() if b.first_line.startswith("aws secretsmanager put-secret-value"))
    named = set(re.findall(r"<(\w+SecretArn)>", block.body))
    assert named == {"ModelKeysSecretArn", "ApiKeysSecretArn"}

    outputs = load_template(ROOT / "template.yaml").doc["Outputs"]
    assert named <= set(outputs)
