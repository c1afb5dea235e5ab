"""The triggers Lambda (Factor 11): signed webhooks, schedules, event rules and a queue, one function.

Every entry ends in :mod:`core.triggers`' one idempotent launch and returns without waiting for the thread:

- ``POST /webhooks/{source}`` (HTTP API, payload 2.0; no authorizer: the signature is the credential):
  401 unsigned/badly signed/stale, 404 unknown source, 202 ``{"ignored"}`` when no agent subscribes,
  200 Slack's challenge, 202 ``{"thread_id"}`` new, 200 ``{"thread_id", "duplicate": true}`` a redelivery.
- EventBridge Scheduler: the schedule's Input,
  ``{"schedule": NAME, "scheduled_time": "<aws.scheduler.scheduled-time>"}``.
- An EventBridge rule target: the event envelope (``version, id, detail-type, source, ..., detail``).
- SQS: each record's body is one of the two above, or a queued webhook ``{"webhook": SOURCE, "headers": {...},
  "body": "<raw>"}`` (verified against the time SQS received it); failed records are reported with
  ``{"batchItemFailures": [...]}`` so only they are retried.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types

from core.triggers import (
    BadDeliveryError,
    Launcher,
    Started,
    TriggerError,
    WebhookAnswer,
    WebhookSecrets,
    answer_webhook,
    is_event_envelope,
    start_event,
    start_schedule,
)
from functions._wiring import Runtime, runtime

logger = Logger(service="stepfold")
app = APIGatewayHttpResolver(debug=False)  # debug mode would echo events, signatures included


@app.post("/webhooks/<source>")
def webhook(source: str) -> Response[str]:
    rt = runtime()
    request = app.current_event
    body = request.body or ""
    raw = base64.b64decode(body) if request.is_base64_encoded else body.encode()
    answer = answer_webhook(_launcher(rt), source, request.headers, raw, secrets=_secrets(rt), now=_now(rt))
    _log("webhook", answer.started, source=source, status=answer.status, reason=answer.reason)
    return Response(answer.status, content_types.APPLICATION_JSON, json.dumps(answer.body))


@app.not_found
def not_found(_: Exception) -> Response[str]:
    detail = "deliver webhooks with POST /webhooks/{source}"
    return Response(404, content_types.APPLICATION_JSON, json.dumps({"error": "not_found", "detail": detail}))


@logger.inject_lambda_context(log_event=False, clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    match event_kind(event):
        case "http":
            logger.set_correlation_id(event.get("requestContext", {}).get("requestId"))
            result: dict[str, Any] = app.resolve(event, context)
            return result
        case "sqs":
            return _queue(event, context)
        case "message":
            return on_message(event, now=_now(runtime()))


def event_kind(event: dict[str, Any]) -> Literal["http", "sqs", "message"]:
    """Which invoker sent ``event``: API Gateway, an SQS event source mapping, or Scheduler/EventBridge."""
    if "requestContext" in event and "routeKey" in event:
        return "http"
    records = event.get("Records")
    if isinstance(records, list) and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records):
        return "sqs"
    return "message"


def on_message(message: dict[str, Any], *, now: int) -> dict[str, Any]:
    """A schedule firing, an EventBridge event, or a queued webhook; raises (so it is retried) if it is refused."""
    rt = runtime()
    launcher = _launcher(rt)
    if "schedule" in message:
        started = [start_schedule(launcher, str(message["schedule"]), str(message.get("scheduled_time", "")))]
        _log("schedule", started, schedule=message["schedule"], scheduled_time=message.get("scheduled_time"))
    elif is_event_envelope(message):
        started = start_event(launcher, message)
        _log("event", started, event_id=message.get("id"), detail_type=message.get("detail-type"))
    elif "webhook" in message:
        body = str(message.get("body") or "")
        raw = base64.b64decode(body) if message.get("isBase64Encoded") else body.encode()
        given = message.get("headers")
        headers = {str(k): str(v) for k, v in given.items()} if isinstance(given, dict) else {}
        answer = answer_webhook(launcher, str(message["webhook"]), headers, raw, secrets=_secrets(rt), now=now)
        _log("queued webhook", answer.started, source=message["webhook"], status=answer.status, reason=answer.reason)
        if answer.status >= 400:
            raise _refused(answer)
        started = list(answer.started)
    else:
        raise BadDeliveryError("not a schedule, an EventBridge event or a queued webhook")
    if not started:
        return {"ignored": "no agent subscribes to this"}
    return {"threads": [s.as_dict() for s in started]}


def _queue(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.batch import (  # noqa: PLC0415 - only queue invocations pay for it
        BatchProcessor,
        EventType,
        process_partial_response,
    )
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord  # noqa: PLC0415

    def record_handler(record: SQSRecord) -> dict[str, Any]:
        try:
            message = json.loads(record.body)
            if not isinstance(message, dict):
                raise BadDeliveryError("the message body is JSON but not an object")
            return on_message(message, now=int(record.attributes.sent_timestamp) // 1000)
        except (ValueError, TriggerError) as exc:
            logger.warning("queued trigger refused", extra={"message_id": record.message_id, "error": str(exc)[:300]})
            raise

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    result: dict[str, Any] = process_partial_response(event, record_handler, processor, context)  # type: ignore[assignment]
    return result


def _refused(answer: WebhookAnswer) -> TriggerError:
    error = TriggerError(answer.reason or json.dumps(answer.body))
    error.status = answer.status
    return error


def _launcher(rt: Runtime) -> Launcher:
    return Launcher(rt.threads, rt.executions, rt.agents, rt.clock)


def _secrets(rt: Runtime) -> WebhookSecrets:
    keys = rt.secrets
    return WebhookSecrets(keys.github_webhook_secret, keys.slack_signing_secret, keys.stepfold_webhook_secret)


def _now(rt: Runtime) -> int:
    return int(rt.now().timestamp())


def _log(kind: str, started: tuple[Started, ...] | list[Started], **fields: Any) -> None:
    threads = [s.as_dict() for s in started]
    logger.info(f"{kind} trigger", extra={**fields, "threads": threads})
