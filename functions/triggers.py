"""The triggers Lambda (Factor 11): signed webhooks, schedules, event rules and a queue, one function.

Every entry ends in :mod:`core.services.triggers`' one idempotent launch and returns without waiting for the thread:

- ``POST /webhooks/{source}`` (HTTP API, payload 2.0; no authorizer: the signature is the credential):
  401 unsigned/badly signed/stale, 404 unknown source, 202 ``{"ignored"}`` when no agent subscribes,
  200 Slack's challenge, 202 ``{"thread_id"}`` new, 200 ``{"thread_id", "duplicate": true}`` a redelivery.
- EventBridge Scheduler: the schedule's Input,
  ``{"schedule": NAME, "scheduled_time": "<aws.scheduler.scheduled-time>"}``.
- An EventBridge rule target: the event envelope (``version, id, detail-type, source, ..., detail``).
- SQS: each record's body is one of the two above, or a queued webhook ``{"webhook": SOURCE, "headers": {...},
  "body": "<raw>"}`` (verified against the time SQS received it); failed records are reported with
  ``{"batchItemFailures": [...]}`` so only they are retried.

Callback and ``response_url`` values naming loopback or link-local addresses are refused; the local stack may
allow them with ``STEPFOLD_ALLOW_LOOPBACK_CALLBACKS=1`` (never set it in AWS). Every HTTP answer is JSON with
``X-Content-Type-Options: nosniff``, and a 5xx never carries exception text (it is logged instead).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types

from core.services.control import ControlError, InputTooLargeError, ReservedLabelError, WrongStateError
from core.services.triggers import (
    BadDeliveryError,
    Launcher,
    SignatureError,
    Started,
    TriggerError,
    UnknownScheduleError,
    UnknownSourceError,
    WebhookAccepted,
    WebhookAnswer,
    WebhookOutcome,
    WebhookRefused,
    WebhookSecrets,
    answer_webhook,
    is_event_envelope,
    start_event,
    start_schedule,
)
from functions._statuses import lookup
from functions._wiring import Runtime, runtime

logger = Logger(service="stepfold")
app = APIGatewayHttpResolver(debug=False)  # debug mode would echo events, signatures included

"""Set to 1 on the local stack only: lets callback/response URLs point at this machine."""
JSON_HEADERS = {"X-Content-Type-Options": "nosniff"}
"""Sent with every answer: a browser must not sniff a JSON body that echoes a sender's text into HTML."""

# --- each outcome as an HTTP status: the one table (ARCHITECTURE.md, "HTTP statuses belong to handlers") ---------

ACCEPTED: dict[WebhookOutcome, int] = {
    "started": 202,
    "duplicate": 200,
    "ignored": 202,
    "challenge": 200,
    "acknowledged": 200,  # Slack shows a slash command's answer only from a 200
}
"""The status of each outcome of an accepted delivery (its body is the service's)."""
REFUSED: dict[type[Exception], tuple[int, str]] = {
    TriggerError: (400, "bad_request"),
    BadDeliveryError: (400, "bad_request"),
    SignatureError: (401, "unauthorized"),
    UnknownSourceError: (404, "not_found"),
    UnknownScheduleError: (404, "not_found"),
    ControlError: (400, "refused"),  # launch refused the input the delivery makes
    WrongStateError: (409, "refused"),
    InputTooLargeError: (413, "refused"),
    ReservedLabelError: (422, "refused"),
}
"""Each refusal by its error's type: the status and the body's ``error`` code (``detail`` is the error's message).
Looked up along the MRO (:func:`functions._statuses.lookup`), so a subclass answers as its nearest mapped base; a
refusal nothing maps is raised, and :func:`internal` answers it 500, never as a success."""


@app.post("/webhooks/<source>")
def webhook(source: str) -> Response[str]:
    rt = runtime()
    request = app.current_event
    raw = _raw_body(request.body or "", base64_encoded=bool(request.is_base64_encoded))
    if raw is None:
        return _json(400, {"error": "bad_request", "detail": "the body is marked base64 but is not valid base64"})
    answer = answer_webhook(
        _launcher(rt),
        source,
        request.headers,
        raw,
        secrets=_secrets(rt),
        now=_now(rt),
        method=request.http_method,
        allow_loopback=rt.settings.reply_allow_loopback,
    )
    status, body = respond(answer)
    _log("webhook", answer.started, source=source, outcome=answer.outcome, status=status, reason=answer.reason)
    return _json(status, body)


def respond(answer: WebhookAnswer) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body for ``answer``; raises a refusal's error when :data:`REFUSED` has no row for it."""
    if isinstance(answer, WebhookAccepted):
        return ACCEPTED[answer.outcome], answer.body
    found = lookup(REFUSED, type(answer.error))
    if found is None:
        raise answer.error  # not the sender's fault but a gap in the table: internal() logs it and answers 500
    status, code = found
    return status, {"error": code, "detail": str(answer.error)}


@app.not_found
def not_found(_: Exception) -> Response[str]:
    detail = "deliver webhooks with POST /webhooks/{source}"
    return _json(404, {"error": "not_found", "detail": detail})


def internal(_: Exception) -> Response[str]:
    """Anything unexpected: logged with its traceback, answered without it (the caller may be anyone)."""
    logger.exception("webhook failed")
    request_id = app.current_event.request_context.request_id
    detail = f"something failed on our side (request {request_id}); it was logged. Retry the delivery later"
    return _json(500, {"error": "internal", "detail": detail})


app.exception_handler(Exception)(internal)  # registered by call: the decorator is untyped


def _json(status: int, body: dict[str, Any]) -> Response[str]:
    return Response(status, content_types.APPLICATION_JSON, json.dumps(body), headers=dict(JSON_HEADERS))


def _raw_body(body: str, *, base64_encoded: bool) -> bytes | None:
    """The bytes the sender signed, or None for a body flagged base64 that is not.

    ``surrogatepass`` keeps a body API Gateway could only pass as lone surrogates from raising here: its
    bytes then match no signature, and the sender gets a 401 instead of a 500.
    """
    if not base64_encoded:
        return body.encode("utf-8", "surrogatepass")
    try:
        return base64.b64decode(body)
    except (binascii.Error, ValueError):
        return None


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
        raw = _raw_body(str(message.get("body") or ""), base64_encoded=bool(message.get("isBase64Encoded")))
        if raw is None:
            raise BadDeliveryError("the queued webhook's body is marked base64 but is not valid base64")
        given = message.get("headers")
        headers = {str(k): str(v) for k, v in given.items()} if isinstance(given, dict) else {}
        answer = answer_webhook(
            launcher,
            str(message["webhook"]),
            headers,
            raw,
            secrets=_secrets(rt),
            now=now,
            allow_loopback=rt.settings.reply_allow_loopback,
        )
        _log("queued webhook", answer.started, source=message["webhook"], outcome=answer.outcome, reason=answer.reason)
        if isinstance(answer, WebhookRefused):
            raise _refused(answer) from answer.error
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


def _refused(answer: WebhookRefused) -> TriggerError:
    """A queued delivery's refusal as the error its record fails with (the log's reason, not the sender's text)."""
    return TriggerError(answer.reason or str(answer.error))


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
