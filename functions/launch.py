"""The launch function: create an agent's thread for a workflow that runs the agent as one of its steps.

It creates the thread (``core.services.control.launch``) but starts no execution: the workflow starts the agent loop
itself, with ``arn:aws:states:::states:startExecution.sync:2`` and the name and input this function returns, and waits
for the execution's output (ARCHITECTURE.md "An agent as a step"). The same idempotency key names the same thread, so
a retried launch returns the thread the first one created.

Input ``{"agent", "text", "idempotency_key"?}``; output ``{"thread_id", "seq", "execution", "input"}``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field

from core.services.control import launch
from functions._boundary import boundary
from functions._wiring import runtime

logger = Logger(service="stepfold")


class LaunchInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=512)


class _StartedByTheWorkflow:
    """The ``Executions`` of a launch whose execution the calling workflow starts: it only notes which one."""

    def __init__(self) -> None:
        self.seq = 1

    def start(self, thread_id: str, seq: int) -> None:
        del thread_id
        self.seq = seq


@logger.inject_lambda_context(clear_state=True)
@boundary(logger)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = LaunchInput.model_validate(event)
    rt = runtime()
    executions = _StartedByTheWorkflow()
    launched = launch(
        rt.threads,
        executions,
        rt.agents,
        agent=request.agent,
        text=request.text,
        clock=rt.clock,
        idempotency_key=request.idempotency_key,
        source="workflow",
    )
    thread_id, seq = launched.thread.id, executions.seq
    logger.info("launched for a workflow", extra={"thread_id": thread_id, "new_thread": launched.created})
    return {
        "thread_id": thread_id,
        "seq": seq,
        "execution": f"{thread_id}-{seq}",
        "input": {"thread_id": thread_id, "seq": seq, "iteration": 0},
    }
