"""The agent loop's ASL file, and the static checker that guards it (infra/asl_check.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from infra.asl_check import check, count_states, dummy_substitute, main, placeholders, substitute

ROOT = Path(__file__).resolve().parents[2]
ASL = ROOT / "infra" / "statemachine" / "agent_loop.asl.json"
TEMPLATE = ROOT / "template.yaml"

REAL_VALUES: dict[str, object] = {
    "StepFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:stepfold-StepFunction",
    "RequestHumanFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:stepfold-RequestHumanFunction",
    "RecordEndFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:stepfold-RecordEndFunction",
    "RetryIntervalSeconds": "2",
    "RetryMaxAttempts": "6",
    "ApprovalTimeoutSeconds": "86400",
    "MaxIterations": "100",
    "LoopEntry": "Step",
    "BurstBelow": "0",
    "BurstMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:stepfold-agent-burst",
}
"""What CloudFormation passes: every DefinitionSubstitutions value arrives as a string."""


def _load_template() -> Any:
    from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]  # noqa: PLC0415  (tolerates !Ref & co)

    return cfn_yaml.load(str(TEMPLATE))


def _real_definition() -> dict[str, Any]:
    definition: dict[str, Any] = json.loads(substitute(ASL.read_text(encoding="utf-8"), REAL_VALUES))
    return definition


# --- the real file --------------------------------------------------------------------------------


def test_real_asl_passes_the_check() -> None:
    assert check(_real_definition()) == []


def test_real_asl_with_dummies_passes_the_check() -> None:
    for entry in ("Step", "Burst"):  # the state name is the one placeholder a dummy cannot stand for
        assert check(json.loads(dummy_substitute(ASL.read_text(encoding="utf-8"), {"LoopEntry": entry}))) == []


def test_cli_says_ok_for_the_real_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--set", "LoopEntry=Step", str(ASL)]) == 0
    assert capsys.readouterr().out.startswith("ok: 25 states")


def test_a_placeholder_naming_a_state_needs_a_value_and_the_cli_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(ASL)]) == 1
    assert "StartAt names a state that does not exist: 'dummy-LoopEntry'" in capsys.readouterr().out
    assert main(["--set", "LoopEntry=Nowhere", str(ASL)]) == 1
    assert main(["--set", "LoopEntry=Burst", str(ASL)]) == 0


def test_numbers_are_substituted_as_numbers() -> None:
    states = _real_definition()["States"]
    assert states["WaitForHuman"]["TimeoutSeconds"] == 86400
    assert states["Guard"]["Choices"][0]["NumericGreaterThanEquals"] == 100
    assert all(r["MaxAttempts"] == 6 and r["JitterStrategy"] == "FULL" for r in states["Step"]["Retry"])
    assert states["Step"]["Resource"] == REAL_VALUES["StepFunctionArn"]


def test_step_retries_the_errors_of_the_contract() -> None:
    retried = {error for retrier in _real_definition()["States"]["Step"]["Retry"] for error in retrier["ErrorEquals"]}
    assert {"ModelUnavailable", "ConcurrentWrite", "Lambda.TooManyRequestsException"} <= retried


def test_routes_of_the_contract_are_all_handled() -> None:
    route = _real_definition()["States"]["Route"]
    routes = {rule["StringEquals"] for rule in route["Choices"]}
    # error: the express loop mode's burst ended on a step that failed for good (agent_burst.asl.json StepFailed)
    assert routes == {"continue", "await_human", "paused", "done", "failed", "error"}
    assert route["Default"] == "UnknownRoute"
    assert _real_definition()["States"][route["Choices"][-1]["Next"]]["Next"] == "RecordFailure"


# --- the express loop mode's burst (ARCHITECTURE.md "Loop modes") ---------------------------------------------------

BURST = ROOT / "infra" / "statemachine" / "agent_burst.asl.json"


def _burst_definition() -> dict[str, Any]:
    values = {**REAL_VALUES, "BurstMaxSteps": "50", "BurstSeconds": "90"}
    definition: dict[str, Any] = json.loads(substitute(BURST.read_text(encoding="utf-8"), values))
    return definition


def test_the_burst_passes_the_check_and_its_placeholders_are_the_templates() -> None:
    assert check(_burst_definition()) == []
    machine = _load_template()["Resources"]["AgentBurst"]["Properties"]
    assert machine["Type"] == "EXPRESS"
    assert placeholders(BURST.read_text(encoding="utf-8")) == set(machine["DefinitionSubstitutions"])
    assert (ROOT / machine["DefinitionUri"]).resolve() == BURST


def test_a_burst_step_is_retried_exactly_as_the_standard_loops_step() -> None:
    assert _burst_definition()["States"]["Step"]["Retry"] == _real_definition()["States"]["Step"]["Retry"]


def test_a_burst_ends_without_failing_on_every_route_but_continue_and_on_a_step_that_failed_for_good() -> None:
    states = _burst_definition()["States"]
    (again,) = states["Route"]["Choices"]
    assert again["Next"] == "Step"
    assert {"Variable": "$.route", "StringEquals": "continue"} in again["And"]
    assert states["Route"]["Default"] == "EndBurst"
    assert states["Step"]["Catch"] == [
        {
            "Comment": states["Step"]["Catch"][0]["Comment"],
            "ErrorEquals": ["States.ALL"],
            "ResultPath": "$.error",
            "Next": "StepFailed",
        }
    ]
    assert states["StepFailed"]["Parameters"]["route"] == "error"
    assert all(state["Type"] != "Fail" for state in states.values())


def test_the_guard_sends_steps_to_the_burst_only_in_express_mode() -> None:
    for below, first in (("0", "Step"), ("1000000", "Burst")):
        values = {**REAL_VALUES, "BurstBelow": below, "LoopEntry": first}
        definition = json.loads(substitute(ASL.read_text(encoding="utf-8"), values))
        assert check(definition) == []
        # The execution's first step, and the first after a human wait, run where the Guard sends the others.
        assert definition["StartAt"] == first
        assert definition["States"]["AfterHuman"]["Next"] == first
        rules = definition["States"]["Guard"]["Choices"]
        under_cap = next(
            (rule["Next"] for rule in rules if rule.get("NumericLessThan", -1) > 5),
            definition["States"]["Guard"]["Default"],
        )
        assert under_cap == first


def test_every_state_says_why() -> None:
    for name, state in _real_definition()["States"].items():
        assert state.get("Comment"), f"{name} has no Comment"


def test_placeholders_match_the_templates_definition_substitutions() -> None:
    in_asl = placeholders(ASL.read_text(encoding="utf-8"))
    machine = _load_template()["Resources"]["AgentLoop"]["Properties"]
    in_template = set(machine["DefinitionSubstitutions"])
    assert in_asl == in_template, (
        f"only in the ASL: {sorted(in_asl - in_template)}; only in template.yaml: {sorted(in_template - in_asl)}"
    )
    assert in_asl == set(REAL_VALUES)
    assert (ROOT / machine["DefinitionUri"]).resolve() == ASL


def test_cfn_lint_accepts_the_definition_inline() -> None:
    """cfn-lint does not read DefinitionUri files, but it knows the ASL schema of inline definitions (E3601)."""
    from cfnlint.api import lint  # type: ignore[import-untyped]  # noqa: PLC0415

    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "states.amazonaws.com"},
                                "Action": "sts:AssumeRole",
                            }
                        ],
                    }
                },
            },
            "Machine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]},
                    "StateMachineType": "STANDARD",
                    "Definition": _real_definition(),
                },
            },
        },
    }
    matches = lint(json.dumps(template, indent=1))
    assert [f"{m.rule.id} {m.message}" for m in matches] == []


# --- substitution ---------------------------------------------------------------------------------


def test_substitute_keeps_strings_strings_and_bare_numbers_numbers() -> None:
    text = '{"a": "${Arn}", "b": ${Count}, "c": "x-${Count}"}'
    assert json.loads(substitute(text, {"Arn": 'ar"n', "Count": 3})) == {"a": 'ar"n', "b": 3, "c": "x-3"}


def test_substitute_names_every_missing_placeholder() -> None:
    with pytest.raises(KeyError, match="A, B"):
        substitute('{"x": ${A}, "y": "${B}", "z": "${C}"}', {"C": "c"})


def test_substitute_tracks_escaped_quotes() -> None:
    text = '{"a": "say \\"${Who}\\"", "n": ${N}}'
    assert json.loads(substitute(text, {"Who": "me", "N": "7"})) == {"a": 'say "me"', "n": 7}


def test_placeholders_and_dummies() -> None:
    text = '{"a": "${Arn}", "b": ${Count}}'
    assert placeholders(text) == {"Arn", "Count"}
    assert json.loads(dummy_substitute(text)) == {"a": "dummy-Arn", "b": 1}


# --- broken definitions ---------------------------------------------------------------------------

VALID: dict[str, Any] = {
    "StartAt": "Work",
    "States": {
        "Work": {
            "Type": "Task",
            "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f",
            "Parameters": {"id.$": "$.id", "n.$": "States.MathAdd($.n, 1)", "fixed": 3},
            "TimeoutSeconds": 60,
            "Retry": [{"ErrorEquals": ["Boom"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 2.0}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}],
            "Next": "Decide",
        },
        "Decide": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.n", "NumericLessThan": 3, "Next": "Work"}],
            "Default": "Finished",
        },
        "Finished": {"Type": "Succeed"},
        "Failed": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"},
    },
}


def _broken(**states: Any) -> dict[str, Any]:
    """VALID with some states replaced (a value of None deletes the state)."""
    definition = copy.deepcopy(VALID)
    for name, state in states.items():
        if state is None:
            del definition["States"][name]
        else:
            definition["States"][name] = state
    return definition


def _work(**changes: Any) -> dict[str, Any]:
    state: dict[str, Any] = copy.deepcopy(VALID["States"]["Work"])
    state.update(changes)
    return {key: value for key, value in state.items() if value is not None}


def test_the_valid_example_is_valid() -> None:
    assert check(copy.deepcopy(VALID)) == []
    assert count_states(VALID) == 4


def _problems_with(definition: dict[str, Any]) -> str:
    return "\n".join(check(definition))


def test_missing_next_target() -> None:
    problems = _problems_with(_broken(Work=_work(Next="Nowhere")))
    assert "Work: Next names a state that does not exist: 'Nowhere'" in problems


def test_missing_choice_and_catch_targets() -> None:
    decide = {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericLessThan": 3, "Next": "Gone"}], "Default": "X"}
    catch = [{"ErrorEquals": ["States.ALL"], "Next": "Lost"}]
    problems = _problems_with(_broken(Decide=decide, Work=_work(Catch=catch)))
    assert "Decide: Choices[0].Next names a state that does not exist: 'Gone'" in problems
    assert "Decide: Default names a state that does not exist: 'X'" in problems
    assert "Work: Catch[0].Next names a state that does not exist: 'Lost'" in problems


def test_unreachable_state() -> None:
    problems = check(_broken(Orphan={"Type": "Pass", "Next": "Finished"}))
    assert problems == ["Orphan: unreachable from StartAt"]


def test_loop_with_no_exit() -> None:
    definition = {
        "StartAt": "A",
        "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"}},
    }
    assert check(definition) == [
        "A: no path to a terminal state (infinite loop)",
        "B: no path to a terminal state (infinite loop)",
    ]


def test_loop_whose_only_exit_is_an_error() -> None:
    decide = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.n", "NumericLessThan": 3, "Next": "Work"}],
        "Default": "Work",
    }
    problems = check(_broken(Decide=decide))
    assert "Work: every normal continuation loops forever; only an error can end it" in problems
    assert "Finished: unreachable from StartAt" in problems


def test_missing_start_at() -> None:
    definition = copy.deepcopy(VALID)
    del definition["StartAt"]
    assert "(definition): 'StartAt' is missing or not a string" in check(definition)


def test_start_at_unknown_state() -> None:
    definition = {**copy.deepcopy(VALID), "StartAt": "Nope"}
    assert check(definition) == ["(definition): StartAt names a state that does not exist: 'Nope'"]


def test_choice_without_choices() -> None:
    problems = _problems_with(_broken(Decide={"Type": "Choice", "Default": "Finished"}))
    assert "Decide: a Choice state needs a non-empty Choices list" in problems


def test_bad_timeout_seconds_type() -> None:
    problems = _problems_with(_broken(Work=_work(TimeoutSeconds="60")))
    assert "Work: TimeoutSeconds must be a positive integer, got '60'" in problems


def test_quoted_number_in_a_numeric_choice() -> None:
    decide = {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericLessThan": "3", "Next": "Work"}]}
    problems = _problems_with(_broken(Decide=decide))
    assert "Decide: Choices[0]: NumericLessThan has a value of the wrong type: '3'" in problems


def test_retry_entry_without_error_equals() -> None:
    problems = _problems_with(_broken(Work=_work(Retry=[{"IntervalSeconds": "1", "JitterStrategy": "SOME"}])))
    assert "Work: Retry[0]: ErrorEquals must be a non-empty list of error names" in problems
    assert "Work: Retry[0]: IntervalSeconds must be an integer >= 1, got '1'" in problems
    assert "Work: Retry[0]: JitterStrategy must be FULL or NONE, got 'SOME'" in problems


def test_states_all_must_come_last() -> None:
    catch = [{"ErrorEquals": ["States.ALL"], "Next": "Failed"}, {"ErrorEquals": ["Boom"], "Next": "Failed"}]
    problems = _problems_with(_broken(Work=_work(Catch=catch)))
    assert "Work: Catch[0]: States.ALL must appear alone and in the last entry" in problems


def test_dollar_keys_need_path_strings() -> None:
    parameters = {"id.$": 3, "nested": {"ok.$": "$$.Task.Token", "bad.$": "plain text"}}
    problems = _problems_with(_broken(Work=_work(Parameters=parameters)))
    assert "Work: Parameters.id.$ must be a JSONPath or intrinsic function string, got 3" in problems
    assert "Work: Parameters.nested.bad.$ must be a JSONPath or intrinsic function string" in problems
    assert "ok.$" not in problems


def test_next_or_end_rules() -> None:
    problems = _problems_with(
        _broken(
            Work=_work(Next=None),
            Finished={"Type": "Succeed", "Next": "Failed"},
            Extra={"Type": "Pass", "Next": "Finished", "End": True},
        )
    )
    assert "Work: a Task state needs Next or End: true" in problems
    assert "Finished: a Succeed state cannot have Next or End" in problems
    assert "Extra: has both Next and End" in problems


def test_nested_parallel_branches_are_checked() -> None:
    branch = {"StartAt": "In", "States": {"In": {"Type": "Pass", "Next": "Out"}}}
    problems = _problems_with(_broken(Work={"Type": "Parallel", "Branches": [branch], "Next": "Decide"}))
    assert "Work/Branch[0]/In: Next names a state that does not exist: 'Out'" in problems


def test_cli_reports_problems_per_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.asl.json"
    path.write_text(
        json.dumps(_broken(Work=_work(Next="Nowhere"))).replace('"TimeoutSeconds": 60', '"TimeoutSeconds": ${T}')
    )
    assert main([str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: Work: Next names a state that does not exist: 'Nowhere'" in out
    assert "ok:" not in out


def test_cli_reports_invalid_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.asl.json"
    path.write_text('{"StartAt": "A", ')
    assert main([str(path)]) == 1
    assert "not valid JSON after substituting placeholders" in capsys.readouterr().out
