"""The step Lambda: load the thread, one model call, dispatch the tool, save (Factor 12).

Input ``{"thread_id", "seq", "execution"?}``, output ``{"thread_id", "seq", "route", "output"}`` for the state
machine's Choice; ``output`` is what the execution ends with when the route ends it (ARCHITECTURE.md "An agent as a
step"), else null. Retryable model errors and version conflicts are raised for Step Functions' Retry. In a burst of
the express loop mode the input also has ``burst_started`` and ``burst_seconds``, and the output ``burst_over``:
whether the burst's time budget is spent (ARCHITECTURE.md "Loop modes"; ASL has no clock arithmetic).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field

from core.kernel.runner import advance
from functions._boundary import boundary
from functions._observe import TracingObserver, count, record_step, traced
from functions._wiring import runtime

logger = Logger(service="stepfold")


class StepInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    thread_id: str = Field(min_length=1, max_length=128)
    seq: int = Field(ge=0)
    execution: str | None = Field(default=None, description="The Step Functions execution ARN, for the logs.")
    burst_started: datetime | None = Field(default=None, description="When the express burst running this began.")
    burst_seconds: int | None = Field(default=None, ge=1, description="The burst's time budget.")


@logger.inject_lambda_context(correlation_id_path="thread_id", clear_state=True)
@boundary(logger)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    count("StepInvocations")  # retries included
    request = StepInput.model_validate(event)
    logger.append_keys(seq=request.seq, execution=request.execution)
    rt = runtime()
    ctx = replace(rt.step_context(), observer=TracingObserver(rt.tracer, request.thread_id))
    with traced(rt.tracer, "step", thread_id=request.thread_id, seq=request.seq):
        result = advance(
            rt.threads,
            request.thread_id,
            request.seq,
            agents=rt.agents,
            llm_for=rt.llm_for,
            ctx=ctx,
            spend=rt.spend,
            tools=rt.mcp_tools,
            public_url=rt.settings.public_url,
        )
    logger.append_keys(agent=result.agent)
    record_step(result.agent, result.events, result.route)
    logger.info(
        "step",
        extra={
            "new_seq": result.seq,
            "route": result.route,
            "llm_calls": result.llm_calls,
            "tool_runs": result.tool_runs,
            "replayed": result.replayed,
        },
    )
    if result.route in ("done", "failed"):  # a trigger may have asked for the answer back (Factor 11)
        reply = rt.send_reply(request.thread_id)
        if reply is not None:
            (logger.info if reply.sent else logger.warning)("reply", extra=reply.log_fields())
    answer = result.payload()
    if request.burst_started is not None and request.burst_seconds is not None:
        spent = (rt.clock() - request.burst_started).total_seconds()
        answer["burst_over"] = spent >= request.burst_seconds
    return answer
