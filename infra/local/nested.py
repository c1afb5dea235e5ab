"""The local stack's part for workflows that run agents as steps (ARCHITECTURE.md "An agent as a step").

The template's other state machines (the example parent workflow) are created from their real ASL next to the agent
loop, and moto's engine runs their ``arn:aws:states:::states:startExecution.sync:2`` tasks (and the agent loop's own
ContinueAsNew). Where moto's engine differs from AWS there, the gap is filled here, in the local stack only:

- the optimized integration answers a finished child with ``DescribeExecution`` in the ASL's casing (``Output``,
  ``Status``, ``Error``, ``Cause``, ...; dates as epoch milliseconds), the ``Output`` parsed (``.sync:2``); moto hands
  over boto3's answer as it is (camelCase, datetimes), which the ASL could not read and a failure's Cause could not
  serialise (:func:`fill_sync_execution_gap`);
- an execution waiting for a child is parked as a human wait is, not mid-step: the child's own state says whether
  anything runs (:func:`waits_on_child`).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from infra.asl_check import substitute

if TYPE_CHECKING:
    from infra.local.stack import LocalStack
    from infra.local.template import StateMachine


def create_workflows(stack: LocalStack, machines: Sequence[StateMachine]) -> dict[str, str]:
    """Create these state machines of the template (not the agent loop), from their real ASL, with their substitutions
    resolved against the stack (functions, the state machines created so far, parameters, the stack's fast retries).
    Returns their ARNs by logical id."""
    template = stack.template
    arns = {**stack.function_arns, **stack.workflow_arns}
    if stack.state_machine_arn:
        arns[template.state_machine().logical_id] = stack.state_machine_arn
    created: dict[str, str] = {}
    for machine in machines:
        values = template.substitutions(machine, arns, stack.substitution_overrides, stack.parameters)
        definition = substitute((stack.root / machine.definition_uri).read_text(), values)
        created[machine.logical_id] = stack.clients["stepfunctions"].create_state_machine(
            name=machine.name, definition=definition, roleArn=stack._role, type=machine.type
        )["stateMachineArn"]
    return created


def fill_sync_execution_gap() -> None:
    """Answer a finished child execution of ``startExecution.sync``/``.sync:2`` as Step Functions does (see the module
    docstring). moto calls ``_normalise_response`` with keywords for ``describe_execution``; every other call goes to
    what the stack put there before (``_fill_start_execution_gap``), positionally as it expects. Idempotent."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (  # noqa: PLC0415
        state_task_service_sfn as sfn_task,
    )

    task = sfn_task.StateTaskServiceSfn
    if getattr(task, "_stepfold_sync_filled", False):
        return
    before = task._normalise_response

    def normalise(
        self: Any, response: Any, boto_service_name: Any = None, service_action_name: Any = None, **_: Any
    ) -> None:
        if service_action_name == "describe_execution" and isinstance(response, dict):
            described = dict(response)
            response.clear()
            response.update(described_as_sfn(described))
            return
        before(self, response, boto_service_name, service_action_name)

    task._normalise_response = normalise  # type: ignore[method-assign]
    task._stepfold_sync_filled = True  # type: ignore[attr-defined]


def described_as_sfn(described: Mapping[str, Any]) -> dict[str, Any]:
    """boto3's ``describe_execution`` answer as the optimized integration hands it to the ASL: PascalCase keys,
    dates as epoch milliseconds."""
    return {
        key[:1].upper() + key[1:]: int(value.timestamp() * 1000) if isinstance(value, datetime.datetime) else value
        for key, value in described.items()
    }


_SYNC_RESOURCES = ("startExecution.sync",)


def waits_on_child(history: Sequence[Mapping[str, Any]]) -> bool:
    """Whether an execution's newest Task waits for a child execution that still runs (``startExecution.sync``/
    ``.sync:2`` submitted, the child RUNNING), read from the history moto's engine keeps: then nothing of it runs until
    the child ends, and the child's own state says whether anything is mid-step. Once the child ended, the parent is
    busy again (it is about to notice, within moto's poll of the child)."""
    for event in reversed(history):
        kind = event["type"]
        if kind in ("TaskSucceeded", "TaskFailed", "TaskStateEntered", "TaskStateExited"):
            return False
        if kind == "TaskSubmitted":
            details = event.get("taskSubmittedEventDetails") or {}
            resource = str(details.get("resource", ""))
            if details.get("resourceType") != "states" or not resource.startswith(_SYNC_RESOURCES):
                return False
            return _running(details.get("output"))
    return False


def _running(submitted: Any) -> bool:
    """Whether the child execution a ``TaskSubmitted`` event names (its output: the StartExecution answer) runs."""
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends  # noqa: PLC0415

    try:
        started = json.loads(submitted) if isinstance(submitted, str) else submitted
        arn = started.get("ExecutionArn") or started.get("executionArn")
        _, _, _, region, account, *_ = str(arn).split(":")
        child: Any = stepfunctions_parser_backends[account][region].describe_execution(arn)
    except Exception:  # noqa: BLE001 - unreadable or unknown: count the parent as busy (the safe side for a wait)
        return False
    return bool(child.exec_status == "RUNNING")
