"""Record on the thread that its execution ended without the agent finishing (ARCHITECTURE.md, "Every end").

Two doors lead here, so no end goes unrecorded:
- the state machine's ``RecordFailure`` state, which every Catch reaches: ``{"thread_id", "execution",
  "error": {"Error", "Cause"}}``;
- an EventBridge rule on "Step Functions Execution Status Change" (FAILED, TIMED_OUT, ABORTED), for the ends no
  Catch can see (an execution timeout, an abort from the console, a RecordFailure that itself failed).

Recording twice is harmless: a thread that already ended is left as it is. The agent loop's deliberate ends
(:data:`DELIBERATE_ENDS`: the agent gave up, a person cancelled or paused it, another execution took the thread over)
fail the execution so a parent workflow can Catch them, but are not system failures: the rule's event for them is
left alone, whatever the thread says by then (a paused thread may already be running again after a resume).
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field

from core.kernel.errors import clip
from core.kernel.runner import timeline_path
from core.services.control import record_failure
from core.services.notify import Alert, NotifyError
from functions._boundary import boundary
from functions._observe import count
from functions._wiring import runtime

logger = Logger(service="stepfold")

DELIBERATE_ENDS = frozenset({"AgentFailed", "Cancelled", "Paused", "HandedOver"})
"""The Fail states' Error names of infra/statemachine/agent_loop.asl.json that are not system failures
(ARCHITECTURE.md "An agent as a step"): whoever ended the execution so recorded it on the thread."""


class ExecutionEnd(BaseModel):
    model_config = ConfigDict(extra="ignore")

    thread_id: str = Field(min_length=1, max_length=128)
    error: str
    cause: str
    execution: str | None = None

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> ExecutionEnd:
        """Either door's event, as one shape."""
        detail = event.get("detail")
        if event.get("source") == "aws.states" and isinstance(detail, dict):
            name = str(detail.get("name") or "")
            try:
                started = json.loads(detail.get("input") or "{}")
            except json.JSONDecodeError:
                started = {}
            thread_id = started.get("thread_id") if isinstance(started, dict) else None
            status = str(detail.get("status") or "FAILED")
            return cls(
                thread_id=thread_id or name.rsplit("-", 1)[0],
                error=detail.get("error") or f"Execution{status.title().replace('_', '')}",
                cause=_cause(detail.get("cause") or f"the execution ended with status {status}"),
                execution=detail.get("executionArn"),
            )
        error = event.get("error") or {}
        return cls(
            thread_id=event.get("thread_id", ""),
            error=str(error.get("Error") or "Unknown"),
            cause=_cause(str(error.get("Cause") or "")),
            execution=event.get("execution"),
        )


def _cause(raw: str) -> str:
    """A Lambda error's cause is its JSON error document: keep the message, drop the stack trace."""
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return clip(" ".join(raw.split()))
    if isinstance(document, dict) and isinstance(document.get("errorMessage"), str):
        return clip(" ".join(document["errorMessage"].split()))
    return clip(" ".join(raw.split()))


@logger.inject_lambda_context(correlation_id_path="thread_id", clear_state=True)
@boundary(logger)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    end = ExecutionEnd.from_event(event)
    logger.append_keys(thread_id=end.thread_id, execution=end.execution)
    if end.error in DELIBERATE_ENDS:
        logger.info("execution ended on purpose; the thread says why", extra={"error": end.error})
        return {"thread_id": end.thread_id, "recorded": False}
    rt = runtime()
    failed = record_failure(
        rt.threads, end.thread_id, error=end.error, cause=end.cause, execution=end.execution, clock=rt.clock
    )
    if failed is None:
        logger.info("execution ended; the thread had already ended or is paused", extra={"error": end.error})
        return {"thread_id": end.thread_id, "recorded": False}
    agent = failed.agent or rt.threads.load(end.thread_id).agent
    count("ThreadsFailed", agent=agent)
    logger.warning("thread failed", extra={"error": end.error, "cause": end.cause, "seq": failed.seq, "agent": agent})
    alert = Alert(
        thread_id=end.thread_id,
        agent=agent,
        title=f"{agent}: thread {end.thread_id} failed ({end.error})",
        detail=failed.reason,
        url=f"{rt.settings.public_url}{timeline_path(end.thread_id)}",
    )
    try:
        rt.notifier.alert(alert)
    except NotifyError as exc:  # the failure is recorded; a lost alert must not undo that
        logger.warning("could not alert anyone about the failure", extra={"notify_error": str(exc)})
    if failed.seq is not None:  # an unreadable thread has no answer to send back
        reply = rt.send_reply(end.thread_id)
        if reply is not None:
            (logger.info if reply.sent else logger.warning)("reply", extra=reply.log_fields())
    return {"thread_id": end.thread_id, "recorded": True, "seq": failed.seq}
