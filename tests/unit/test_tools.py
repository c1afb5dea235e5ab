"""Tools are structured outputs (Factor 4): specs for the model, validation of what it sends, safe runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from core.kernel.tools import (
    DONE_FOR_NOW,
    INTENTS,
    MAX_ARGS_CHARS,
    REQUEST_HUMAN_INPUT,
    InvalidCall,
    Policy,
    Tool,
    ToolContext,
    ToolRegistry,
    ValidCall,
)

CTX = ToolContext(thread_id="t_1", call_id="call_1", agent="tester")


class Pair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    a: float = Field(description="The first operand.")
    b: float
    note: str = ""


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    environment: Literal["staging", "production", "prod-db"]


class Point(BaseModel):
    x: int
    y: int


def _add(args: Pair, _: ToolContext) -> float:
    return args.a + args.b


def _boom(args: Pair, _: ToolContext) -> None:
    raise ConnectionError("the database  is\n  down")


_POLICIES: dict[str, Policy] = {"staging": "auto", "production": "needs_approval", "prod-db": "deny"}


def _by_environment(args: Target) -> Policy:
    return _POLICIES[args.environment]


ADD = Tool("add", "a + b", Pair, _add, idempotent=True)
BOOM = Tool("boom", "always fails", Pair, _boom)
DEPLOY = Tool("deploy", "deploy somewhere", Target, lambda args, ctx: "ok", policy=_by_environment)
DROP = Tool("drop_tables", "never offered", Pair, _add, policy="deny")
REGISTRY = ToolRegistry([ADD, BOOM, DEPLOY, DROP])


# --- specs -----------------------------------------------------------------------------------------


def test_specs_are_json_schemas_with_properties_and_required() -> None:
    spec = {s.name: s for s in REGISTRY.specs()}["add"]

    assert spec.description == "a + b"
    assert spec.parameters["type"] == "object"
    assert set(spec.parameters["properties"]) == {"a", "b", "note"}
    assert spec.parameters["required"] == ["a", "b"]
    assert spec.parameters["properties"]["a"]["description"] == "The first operand."
    assert spec.parameters["additionalProperties"] is False
    assert "title" not in spec.parameters


def test_denied_tools_are_not_offered_and_the_intents_are() -> None:
    names = [s.name for s in REGISTRY.specs()]

    assert names == ["add", "boom", "deploy", "request_human_input", "done_for_now"]
    assert "drop_tables" in REGISTRY
    assert REGISTRY.names[-2:] == [REQUEST_HUMAN_INPUT.name, DONE_FOR_NOW.name]


def test_the_intents_have_schemas_the_model_can_fill() -> None:
    specs = {s.name: s.parameters for s in ToolRegistry([]).specs()}

    assert set(specs) == {t.name for t in INTENTS}
    assert specs["done_for_now"]["required"] == ["answer"]
    assert specs["request_human_input"]["required"] == ["question"]
    assert specs["request_human_input"]["properties"]["format"]["enum"] == ["free_text", "yes_no", "multiple_choice"]


def test_a_tool_name_registered_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="tool 'add' is registered twice"):
        ToolRegistry([ADD, Tool("add", "again", Pair, _add)])


def test_a_tool_may_not_shadow_an_intent() -> None:
    with pytest.raises(ValueError, match="tool 'done_for_now' is registered twice"):
        ToolRegistry([Tool("done_for_now", "mine", Pair, _add)])


# --- policies --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "policy"), [("staging", "auto"), ("production", "needs_approval"), ("prod-db", "deny")]
)
def test_a_policy_can_be_a_function_of_the_args(environment: str, policy: str) -> None:
    call = REGISTRY.validate("deploy", {"environment": environment})

    assert isinstance(call, ValidCall)
    assert call.tool.policy_for(call.args) == policy


def test_a_fixed_policy_ignores_the_args() -> None:
    assert DROP.policy_for(Pair(a=1, b=2)) == "deny"
    assert ADD.policy_for(Pair(a=1, b=2)) == "auto"


@pytest.mark.parametrize("policy", ["needs-approval", "Auto", "", "approve", "deny "])
def test_a_policy_word_that_is_not_a_policy_is_refused_when_the_tool_is_built(policy: str) -> None:
    with pytest.raises(ValueError, match=r"policy .* is not one of auto, deny, needs_approval"):
        Tool("deploy", "typo'd policy", Pair, _add, policy=policy)  # type: ignore[arg-type]


def test_a_policy_that_is_neither_a_word_nor_a_function_is_refused() -> None:
    with pytest.raises(ValueError, match="policy must be one of auto, deny, needs_approval or a function"):
        Tool("deploy", "no policy", Pair, _add, policy=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("answer", ["needs-approval", None, True, "", "AUTO", 0])
def test_a_policy_function_answering_something_unknown_fails_closed_to_needs_approval(
    answer: object, caplog: pytest.LogCaptureFixture
) -> None:
    tool = Tool("deploy", "buggy policy", Target, lambda args, ctx: "ok", policy=lambda args: answer)  # type: ignore[arg-type,return-value]
    args = Target(environment="staging")

    with caplog.at_level("WARNING", logger="core.kernel.tools"):
        policy, reason = tool.policy_decision(args)

    assert policy == "needs_approval"
    assert tool.policy_for(args) == "needs_approval"
    assert f"returned {answer!r}" in reason
    assert "fail closed" in reason
    assert any("fail closed" in r.getMessage() for r in caplog.records)


def test_a_policy_function_answering_a_policy_word_has_no_reason_to_record() -> None:
    assert DEPLOY.policy_decision(Target(environment="prod-db")) == ("deny", "")


# --- validate --------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [{"a": 1, "b": "2.5"}, '{"a": 1, "b": 2.5}', ' \n{"a":1,"b":2.5}\n'])
def test_a_good_call_validates_from_a_dict_or_a_json_string(raw: str | dict[str, Any]) -> None:
    call = REGISTRY.validate("add", raw)

    assert isinstance(call, ValidCall)
    assert call.tool is ADD
    assert call.args == Pair(a=1, b=2.5)
    assert call.args_json == {"a": 1.0, "b": 2.5, "note": ""}


def test_an_empty_argument_string_means_no_arguments() -> None:
    call = REGISTRY.validate("done_for_now", "")

    assert isinstance(call, InvalidCall)
    assert call.kind == "invalid_args"
    assert call.message == "answer: Field required"


@pytest.mark.parametrize("name", [None, ""])
def test_no_tool_name_is_no_tool_call(name: str | None) -> None:
    call = REGISTRY.validate(name, {"answer": "hi"})

    assert call == InvalidCall("no_tool_call", "you must answer with exactly one tool call")


def test_an_unknown_tool_lists_the_available_ones() -> None:
    call = REGISTRY.validate("rm_rf", {})

    assert isinstance(call, InvalidCall)
    assert call.kind == "unknown_tool"
    assert call.tool == "rm_rf"
    assert call.message == (
        "unknown tool 'rm_rf'; available: add, boom, deploy, drop_tables, request_human_input, done_for_now"
    )


def test_a_huge_unknown_tool_name_is_shortened() -> None:
    call = REGISTRY.validate("x" * 500, {})

    assert isinstance(call, InvalidCall)
    assert call.tool == "x" * 80 + "..."
    assert "x" * 81 not in call.message


def test_invalid_json_says_where() -> None:
    call = REGISTRY.validate("add", '{"a": 1, "b": ')

    assert isinstance(call, InvalidCall)
    assert (call.kind, call.tool) == ("invalid_json", "add")
    assert call.message == "arguments are not valid JSON: Expecting value at position 13"


@pytest.mark.parametrize(("raw", "kind"), [("[1, 2]", "list"), ("42", "int"), ('"a"', "str"), ("null", "NoneType")])
def test_json_that_is_not_an_object_is_refused(raw: str, kind: str) -> None:
    call = REGISTRY.validate("add", raw)

    assert isinstance(call, InvalidCall)
    assert call.kind == "invalid_json"
    assert call.message == f"arguments must be a JSON object, got {kind}"


def test_oversized_raw_arguments_are_refused_before_parsing() -> None:
    raw = json.dumps({"a": 1, "b": 2, "note": "n" * MAX_ARGS_CHARS})

    call = REGISTRY.validate("add", raw)

    assert isinstance(call, InvalidCall)
    assert call.kind == "invalid_json"
    assert call.message == f"arguments are {len(raw)} characters; the limit is {MAX_ARGS_CHARS}"


def test_a_missing_argument_is_named() -> None:
    call = REGISTRY.validate("add", {"a": 1})

    assert isinstance(call, InvalidCall)
    assert call.kind == "invalid_args"
    assert call.message == "b: Field required"
    assert call.args == {"a": 1}


def test_an_extra_argument_is_named() -> None:
    call = REGISTRY.validate("add", {"a": 1, "b": 2, "c": 3})

    assert isinstance(call, InvalidCall)
    assert call.message == "c: Extra inputs are not permitted (got 3)"


def test_a_mistyped_argument_is_named_with_what_was_sent() -> None:
    call = REGISTRY.validate("add", '{"a": 3, "b": "xyz"}')

    assert isinstance(call, InvalidCall)
    assert call.kind == "invalid_args"
    assert call.message == "b: Input should be a valid number, unable to parse string as a number (got 'xyz')"
    assert call.args == {"a": 3, "b": "xyz"}


def test_several_problems_are_reported_on_one_line() -> None:
    call = REGISTRY.validate("deploy", {"environment": "moon", "x": 1})

    assert isinstance(call, InvalidCall)
    assert "\n" not in call.message
    assert call.message.startswith("environment: Input should be 'staging', 'production' or 'prod-db' (got 'moon'); ")
    assert call.message.endswith("x: Extra inputs are not permitted (got 1)")


# --- run -------------------------------------------------------------------------------------------


def _valid(name: str, args: dict[str, Any], registry: ToolRegistry = REGISTRY) -> ValidCall:
    call = registry.validate(name, args)
    assert isinstance(call, ValidCall), call
    return call


def test_run_returns_the_tools_result() -> None:
    assert REGISTRY.run(_valid("add", {"a": 1, "b": 2}), CTX) == (True, 3.0)


def test_a_tool_that_raises_becomes_a_one_line_error() -> None:
    ok, message = REGISTRY.run(_valid("boom", {"a": 1, "b": 2}), CTX)

    assert ok is False
    assert message == "ConnectionError: the database is down"


def test_a_very_long_exception_is_clipped() -> None:
    def fail(args: Pair, _: ToolContext) -> None:
        raise ValueError("e" * 2000)

    ok, message = ToolRegistry([Tool("fail", "", Pair, fail)]).run(
        _valid("fail", {"a": 1, "b": 2}, ToolRegistry([Tool("fail", "", Pair, fail)])), CTX
    )

    assert ok is False
    assert isinstance(message, str)
    assert message.startswith("ValueError: eee")
    assert message.endswith("... [1512 more chars]")


def test_a_tool_sees_the_call_context_and_its_idempotency_key() -> None:
    seen: list[ToolContext] = []

    def record(args: Pair, ctx: ToolContext) -> str:
        seen.append(ctx)
        return ctx.idempotency_key

    registry = ToolRegistry([Tool("record", "", Pair, record)])

    assert registry.run(_valid("record", {"a": 1, "b": 2}, registry), CTX) == (True, "t_1:call_1")
    assert seen == [CTX]


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        pytest.param(Point(x=1, y=2), {"x": 1, "y": 2}, id="pydantic-model"),
        pytest.param({"when": datetime(2025, 1, 2, tzinfo=UTC)}, {"when": "2025-01-02 00:00:00+00:00"}, id="datetime"),
        pytest.param({1, 2}, "{1, 2}", id="set"),
        pytest.param((1, "a"), [1, "a"], id="tuple"),
        pytest.param({1: "a", "b": 2}, {"1": "a", "b": 2}, id="int-keys"),
        pytest.param(None, None, id="none"),
        pytest.param({"nested": [1.5, True, None, "x"]}, {"nested": [1.5, True, None, "x"]}, id="plain-json"),
    ],
)
def test_results_are_made_json(returned: object, expected: object) -> None:
    registry = ToolRegistry([Tool("give", "", Pair, lambda args, ctx: returned)])

    ok, result = registry.run(_valid("give", {"a": 1, "b": 2}, registry), CTX)

    assert ok is True
    assert result == expected
    assert json.loads(json.dumps(result)) == result


def test_an_intent_cannot_be_run_as_a_function() -> None:
    ok, message = REGISTRY.run(_valid("done_for_now", {"answer": "x"}), CTX)

    assert ok is False
    assert message == "RuntimeError: tool done_for_now is an intent handled by the runtime, not a function"
