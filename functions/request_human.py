"""The ``waitForTaskToken`` target: record the approval with its task token and send a signed link.

``action="expire"`` is the Catch path of a timed-out wait: the request is denied by default.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field

from core.services.approvals import expire, link, record_approval
from functions._boundary import boundary
from functions._wiring import runtime

logger = Logger(service="stepfold")


class HumanInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    action: Literal["request", "expire"]
    thread_id: str = Field(min_length=1, max_length=128)
    seq: int = Field(ge=0)
    task_token: str | None = Field(default=None, repr=False)


@logger.inject_lambda_context(correlation_id_path="thread_id", clear_state=True)
@boundary(logger)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = HumanInput.model_validate(event)
    rt = runtime()
    if request.action == "expire":
        thread = expire(request.thread_id, threads=rt.threads, approvals=rt.approvals, clock=rt.clock)
        logger.info("approval expired", extra={"seq": thread.version})
        return {"thread_id": thread.id, "seq": thread.version}
    if not request.task_token:
        raise ValueError("action 'request' needs the task_token ($$.Task.Token)")
    thread = rt.threads.load(request.thread_id)
    now = int(rt.now().timestamp())
    stored = record_approval(  # None for an ended thread, even one cancelled while this record was written
        rt.approvals, rt.threads, thread, request.task_token, now=now, ttl_seconds=rt.settings.approval_timeout_seconds
    )
    if stored is None or stored.state != "pending":  # nothing waits any more: resume at once
        rt.sfn.send_task_success(
            taskToken=request.task_token, output=json.dumps({"thread_id": thread.id, "seq": thread.version})
        )
        logger.info("nothing to ask; resumed", extra={"seq": thread.version})
        return {"approval_id": None}
    rt.notifier.notify(stored, link(rt.settings.public_url, rt.secrets.link_signing_key.encode(), stored))
    logger.info("human requested", extra={"approval_id": stored.approval_id, "kind": stored.kind})
    return {"approval_id": stored.approval_id}
