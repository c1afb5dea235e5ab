"""The README's "Write your own agent" is followed verbatim: its prompt, agent and test blocks are run here."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _blocks(section: str) -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.DOTALL)]


def test_write_your_own_agent_runs_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = _blocks(_section("Write your own agent"))
    assert [lang for lang, _ in blocks] == ["markdown", "python", "python"]
    (prompt, agent_code, test_code) = (body for _, body in blocks)
    assert len(agent_code.strip().splitlines()) < 50, "a new agent in under 50 lines"

    prompt_file = tmp_path / "prompts" / "travel" / "v1.md"
    prompt_file.parent.mkdir(parents=True)
    prompt_file.write_text(prompt, encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    module = types.ModuleType("core.agents.travel")
    monkeypatch.setitem(sys.modules, "core.agents.travel", module)
    exec(compile(agent_code, "README.md:core/agents/travel.py", "exec"), module.__dict__)

    namespace: dict[str, object] = {"__name__": "test_travel"}
    exec(compile(test_code, "README.md:tests/unit/test_travel.py", "exec"), namespace)
    tests = [fn for name, fn in namespace.items() if name.startswith("test_") and callable(fn)]
    assert len(tests) == 1
    tests[0]()


def test_the_readme_opens_with_the_demo_and_the_test_commands() -> None:
    first_block = _blocks(README.read_text(encoding="utf-8"))[0][1]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
