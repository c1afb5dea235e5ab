"""Eval cassettes: ``stepfold eval AGENT --record MODEL`` runs the cases against a provider through the real adapter
and keeps each raw HTTP exchange; ``--cassettes`` replays them through the same adapter, offline.

The provider is tests/provider_server.py, a real local HTTP server speaking OpenAI's and Anthropic's APIs: every
recording here goes over real HTTP, and every replay runs after the server has stopped, so a replay that touched
the network could not pass. evals/calculator/cassettes/ is the shipped set, recorded this way with the fake model
``openai:fake-provider-server`` answering what the scripted brain decides; ``make snapshots`` records it again
(its test has "snapshot" in its name, and writes when pytest runs with ``--snapshot-update`` or
``UPDATE_SNAPSHOTS=1``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agents import AGENTS, build_llm
from core.kernel.agent import model_request
from core.kernel.prompts import PromptLibrary
from core.services.evals import Cassette, first_difference, load_cases, load_cassettes
from infra import cli_evals
from tests.provider_server import Answer, ProviderServer, error, rate_limited, tool_call

EVALS = Path(__file__).resolve().parents[2] / "evals"
SHIPPED = "calculator"
FAKE_MODEL = "openai:fake-provider-server"
SECRET = "sk-test-never-in-a-cassette"


def _cli(argv: Sequence[str]) -> tuple[int, str]:
    out = io.StringIO()
    return cli_evals.run(list(argv), stdout=out), out.getvalue()


def _cases_copy(agent: str, tmp_path: Path) -> Path:
    """The agent's shipped cases (not its cassettes) in a directory of their own."""
    directory = tmp_path / agent
    directory.mkdir()
    for path in (EVALS / agent).glob("*.json"):
        shutil.copy(path, directory / path.name)
    return directory


def _brain_answers(agent: str, cases_dir: Path) -> list[Answer]:
    """What the scripted brain decides for each case, in the cases' order, as the fake provider's answers."""
    spec = AGENTS[agent]
    prompt = PromptLibrary().load(spec.prompt_id, spec.prompt_version)
    brain = build_llm(spec.model)
    answers = []
    for case in load_cases(cases_dir):
        said = brain.complete(model_request(case.thread(), spec, prompt, spec.model))
        assert said.tool is not None
        assert isinstance(said.arguments, dict)
        answers.append(tool_call(said.tool, said.arguments))
    return answers


def _record(
    monkeypatch: pytest.MonkeyPatch,
    agent: str,
    cases_dir: Path,
    *,
    model: str = FAKE_MODEL,
    answers: Sequence[Answer] | None = None,
    extra: Sequence[str] = (),
) -> tuple[int, str, ProviderServer]:
    """``stepfold eval AGENT --record MODEL`` against the fake provider (stopped when this returns), one case at a
    time so the answers queued in the cases' order meet their cases."""
    with ProviderServer() as srv:
        api = srv.openai if model.startswith("openai:") else srv.anthropic
        api.push(*(answers if answers is not None else _brain_answers(agent, cases_dir)))
        monkeypatch.setenv("OPENAI_BASE_URL", srv.openai.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.anthropic.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
        argv = ["eval", agent, "--cases", str(cases_dir), "--record", model, "--concurrency", "1", *extra]
        code, text = _cli(argv)
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name)
    return code, text, srv


def _replay(cases_dir: Path, agent: str, *extra: str) -> tuple[int, str]:
    return _cli(["eval", agent, "--cases", str(cases_dir), "--cassettes", *extra])


def _replay_json(cases_dir: Path, agent: str, *extra: str) -> tuple[int, dict[str, Any]]:
    code, text = _replay(cases_dir, agent, "--json", *extra)
    return code, json.loads(text)


def _edit(path: Path, change: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The calculator's cases, freshly recorded with the fake provider."""
    cases_dir = _cases_copy("calculator", tmp_path)
    code, text, _ = _record(monkeypatch, "calculator", cases_dir)
    assert code == 0, text
    return cases_dir


# --- the shipped set -----------------------------------------------------------------------------------------


def _updating(config: pytest.Config) -> bool:
    """Whether this run writes snapshots (``make snapshots``)."""
    return bool(config.getoption("update_snapshots", default=False)) or os.environ.get("UPDATE_SNAPSHOTS") == "1"


def test_the_shipped_cassettes_snapshot_replays_fresh_through_the_openai_adapter(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    folder = EVALS / SHIPPED / "cassettes"
    if _updating(request.config):
        shutil.rmtree(folder, ignore_errors=True)
        code, text, _ = _record(monkeypatch, SHIPPED, EVALS / SHIPPED)
        assert code == 0, text

    cassettes = load_cassettes(folder)
    assert set(cassettes) == {c.name for c in load_cases(EVALS / SHIPPED)}, "every shipped case has a cassette"
    assert {(c.model, c.prompt.id) for c in cassettes.values()} == {(FAKE_MODEL, "calculator/v1")}
    assert all(c.base_url.startswith("http://127.0.0.1:") for c in cassettes.values()), "recorded locally"
    code, text = _cli(["eval", SHIPPED, "--cassettes", "--strict"])

    assert code == 0, f"{text}\nthe shipped cassettes are stale or fail: run `make snapshots` and review the diff"
    assert f"on {FAKE_MODEL} (replayed from cassettes recorded " in text
    assert "STALE" not in text


# --- recording -----------------------------------------------------------------------------------------------


def test_a_recording_keeps_each_raw_exchange_with_model_prompt_and_date_and_never_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cases_dir = _cases_copy("standup", tmp_path)
    cases = load_cases(cases_dir)
    answers = _brain_answers("standup", cases_dir)

    code, text, srv = _record(monkeypatch, "standup", cases_dir, answers=answers)

    assert code == 0, text
    folder = cases_dir / "cassettes"
    assert f"wrote {len(cases)} cassette(s) to {folder} ({FAKE_MODEL}, standup/v1 " in text
    prompt = PromptLibrary().load("standup", 1)
    assert [r.headers["authorization"] for r in srv.openai.requests] == [f"Bearer {SECRET}"] * len(cases)
    for case, received in zip(cases, srv.openai.requests, strict=True):
        file_text = (folder / f"{case.name}.json").read_text(encoding="utf-8")
        assert SECRET not in file_text
        assert "authorization" not in file_text.lower()
        cassette = Cassette.model_validate_json(file_text)
        assert (cassette.agent, cassette.case, cassette.model) == ("standup", case.name, FAKE_MODEL)
        assert (cassette.prompt.id, cassette.prompt.version, cassette.prompt.hash) == ("standup/v1", 1, prompt.hash)
        assert cassette.recorded_at.utcoffset() == timedelta(0)
        assert cassette.base_url == srv.openai.base_url
        [exchange] = cassette.exchanges
        assert (exchange.request.method, exchange.request.url) == ("POST", f"{srv.openai.base_url}/chat/completions")
        assert exchange.request.body == received.body, "the request body exactly as the provider received it"
        assert exchange.response.status == 200
        assert exchange.response.headers["content-type"] == "application/json"
        assert exchange.response.body["object"] == "chat.completion"
        assert exchange.response.body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == (
            case.expect.tool
        )


def test_a_recording_replays_fresh_after_the_provider_is_gone(recorded: Path) -> None:
    code, report = _replay_json(recorded, "calculator", "--strict")

    assert code == 0, report
    assert report["model"] == FAKE_MODEL
    assert report["source"].startswith("(replayed from cassettes recorded ")
    assert report["unverified"] == []
    assert {r["cassette"] for r in report["results"]} == {"fresh"}
    assert all(r["passed"] for r in report["results"])


def test_anthropic_records_and_replays_through_its_own_adapter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cases_dir = _cases_copy("orders", tmp_path)

    code, text, srv = _record(monkeypatch, "orders", cases_dir, model="anthropic:claude-haiku-4-5")

    assert code == 0, text
    assert [r.headers["x-api-key"] for r in srv.anthropic.requests] == [SECRET] * len(srv.anthropic.requests)
    cassette = next(iter(load_cassettes(cases_dir / "cassettes").values()))
    assert cassette.exchanges[0].request.url == f"{srv.anthropic.base_url}/v1/messages"
    assert cassette.exchanges[0].response.body["type"] == "message"
    assert SECRET not in cassette.to_json()
    code, text = _replay(cases_dir, "orders", "--strict")
    assert code == 0, text
    assert "on anthropic:claude-haiku-4-5 (replayed from cassettes recorded " in text


def test_a_provider_error_is_not_recorded_as_the_models_behaviour(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cases_dir = _cases_copy("calculator", tmp_path)
    first, second, *rest = load_cases(cases_dir)
    answers = _brain_answers("calculator", cases_dir)
    answers[:2] = [rate_limited(retry_after=1), error(401, "Incorrect API key provided")]

    code, text, _ = _record(monkeypatch, "calculator", cases_dir, answers=answers)

    assert code == 1
    assert f"not recorded: {first.name}: the provider answered HTTP 429, not a model answer: " in text
    assert f"not recorded: {second.name}: the provider answered HTTP 401, not a model answer: " in text
    assert "Incorrect API key provided" in text
    assert sorted(load_cassettes(cases_dir / "cassettes")) == sorted(c.name for c in rest)


def test_an_unreachable_provider_records_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cases_dir = _cases_copy("calculator", tmp_path)
    with ProviderServer() as srv:
        url = srv.openai.base_url
    monkeypatch.setenv("OPENAI_BASE_URL", url)  # the server has stopped: nothing listens there

    code, text = _cli(["eval", "calculator", "--cases", str(cases_dir), "--record", FAKE_MODEL])

    assert code == 1
    assert text.count("not recorded: ") == len(load_cases(cases_dir))
    assert "could not reach" in text
    assert not (cases_dir / "cassettes").exists()


# --- replaying -----------------------------------------------------------------------------------------------


def test_a_prompt_change_makes_every_replay_stale_never_a_plain_pass(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """deploybot v2 is deliberately broken: the scripted brain fails three cases with it. A replay can only serve
    the answers the model gave to v1, so it "passes" them: that is why it must say STALE, and fail with --strict."""
    cases_dir = _cases_copy("deploybot", tmp_path)
    assert _record(monkeypatch, "deploybot", cases_dir)[0] == 0
    v1, v2 = (PromptLibrary().load("deploybot", v).hash for v in (1, 2))

    code, text = _replay(cases_dir, "deploybot", "--prompt", "v2")

    n = len(load_cases(cases_dir))
    assert code == 0, "stale is shown, not failed, unless --strict"
    assert text.count("pass, STALE") == n
    assert (
        f"STALE: recorded with prompt deploybot/v1 (hash {v1[:12]}), now deploybot/v2 (hash {v2[:12]}): "
        f"the model never saw this prompt; re-record to test it (--record {FAKE_MODEL})"
    ) in text
    assert f"{n} passed, 0 failed, {n} STALE;" in text
    assert f"re-record: stepfold eval deploybot --record {FAKE_MODEL}" in text
    assert _replay(cases_dir, "deploybot", "--prompt", "v2", "--strict")[0] == 1
    assert _replay(cases_dir, "deploybot", "--strict")[0] == 0


def test_a_changed_request_is_stale_and_says_where_it_changed(recorded: Path) -> None:
    case = recorded / "infix_plus_is_addition.json"
    before = json.loads(case.read_text(encoding="utf-8"))["events"][0]["text"]
    _edit(case, lambda d: d["events"][0].update(text=before + " please"))

    code, report = _replay_json(recorded, "calculator")

    assert code == 0
    assert report["unverified"] == ["infix_plus_is_addition"]
    stale = next(r for r in report["results"] if r["case"] == "infix_plus_is_addition")
    assert stale["cassette"] == "stale"
    assert stale["passed"]
    assert stale["note"].startswith("the request differs from the one recorded (body.messages[1].content at character ")
    assert "please" in stale["note"]
    assert stale["note"].endswith(f"the model never saw it; re-record (--record {FAKE_MODEL})")
    assert {r["cassette"] for r in report["results"] if r is not stale} == {"fresh"}


def test_more_model_calls_than_recorded_fail_the_case_saying_to_re_record(recorded: Path) -> None:
    _edit(recorded / "cassettes" / "infix_plus_is_addition.json", lambda d: d.update(exchanges=[]))

    code, text = _replay(recorded, "calculator")

    assert code == 1
    assert (
        "infix_plus_is_addition: cassette: case 'infix_plus_is_addition' recorded 0 model call(s) and this replay "
        f"made call 1: the code now asks the model something it was never asked; re-record the case (--record "
        f"{FAKE_MODEL})"
    ) in text


def test_the_recorded_answer_goes_through_the_real_adapter_and_the_expectation(recorded: Path) -> None:
    def wrong_number(data: dict[str, Any]) -> None:
        call = data["exchanges"][0]["response"]["body"]["choices"][0]["message"]["tool_calls"][0]["function"]
        call["arguments"] = json.dumps({**json.loads(call["arguments"]), "b": 99})

    def proxy_page(data: dict[str, Any]) -> None:
        data["exchanges"][0]["response"] = {"status": 200, "headers": {}, "body": {"object": "list", "data": []}}

    _edit(recorded / "cassettes" / "infix_plus_is_addition.json", wrong_number)
    _edit(recorded / "cassettes" / "uses_the_humans_answer.json", proxy_page)

    code, report = _replay_json(recorded, "calculator")

    assert code == 1
    failed = {r["case"]: r for r in report["results"] if not r["passed"]}
    assert sorted(failed) == ["infix_plus_is_addition", "uses_the_humans_answer"]
    assert failed["infix_plus_is_addition"]["reason"].startswith("b=99")
    assert "unexpected OpenAI chat-completions response: no choices[0]" in failed["uses_the_humans_answer"]["reason"]
    assert {r["cassette"] for r in report["results"]} == {"fresh"}, "the request is the recorded one"


def test_a_case_without_a_cassette_and_a_cassette_without_a_case_are_shown(recorded: Path) -> None:
    folder = recorded / "cassettes"
    (folder / "infix_plus_is_addition.json").unlink()
    shutil.copy(folder / "uses_the_humans_answer.json", folder / "gone.json")
    _edit(folder / "gone.json", lambda d: d.update(case="gone"))

    code, text = _replay(recorded, "calculator")

    assert code == 0
    assert "infix_plus_is_addition  " in text
    assert "(no cassette)" in text
    assert "no cassette  " in text
    assert "1 without a cassette;" in text
    assert "infix_plus_is_addition: MISSING: this case has no cassette, so no recorded model answer was checked" in text
    assert f"{folder / 'gone.json'}: no case gone in {recorded}; delete the cassette" in text
    assert _replay(recorded, "calculator", "--strict")[0] == 1


def test_make_evals_replays_the_cassettes_it_finds(recorded: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(recorded, root / "calculator")
    shutil.copytree(EVALS / "standup", root / "standup")

    code, text = _cli(["eval-all", "--root", str(root)])

    assert code == 0, text
    assert text.count("(replayed from cassettes recorded ") == 1
    assert "calculator: calculator/v1" in text
    assert "standup: standup/v1" in text
    assert text.rstrip().endswith("evals: all cases pass")

    _edit(root / "calculator" / "infix_plus_is_addition.json", lambda d: d["events"][0].update(text="7 plus 5?"))
    code, text = _cli(["eval-all", "--root", str(root)])
    assert code == 0, text
    assert text.rstrip().endswith(
        "evals: all cases pass, but 1 replayed cases are STALE or have no cassette: re-record them"
    )
    assert _cli(["eval-all", "--root", str(root), "--strict"])[0] == 1


# --- refusals ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--record", "scripted:calculator"], "cassettes record the HTTP providers (openai, anthropic), not "),
        (["--record", "bedrock:anthropic.claude-3-haiku"], "bedrock goes through boto3, not httpx"),
        (["--record", "gpt-4o"], "model string 'gpt-4o' must look like 'provider:model'"),
        (["--record", FAKE_MODEL, "--model", "openai:gpt-4o"], "--record does not go with --model"),
        (["--cassettes", "--compare", "v1", "v1"], "--cassettes does not go with --compare"),
        (["--record", FAKE_MODEL, "--cassettes"], "--record does not go with --cassettes"),
        (["--strict"], "--strict applies to a replay: give --cassettes too"),
    ],
)
def test_cassette_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert _cli(["eval", "calculator", *argv])[0] == 2
    assert message in capsys.readouterr().err


def test_cassettes_that_cannot_be_replayed_say_why(
    capsys: pytest.CaptureFixture[str], recorded: Path, tmp_path: Path
) -> None:
    empty = _cases_copy("standup", tmp_path)
    assert _replay(empty, "standup")[0] == 2
    assert f"no cassettes in {empty / 'cassettes'}; record them with `stepfold eval standup --record MODEL`" in (
        capsys.readouterr().err
    )

    folder = recorded / "cassettes"
    _edit(folder / "infix_plus_is_addition.json", lambda d: d.update(model="openai:gpt-4o-mini"))
    assert _replay(recorded, "calculator")[0] == 2
    err = capsys.readouterr().err
    assert "were recorded with different models (openai:fake-provider-server: " in err
    assert "openai:gpt-4o-mini: infix_plus_is_addition); re-record them all with one --record MODEL" in err

    _edit(folder / "infix_plus_is_addition.json", lambda d: d.update(model=FAKE_MODEL, format=2))
    assert _replay(recorded, "calculator")[0] == 2
    assert "not a valid cassette" in (err := capsys.readouterr().err)
    assert "cassette format 2 is not 1" in err

    _edit(folder / "infix_plus_is_addition.json", lambda d: d.update(format=1, case="other"))
    assert _replay(recorded, "calculator")[0] == 2
    assert "the cassette is for case 'other', but its file is named 'infix_plus_is_addition'" in (
        capsys.readouterr().err
    )


# --- the difference, in words --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recorded", "now", "expected"),
    [
        ({"a": [1, {"b": "x"}]}, {"a": [1, {"b": "x"}]}, None),
        ({"a": 1}, {"a": 1.0}, "body.a: recorded '1', now '1.0'"),
        ({"a": 1, "b": 2}, {"a": 1}, "body.b was recorded, now it is not sent"),
        ({"a": 1}, {"a": 1, "max_tokens": 5}, "body.max_tokens is new: '5'"),
        ({"m": [1, 2]}, {"m": [1]}, "body.m had 2 items, now 1"),
        (
            {"m": [{"content": "You are calc. Be brief."}]},
            {"m": [{"content": "You are calc. Be terse."}]},
            "body.m[0].content at character 17: recorded 'You are calc. Be brief.', now 'You are calc. Be terse.'",
        ),
    ],
)
def test_first_difference_says_where_two_requests_part(recorded: Any, now: Any, expected: str | None) -> None:
    assert first_difference(recorded, now) == expected
