"""Prompts are code (Factor 2): versioned files, content hashes, clear errors, and snapshots of what each agent says.

Each agent's rendered system prompt is compared exactly with its snapshot,
``tests/unit/snapshots/test_prompts/test_each_agent_system_prompt_snapshot[<agent>].txt``, so a prompt change shows
up in review. Both tests run over the registry (agents/), so an agent added there is
covered without editing this file. After an intended change, or for a new agent, write them and review the diff::

    make snapshots
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from agents import AGENTS
from core.kernel.prompts import DEFAULT_ROOT, PromptError, PromptLibrary, parse_prompt

GOOD = """---
id: demo
version: 1
description: A demo prompt.
---
You are ${agent}. Tools: ${tools}.
"""


def _library(tmp_path: Path, files: dict[str, str]) -> PromptLibrary:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return PromptLibrary(tmp_path)


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_each_agent_prompt_loads_and_its_hash_is_the_files_sha256(agent: str) -> None:
    spec = AGENTS[agent]
    path = DEFAULT_ROOT / spec.prompt_id / f"v{spec.prompt_version}.md"

    prompt = PromptLibrary().load(spec.prompt_id, spec.prompt_version)

    ref = f"{spec.prompt_id}/v{spec.prompt_version}"
    assert (prompt.id, prompt.version, prompt.ref) == (spec.prompt_id, spec.prompt_version, ref)
    assert prompt.description
    assert prompt.hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prompt.short_hash == prompt.hash[:12]
    assert not prompt.body.startswith("---")
    assert prompt.body.endswith("\n")
    assert "${agent}" in prompt.body
    assert "${tools}" in prompt.body


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_each_agent_system_prompt_snapshot(agent: str, snapshot: SnapshotAssertion) -> None:
    spec = AGENTS[agent]
    prompt = PromptLibrary().load(spec.prompt_id, spec.prompt_version)

    rendered = prompt.render(agent=spec.name, tools=", ".join(spec.registry.names))

    assert rendered == snapshot
    assert "${" not in rendered
    assert f"You are {agent}" in rendered


def test_changing_the_text_changes_the_hash(tmp_path: Path) -> None:
    first = _library(tmp_path / "a", {"demo/v1.md": GOOD}).load("demo", 1)
    second = _library(tmp_path / "b", {"demo/v1.md": GOOD.replace("Tools", "Your tools")}).load("demo", 1)
    same = _library(tmp_path / "c", {"demo/v1.md": GOOD}).load("demo", 1)

    assert first.hash != second.hash
    assert first.hash == same.hash == hashlib.sha256(GOOD.encode()).hexdigest()


def test_a_front_matter_edit_changes_the_hash_too() -> None:
    assert parse_prompt(GOOD).hash != parse_prompt(GOOD.replace("A demo prompt.", "A demo prompt!")).hash


def test_the_library_lists_versions_and_loads_each(tmp_path: Path) -> None:
    v2 = GOOD.replace("version: 1", "version: 2").replace("You are", "You really are")
    library = _library(tmp_path, {"demo/v1.md": GOOD, "demo/v2.md": v2, "demo/notes.txt": "x", "demo/vx.md": "x"})

    assert library.versions("demo") == [1, 2]
    assert library.load("demo", 2).body.startswith("You really are")
    assert library.load("demo", 1).hash != library.load("demo", 2).hash


def test_windows_line_endings_parse() -> None:
    prompt = parse_prompt(GOOD.replace("\n", "\r\n"))

    assert (prompt.id, prompt.version) == ("demo", 1)
    assert prompt.body == "You are ${agent}. Tools: ${tools}.\n"


def test_comments_and_a_v_prefix_in_front_matter_are_allowed() -> None:
    prompt = parse_prompt(GOOD.replace("version: 1", "# pinned by deploybot\nversion: v3"))

    assert prompt.version == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("You are ${agent}.\n", "starts with a '---' front matter block", id="no-front-matter"),
        pytest.param(GOOD.replace("id: demo\n", ""), "front matter is missing id", id="missing-id"),
        pytest.param(
            GOOD.replace("version: 1\n", "").replace("description: A demo prompt.\n", ""),
            "front matter is missing version, description",
            id="missing-two",
        ),
        pytest.param(GOOD.replace("description: A demo prompt.", "description:"), "missing description", id="empty"),
        pytest.param(
            GOOD.replace("version: 1", "version: one"), "version must be a number, got 'one'", id="bad-version"
        ),
        pytest.param(GOOD.replace("id: demo", "id demo"), "line 'id demo' is not 'key: value'", id="not-key-value"),
    ],
)
def test_a_malformed_prompt_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(PromptError, match=message) as caught:
        parse_prompt(text, source="prompts/demo/v1.md")

    assert str(caught.value).startswith("prompts/demo/v1.md: ")


def test_a_missing_file_names_the_path_and_the_versions_there(tmp_path: Path) -> None:
    library = _library(tmp_path, {"demo/v1.md": GOOD})

    with pytest.raises(PromptError) as caught:
        library.load("demo", 7)

    message = str(caught.value)
    assert "no prompt demo/v7" in message
    assert str(tmp_path / "demo" / "v7.md") in message
    assert "versions found: ['v1']" in message


def test_a_missing_prompt_directory_says_none_were_found(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match=r"no prompt nobody/v1 .*versions found: none"):
        PromptLibrary(tmp_path).load("nobody", 1)


@pytest.mark.parametrize(
    ("rel", "said"),
    [("other/v1.md", "demo/v1"), ("demo/v2.md", "demo/v1")],
    ids=["id-mismatch", "version-mismatch"],
)
def test_front_matter_must_agree_with_the_path(tmp_path: Path, rel: str, said: str) -> None:
    library = _library(tmp_path, {rel: GOOD})
    prompt_id, version = rel.removesuffix(".md").split("/v")

    with pytest.raises(PromptError, match=f"front matter says {said}, the path says {prompt_id}/v{version}"):
        library.load(prompt_id, int(version))


def test_a_malformed_file_in_the_library_names_its_path(tmp_path: Path) -> None:
    library = _library(tmp_path, {"demo/v1.md": "no front matter"})

    with pytest.raises(PromptError, match=f"^{tmp_path / 'demo' / 'v1.md'}: "):
        library.load("demo", 1)


def test_the_library_reads_each_file_once(tmp_path: Path) -> None:
    library = _library(tmp_path, {"demo/v1.md": GOOD})
    first = library.load("demo", 1)
    (tmp_path / "demo" / "v1.md").write_text(GOOD.replace("You are", "Changed"), encoding="utf-8")

    assert library.load("demo", 1) is first


def test_render_fills_the_placeholders() -> None:
    prompt = parse_prompt(GOOD)

    assert prompt.render(agent="calculator", tools="add, done_for_now") == (
        "You are calculator. Tools: add, done_for_now.\n"
    )


def test_render_without_a_value_is_an_error_naming_it() -> None:
    prompt = parse_prompt(GOOD)

    with pytest.raises(PromptError, match=r"prompt demo/v1 needs a value for \$\{tools\}"):
        prompt.render(agent="calculator")


def test_a_literal_dollar_is_written_twice() -> None:
    prompt = parse_prompt(GOOD.replace("Tools:", "Budget: $$5. Tools:"))

    assert prompt.render(agent="a", tools="t").startswith("You are a. Budget: $5. Tools: t.")


def test_a_stray_dollar_is_a_prompt_error_that_says_how_to_fix_it() -> None:
    prompt = parse_prompt(GOOD.replace("Tools:", "Budget: $5. Tools:"))

    with pytest.raises(PromptError, match=r"prompt demo/v1 has a '\$' .*line 1.*write '\$\$'"):
        prompt.render(agent="a", tools="t")
