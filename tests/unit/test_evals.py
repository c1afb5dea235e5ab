"""Evals (Factor 2): cases exported from threads, a safe predicate language, one model call per case, and a
comparison that shows which decisions a prompt change moves.

The deploybot scripted brain follows the rule lines of the system prompt it is given, so the deliberately
broken ``prompts/deploybot/v2.md`` ("Always deploy to production") changes its decisions the way a bad
prompt edit changes a real model's.
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion

from agents import AGENTS, build_llm, deploybot
from core.adapters.llm import LLM, LLMRequest, LLMRequestError, LLMResponse, Usage
from core.adapters.llm.scripted import Say, ScriptedLLM
from core.kernel.agent import model_request
from core.kernel.events import LLMCall, dump_event
from core.kernel.prompts import PromptLibrary
from core.kernel.thread import Thread
from core.services.evals import (
    Case,
    CaseError,
    Expect,
    Predicate,
    PredicateError,
    compare,
    comparison_table,
    export,
    load_case,
    load_cases,
    run_eval,
)
from infra import cli_evals
from tests.unit.conftest import Driver

DEPLOYBOT = AGENTS["deploybot"]
EXAMPLES = ("calculator", "deploybot", "triage")
"""The example agents the issue asks five cases of; agents added since ship their own under evals/<agent>/."""
EVALS = Path(__file__).resolve().parents[2] / "evals"


def _staging_thread(drive: Driver) -> Thread:
    run = drive(DEPLOYBOT, "deploy the frontend to staging")
    assert run.state.status == "done"
    return run.thread


# --- the acceptance path -------------------------------------------------------------------------------------


def test_a_case_exported_from_a_finished_deploybot_thread_passes_with_v1_and_fails_with_v2(drive: Driver) -> None:
    thread = _staging_thread(drive)
    deployments = list(deploybot.SERVICE.deployments)

    case = export(thread, name="staging")

    first_call = next(e for e in thread.events if isinstance(e, LLMCall))
    assert case.events == thread.events[: first_call.seq]
    assert case.expect == Expect(tool="deploy_frontend", args={"tag": "v1.5.0", "environment": "staging"})
    assert case.source is not None
    assert (case.source.thread_id, case.source.at, case.source.prompt_id) == ("t_1", first_call.seq, "deploybot/v1")
    assert case.source.prompt_hash == first_call.prompt_hash

    v1 = run_eval(DEPLOYBOT, [case], prompt_version=1, llm_for=build_llm)
    v2 = run_eval(DEPLOYBOT, [case], prompt_version=2, llm_for=build_llm)

    assert v1.ok
    assert [r.got for r in v1.results] == ["deploy_frontend(environment='staging', tag='v1.5.0')"]
    assert not v2.ok
    [failed] = v2.failures
    assert failed.got == "deploy_frontend(environment='production', tag='v1.5.0')"
    assert failed.reason == "environment='production', expected 'staging'"
    assert (v1.prompt, v2.prompt) == ("deploybot/v1", "deploybot/v2")
    assert v1.prompt_hash == PromptLibrary().load("deploybot", 1).hash != v2.prompt_hash
    assert deploybot.SERVICE.deployments == deployments, "an eval runs no tool"


def test_compare_shows_the_decision_the_broken_prompt_changed(drive: Driver) -> None:
    case = export(_staging_thread(drive), name="staging")
    before = run_eval(DEPLOYBOT, [case], prompt_version=1, llm_for=build_llm)
    after = run_eval(DEPLOYBOT, [case], prompt_version=2, llm_for=build_llm)

    [change] = compare(before, after)

    assert (change.case, change.kind) == ("staging", "regression")
    assert change.before.got == "deploy_frontend(environment='staging', tag='v1.5.0')"
    assert change.after.got == "deploy_frontend(environment='production', tag='v1.5.0')"
    table = comparison_table(before, after)
    assert "deploybot/v1 -> deploybot/v2 on scripted:deploybot: 1 of 1 decisions changed, 1 regressions" in table
    assert "REGRESSION" in table
    assert compare(before, before) == []
    assert "no decision changed in 1 cases" in comparison_table(before, before)


def test_the_shipped_cases_pass_for_every_agent_and_v2_regresses_deploybot() -> None:
    for name in EXAMPLES:
        agent = AGENTS[name]
        cases = load_cases(EVALS / name)
        assert len(cases) >= 5, f"{name} ships {len(cases)} eval cases, at least 5 are expected"
        assert any(c.source is not None for c in cases), f"{name}: some cases are exported from threads"
        assert any(c.source is None for c in cases), f"{name}: some cases are hand-written"
        report = run_eval(agent, cases, llm_for=build_llm)
        assert report.ok, report.table()
    broken = run_eval(DEPLOYBOT, load_cases(EVALS / "deploybot"), prompt_version=2, llm_for=build_llm)
    assert {r.case for r in broken.failures} == {
        "staging_deploys_without_asking",
        "explicit_tag_to_staging",
        "done_after_staging",
    }


def test_the_deploybot_brain_follows_the_rules_of_the_prompt_it_is_given() -> None:
    library = PromptLibrary()
    v1 = library.load("deploybot", 1).render(agent="deploybot", tools="")
    v2 = library.load("deploybot", 2).render(agent="deploybot", tools="")

    assert deploybot.prompt_rules(v1).environment is None
    assert deploybot.prompt_rules(v2).environment == "production"
    assert deploybot.prompt_rules("Rules:\n- Always deploy to Staging.\n").environment == "staging"
    assert deploybot.prompt_rules("we never always deploy to production").environment is None


def test_the_broken_v2_prompt_snapshot(snapshot: SnapshotAssertion) -> None:
    prompt = PromptLibrary().load("deploybot", 2)

    assert prompt.render(agent="deploybot", tools=", ".join(DEPLOYBOT.registry.names)) == snapshot
    assert "DELIBERATELY BROKEN" in prompt.description
    assert DEPLOYBOT.prompt_version == 1, "v2 exists to be caught by evals, never to be pinned"


# --- export --------------------------------------------------------------------------------------------------


def test_export_at_a_later_seq_expects_that_decision(drive: Driver) -> None:
    run = drive(
        DEPLOYBOT, "deploy the latest backend to production", [{"decision": "reject", "comment": "staging first"}]
    )
    calls = run.of(LLMCall)

    case = export(run.thread, calls[0].seq + 1, keep_args=["environment"], predicate="args.tag == 'v1.5.0'")

    assert case.source is not None
    assert case.source.at == calls[1].seq
    assert case.expect == Expect(
        tool="deploy_backend", args={"environment": "staging"}, predicate="args.tag == 'v1.5.0'"
    )
    assert run_eval(DEPLOYBOT, [case], llm_for=build_llm).ok
    assert export(run.thread, calls[1].seq, keep_args=[]).expect == Expect(tool="deploy_backend")


def test_export_refuses_what_is_not_a_decision(drive: Driver) -> None:
    thread = _staging_thread(drive)
    with pytest.raises(CaseError, match=r"no model call at or after seq 99; its model calls: 3, 6"):
        export(thread, 99)
    with pytest.raises(CaseError, match=r"--expect-args names colour; the call's arguments are tag, environment"):
        export(thread, keep_args=["colour"])

    talker = ScriptedLLM([Say.text("I would rather chat")])
    chatty = drive(AGENTS["calculator"], "add 1 and 2", llm=talker)
    with pytest.raises(CaseError, match="returned text, not a tool call; export another one with --at"):
        export(chatty.thread)

    sloppy = ScriptedLLM([Say("add", {"a": "one", "b": 2})])
    invalid = drive(AGENTS["calculator"], "add 1 and 2", llm=sloppy)
    with pytest.raises(CaseError, match=r"was refused \(invalid_args: a: Input should be a valid number"):
        export(invalid.thread)


def test_a_case_survives_its_json_file(tmp_path: Path, drive: Driver) -> None:
    case = export(_staging_thread(drive), predicate="args.environment == 'staging'")
    path = tmp_path / "staging_first.json"
    path.write_text(case.to_json(), encoding="utf-8")

    loaded = load_case(path)

    assert loaded.name == "staging_first"
    assert loaded.model_copy(update={"name": ""}) == case
    raw = json.loads(path.read_text())
    assert set(raw) == {"agent", "description", "events", "expect", "source"}
    assert raw["events"][0] == dump_event(case.events[0])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not a valid eval case"),
        ('{"agent": "deploybot", "events": [], "expect": {"tool": "x"}}', "at least 1 item"),
        (
            '{"agent": "calculator", "expect": {"tool": "add"}, "events": '
            '[{"seq": 1, "ts": "2025-01-01T00:00:00Z", "type": "user_input", "text": "hi"}]}',
            "seqs must be 0..n-1",
        ),
        (
            '{"agent": "calculator", "expect": {"tool": "add", "predicate": "__import__(\'os\')"}, "events": '
            '[{"seq": 0, "ts": "2025-01-01T00:00:00Z", "type": "user_input", "text": "hi"}]}',
            "uses Call, which is not allowed",
        ),
    ],
)
def test_a_bad_case_file_says_which_and_why(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(CaseError, match=str(path)) as raised:
        load_case(path)

    assert message in str(raised.value)


# --- predicates ----------------------------------------------------------------------------------------------

ARGS = {"environment": "staging", "tag": "v1.5.0", "count": 3, "items": ["a", "b"], "nested": {"k": 1}}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("args.environment == 'staging'", True),
        ("args.environment != 'staging'", False),
        ("args.tag in ['v1.5.0', 'v1.4.2']", True),
        ("args.tag not in ('v1.5.0',)", False),
        ("args.environment == 'staging' and args.tag == 'v1.5.0'", True),
        ("args.environment == 'production' or args.count >= 3", True),
        ("not args.environment == 'production'", True),
        ("1 < args.count <= 3", True),
        ("args.count > -1", True),
        ("args['tag'] == 'v1.5.0'", True),
        ("args.items[0] == 'a' and args.items[5] == None", True),
        ("args.nested.k == 1", True),
        ("args.missing == None", True),
        ("args.missing in ['x']", False),
        ("'stag' in args.environment", True),
        ("tool == 'deploy_frontend'", True),
        ("True", True),
    ],
)
def test_predicates_evaluate_a_small_safe_language(source: str, expected: bool) -> None:
    assert Predicate.parse(source).holds("deploy_frontend", ARGS) is expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("__import__('os').system('true')", "uses Call"),
        ("args.tag.__class__", "reads '__class__'"),
        ("open", "names 'open'"),
        ("args.count + 1 == 4", "uses BinOp"),
        ("[x for x in args.items]", "uses ListComp"),
        ("lambda: 1", "uses Lambda"),
        ("args.tag if True else 1", "uses IfExp"),
        ("args.tag == b'x'", "bytes literal"),
        ("-args.count < 0", "'-' only makes negative number literals"),
        ("args.tag ==", "is not an expression"),
        ("x" * 501, "at most 500 characters"),
    ],
)
def test_predicates_refuse_everything_else(source: str, message: str) -> None:
    with pytest.raises(PredicateError, match=message):
        Predicate.parse(source)


def test_a_predicate_that_cannot_be_evaluated_fails_the_case_with_the_reason() -> None:
    expect = Expect(tool="add", predicate="args.a < 'x'")

    assert expect.mismatch("add", {"a": 1}) == (
        "predicate \"args.a < 'x'\" cannot be evaluated for this call: "
        "'<' not supported between instances of 'int' and 'str'"
    )


def test_expected_args_are_an_exact_subset() -> None:
    expect = Expect(tool="add", args={"a": 3})

    assert expect.mismatch("add", {"a": 3.0, "b": 4}) is None
    assert expect.mismatch("add", {"a": 2, "b": 4}) == "a=2, expected 3"
    assert expect.mismatch("add", {"b": 4}) == "argument a is missing, expected 3"
    assert expect.mismatch("multiply", {"a": 3}) == "called multiply, expected add"
    assert (
        Expect(tool="add", predicate="args.b > 3").mismatch("add", {"a": 1, "b": 3}) == "predicate is false: args.b > 3"
    )


# --- running -------------------------------------------------------------------------------------------------


def _case(agent: str, text: str, expect: Expect, name: str = "c") -> Case:
    return Case.model_validate(
        {
            "name": name,
            "agent": agent,
            "events": [{"seq": 0, "ts": "2025-01-01T00:00:00Z", "type": "user_input", "text": text}],
            "expect": expect.model_dump(),
        }
    )


class _FixedLLM:
    def __init__(self, response: LLMResponse | Exception) -> None:
        self.response = response
        self.requests: list[LLMRequest] = []

    def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        if isinstance(self.response, Exception):
            raise self.response
        return self.response


def test_an_invalid_call_or_a_model_error_fails_the_case() -> None:
    case = _case("calculator", "add 1 and 2", Expect(tool="add"))
    calculator = AGENTS["calculator"]

    invalid = run_eval(calculator, [case], llm_for=lambda _: _FixedLLM(LLMResponse("add", {"a": "x", "b": 1})))
    text = run_eval(calculator, [case], llm_for=lambda _: _FixedLLM(LLMResponse(None, text="3")))
    refused = run_eval(calculator, [case], llm_for=lambda _: _FixedLLM(LLMRequestError("openai", "bad request")))

    assert (invalid.results[0].got, invalid.results[0].passed) == ("add (invalid)", False)
    assert invalid.results[0].reason.startswith("invalid_args: a: Input should be a valid number")
    assert (text.results[0].got, text.results[0].reason) == (
        "(text, no tool call)",
        "no_tool_call: you must answer with exactly one tool call",
    )
    assert (refused.results[0].got, refused.results[0].reason) == ("(model error)", "openai: bad request")


def test_each_case_is_one_model_call_with_the_chosen_prompt_and_model() -> None:
    llm = _FixedLLM(LLMResponse("add", {"a": 1, "b": 2}, usage=Usage(1000, 100)))
    asked: list[str] = []

    def llm_for(model: str) -> LLM:
        asked.append(model)
        return llm

    cases = [_case("calculator", "add 1 and 2", Expect(tool="add", args={"a": 1}), name=f"c{i}") for i in range(3)]
    report = run_eval(AGENTS["calculator"], cases, llm_for=llm_for, model="openai:gpt-4o-mini")

    assert asked == ["openai:gpt-4o-mini"]
    assert len(llm.requests) == 3
    assert {r.prompt_hash for r in llm.requests} == {PromptLibrary().load("calculator", 1).hash}
    assert all(r.system.startswith("You are calculator") for r in llm.requests)
    assert all(r.context == "<user_input>add 1 and 2</user_input>" for r in llm.requests)
    assert report.ok
    assert report.tokens == 3300
    assert report.cost_usd == pytest.approx(3 * (1000 * 0.15 + 100 * 0.6) / 1e6)
    assert "3 passed, 0 failed; 3300 tokens, $0.000630" in report.table()


def test_an_eval_asks_the_model_exactly_what_a_step_asks(drive: Driver) -> None:
    run = drive(DEPLOYBOT, "deploy the frontend to staging")
    assert isinstance(run.llm, ScriptedLLM)
    case = export(run.thread, name="same")

    request = model_request(case.thread(), DEPLOYBOT, PromptLibrary().load("deploybot", 1), DEPLOYBOT.model)

    assert request == run.llm.calls[0]


def test_cases_run_concurrently_within_the_bound() -> None:
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def slow(request: LLMRequest) -> Say:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return Say("add", {"a": 1, "b": 2})

    cases = [_case("calculator", "add 1 and 2", Expect(tool="add"), name=f"c{i}") for i in range(8)]
    report = run_eval(AGENTS["calculator"], cases, llm_for=lambda _: ScriptedLLM(slow), concurrency=3)

    assert report.ok
    assert [r.case for r in report.results] == [f"c{i}" for i in range(8)], "results keep the cases' order"
    assert state["peak"] == 3
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        run_eval(AGENTS["calculator"], cases, llm_for=build_llm, concurrency=0)


def test_cases_of_another_agent_are_refused() -> None:
    case = _case("calculator", "add 1 and 2", Expect(tool="add"), name="mine")
    with pytest.raises(CaseError, match="cases mine are not for agent deploybot"):
        run_eval(DEPLOYBOT, [case], llm_for=build_llm)


# --- the CLI -------------------------------------------------------------------------------------------------


def _cli(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    return cli_evals.run(argv, stdout=out), out.getvalue()


def test_cli_export_from_a_file_then_eval_and_compare(tmp_path: Path, drive: Driver) -> None:
    thread_file = tmp_path / "thread.json"
    thread_file.write_text(_staging_thread(drive).to_json(), encoding="utf-8")
    cases = tmp_path / "cases"
    cases.mkdir()

    code, _ = _cli(["export", "--from-file", str(thread_file), "--out", str(cases / "staging.json")])
    assert code == 0
    assert load_case(cases / "staging.json").expect.tool == "deploy_frontend"

    assert _cli(["eval", "deploybot", "--cases", str(cases)])[0] == 0
    code, text = _cli(["eval", "deploybot", "--cases", str(cases), "--prompt", "v2"])
    assert code == 1
    assert "staging: environment='production', expected 'staging'" in text

    code, text = _cli(["eval", "deploybot", "--cases", str(cases), "--compare", "v1", "v2"])
    assert code == 1
    assert "deploybot/v1 -> deploybot/v2 on scripted:deploybot: 1 of 1 decisions changed, 1 regressions" in text
    code, text = _cli(["eval", "deploybot", "--cases", str(cases), "--compare", "v1", "v1", "--json"])
    assert code == 0
    assert json.loads(text)["changes"] == []


def test_cli_eval_all_runs_every_shipped_case() -> None:
    code, text = _cli(["eval-all"])

    assert code == 0, text
    assert text.rstrip().endswith("evals: all cases pass")
    for agent in EXAMPLES:
        assert f"{agent}: {agent}/v1" in text


def test_cli_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert _cli(["eval", "nobody"])[0] == 2
    assert "unknown agent 'nobody'" in capsys.readouterr().err
    assert _cli(["eval", "deploybot", "--prompt", "v9"])[0] == 2
    assert "no prompt deploybot/v9" in capsys.readouterr().err
    assert _cli(["eval", "deploybot", "--cases", str(tmp_path)])[0] == 2
    assert "no cases in" in capsys.readouterr().err
    assert _cli(["export", "--from-file", str(tmp_path / "missing.json")])[0] == 1
    assert "cannot read" in capsys.readouterr().err


class _FakeApi:
    """Answers like the HTTP API: a thread summary, and its events in pages of four with ``next_after``."""

    def __init__(self, thread: Thread) -> None:
        self.thread = thread
        self.calls: list[str] = []

    def call(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        self.calls.append(f"{method} {path} {params or {}}")
        if path == f"/threads/{self.thread.id}":
            return {"thread_id": self.thread.id, "agent": self.thread.agent, "labels": self.thread.labels}
        after = (params or {}).get("after")
        events = [dump_event(e) for e in self.thread.events if after is None or e.seq > after]
        page = events[:4]
        more = len(events) > 4
        return {"events": page, "next_after": page[-1]["seq"] if more else None}


def test_cli_export_reads_a_deployed_thread_through_the_api(drive: Driver) -> None:
    thread = _staging_thread(drive)
    api = _FakeApi(thread)

    fetched = cli_evals.fetch_thread(api, "t_1")

    assert fetched == thread
    assert api.calls == [
        "GET /threads/t_1 {}",
        "GET /threads/t_1/events {'after': None}",
        "GET /threads/t_1/events {'after': 3}",
        "GET /threads/t_1/events {'after': 7}",
    ]
