"""The step Lambda: load the thread, one model call, dispatch the tool, save (Factor 12).

Input ``{"thread_id", "seq"}``, output ``{"thread_id", "seq", "route"}`` for the state machine's Choice.
Retryable model errors and version conflicts are raised for Step Functions' Retry.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field

from core.runner import advance
from functions._wiring import runtime

logger = Logger(service="stepfold")


class StepInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    thread_id: str = Field(min_length=1, max_length=128)
    seq: int = Field(ge=0)


@logger.inject_lambda_context(correlation_id_path="thread_id", clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = StepInput.model_validate(event)
    rt = runtime()
    result = advance(
        rt.threads, request.thread_id, request.seq, agents=rt.agents, llm_for=rt.llm_for, ctx=rt.step_context()
    )
    logger.info(
        "step",
        extra={
            "seq": result.seq,
            "route": result.route,
            "llm_calls": result.llm_calls,
            "tool_runs": result.tool_runs,
            "replayed": result.replayed,
        },
    )
    return result.payload()
