"""The error-name contract across the Lambda boundary, derived from the code (ARCHITECTURE.md, "Errors").

Step Functions matches Retry and Catch on the exact ``errorType`` (the exception's class name), with no subclass
matching. So:

1. every Task state of the real ASL that runs our code runs a handler wrapped in ``functions._boundary.boundary``;
2. every exception class defined anywhere in ``core/`` and ``functions/`` (found by importing every module) maps to
   a name of the closed set, and every one that means "try later" maps to a retryable name;
3. every retryable name, and every fault the Lambda service and runtime raise on their own, is in a Retry of every
   such Task state;
4. the names ARCHITECTURE.md documents are exactly the contract.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

import core
import functions
from functions._boundary import (
    CONTRACT,
    LAMBDA_FAULTS,
    RETRYABLE_NAMES,
    BoundaryError,
    ConcurrentWrite,
    DependencyUnavailable,
    ModelUnavailable,
    NotifyFailed,
    Unrecoverable,
    boundary,
    classify,
)
from infra.asl_check import dummy_substitute
from infra.local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
ASL = ROOT / "infra" / "statemachine" / "agent_loop.asl.json"
TRANSIENT_WORDS = re.compile(r"Retryable|Unavailable|Throttl|Conflict|Transient|Overload")
"""Names that promise "try again later": such an exception class must map to a retryable name."""


def _definition() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(dummy_substitute(ASL.read_text(), {"LoopEntry": "Step"}))
    return loaded


def _our_tasks() -> dict[str, tuple[str, dict[str, Any]]]:
    """Task state -> (function logical id, state) for every Task that invokes one of our functions."""
    template = load_template(ROOT / "template.yaml")
    by_placeholder = {
        f"${{{key}}}": value["Fn::GetAtt"][0]
        for key, value in template.state_machine().substitutions.items()
        if isinstance(value, dict) and "Fn::GetAtt" in value
    }
    raw = json.loads(re.sub(r"(:\s*)\$\{([A-Za-z]+)\}", r'\1"${\2}"', ASL.read_text()))
    tasks = {}
    for name, state in raw["States"].items():
        if state["Type"] != "Task":
            continue
        target = state.get("Parameters", {}).get("FunctionName") or state["Resource"]
        if target in by_placeholder:
            tasks[name] = (by_placeholder[target], _definition()["States"][name])
    return tasks


def _handler(logical_id: str) -> Any:
    path = next(f.handler for f in load_template(ROOT / "template.yaml").functions() if f.logical_id == logical_id)
    module, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _exception_classes() -> list[type[BaseException]]:
    """Every exception class defined in core/ and functions/ (each module imported)."""
    found: dict[str, type[BaseException]] = {}
    for package in (core, functions):
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            module = importlib.import_module(info.name)
            for _, value in inspect.getmembers(module, inspect.isclass):
                if issubclass(value, BaseException) and value.__module__ == info.name:
                    found[f"{value.__module__}.{value.__qualname__}"] = value
    return list(found.values())


def _instance(cls: type[BaseException]) -> BaseException:
    """An instance without knowing the constructor: the class is what classify() looks at."""
    return cls.__new__(cls)


def test_the_state_machine_runs_our_code_in_four_task_states() -> None:
    assert sorted(_our_tasks()) == ["ExpireApproval", "RecordFailure", "Step", "WaitForHuman"]


@pytest.mark.parametrize("state", sorted(_our_tasks()))
def test_each_task_state_runs_a_handler_behind_the_boundary(state: str) -> None:
    logical_id, _ = _our_tasks()[state]
    assert getattr(_handler(logical_id), "__stepfold_boundary__", False), (
        f"{state} runs {logical_id}, whose handler is not wrapped in functions._boundary.boundary: its errors would "
        "reach Step Functions under names no Retry lists"
    )


@pytest.mark.parametrize("state", sorted(_our_tasks()))
def test_each_task_state_retries_every_transient_name(state: str) -> None:
    _, definition = _our_tasks()[state]
    retried = {name for retrier in definition.get("Retry", []) for name in retrier["ErrorEquals"]}
    missing = (RETRYABLE_NAMES | set(LAMBDA_FAULTS)) - retried
    assert not missing, f"{state} does not retry {sorted(missing)}"
    assert not (retried & {"States.ALL", "States.TaskFailed"}), f"{state} must not retry every error"


@pytest.mark.parametrize("state", sorted(_our_tasks()))
def test_each_task_state_records_what_it_cannot_retry(state: str) -> None:
    _, definition = _our_tasks()[state]
    last = definition["Catch"][-1]
    assert last["ErrorEquals"] == ["States.ALL"]
    expected = "FailAs" if state == "RecordFailure" else "RecordFailure"  # FailAs: StepError, or LoopFailed
    assert last["Next"] == expected


def test_every_exception_in_the_code_maps_into_the_contract() -> None:
    classes = _exception_classes()
    assert len(classes) > 20, "the walk found too few exception classes to be looking at the real code"
    for cls in classes:
        named = classify(_instance(cls))
        assert named in CONTRACT, f"{cls.__qualname__} maps to {named.__name__}, outside the contract"
        if TRANSIENT_WORDS.search(cls.__name__) and not issubclass(cls, BoundaryError):
            assert named.retryable, f"{cls.__module__}.{cls.__qualname__} sounds transient but maps to {named.__name__}"


def test_the_adapters_own_subclasses_keep_their_kind() -> None:
    from core.adapters.llm._http import RetryableHTTPError  # noqa: PLC0415

    assert classify(RetryableHTTPError("openai", "rate limited", status=429, retry_after_s=1.0)) is ModelUnavailable


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "Query"), DependencyUnavailable),
        (ClientError({"Error": {"Code": "ThrottlingException"}}, "GetSecretValue"), DependencyUnavailable),
        (ClientError({"Error": {"Code": "InternalServerError"}}, "PutItem"), DependencyUnavailable),
        (
            ClientError({"Error": {"Code": "Boom"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject"),
            DependencyUnavailable,
        ),
        (EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"), DependencyUnavailable),
        (ReadTimeoutError(endpoint_url="https://s3.amazonaws.com"), DependencyUnavailable),
        (ClientError({"Error": {"Code": "AccessDeniedException"}}, "PutItem"), Unrecoverable),
        (ClientError({"Error": {"Code": "ValidationException"}}, "Query"), Unrecoverable),
        (KeyError("agent"), Unrecoverable),
    ],
    ids=lambda v: getattr(v, "__name__", None) or type(v).__name__,
)
def test_raw_aws_errors_get_their_kind(exc: BaseException, expected: type[BoundaryError]) -> None:
    assert classify(exc) is expected


def test_the_boundary_renames_and_keeps_the_original_in_the_message() -> None:
    from core.adapters.llm._http import RetryableHTTPError  # noqa: PLC0415

    logged: list[tuple[str, str]] = []

    class Log:
        def warning(self, message: str, **_: Any) -> None:
            logged.append(("warning", message))

        def exception(self, message: str, **_: Any) -> None:
            logged.append(("exception", message))

    @boundary(Log())
    def handler(event: Any, context: Any) -> Any:
        raise RetryableHTTPError("openai", "server_error: boom", status=500, retry_after_s=None)

    with pytest.raises(ModelUnavailable) as caught:
        handler({}, None)
    assert type(caught.value).__name__ == "ModelUnavailable"  # what Lambda reports as errorType
    assert str(caught.value).startswith("RetryableHTTPError: openai: server_error: boom (HTTP 500)")
    assert logged == [("warning", "retryable: RetryableHTTPError: openai: server_error: boom (HTTP 500)")]

    @boundary(Log())
    def broken(event: Any, context: Any) -> Any:
        raise KeyError("agent")

    with pytest.raises(Unrecoverable, match="KeyError"):
        broken({}, None)
    assert logged[-1] == ("exception", "the task failed for good")

    @boundary(Log())
    def already(event: Any, context: Any) -> Any:
        raise NotifyFailed("every channel failed")

    with pytest.raises(NotifyFailed, match="every channel failed"):
        already({}, None)


def test_architecture_doc_lists_exactly_the_contract() -> None:
    doc = (ROOT / "ARCHITECTURE.md").read_text()
    section = doc.split("## Errors", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Za-z.]+)` \|", section, re.MULTILINE))
    assert documented == {c.__name__ for c in CONTRACT} | set(LAMBDA_FAULTS)
    assert {ConcurrentWrite.__name__, Unrecoverable.__name__} <= documented
