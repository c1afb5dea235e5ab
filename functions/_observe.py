"""Metrics, logs and traces for a step, from the events it produced (Powertools, EMF, X-Ray).

The kernel reports through :class:`core.kernel.observe.Observer` (spans) and its events; everything
CloudWatch needs is derived here, so core stays Powertools-free.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from core.kernel.events import Error, Event, HumanRequest, HumanResponse, LLMCall, ToolCall, ToolResult
from core.kernel.observe import SpanKind

NAMESPACE = "stepfold"


class TracingObserver:
    """One X-Ray subsegment per model call and tool run, when the X-Ray SDK is present."""

    def __init__(self, tracer: Any | None, thread_id: str) -> None:
        self.tracer = tracer
        self.thread_id = thread_id

    def span(self, kind: SpanKind, name: str) -> AbstractContextManager[object]:
        if self.tracer is None:
            return contextlib.nullcontext()
        return self._span(kind, name)

    @contextlib.contextmanager
    def _span(self, kind: SpanKind, name: str) -> Iterator[object]:
        assert self.tracer is not None
        with self.tracer.provider.in_subsegment(f"## {kind} {name}") as subsegment:
            subsegment.put_annotation("thread_id", self.thread_id)
            subsegment.put_annotation(kind, name)
            yield subsegment


TRACED_MODULES = ("botocore", "httpx")
"""What the tracer patches: every AWS call (DynamoDB, S3, Secrets Manager, Bedrock, Step Functions) and every HTTP
request (model providers, notifications, replies) becomes a subsegment. Not ``patch_all``, which imports sqlite3,
http.client and more at the first invocation for nothing."""


def _tracing_disabled() -> bool:
    """Powertools' own switch, read here so a disabled tracer costs no import at all."""
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in ("1", "true", "yes", "on", "y")


def tracer_or_none() -> Any | None:
    """Powertools' Tracer, patching :data:`TRACED_MODULES`, or None: when POWERTOOLS_TRACE_DISABLED says so, or
    without aws-xray-sdk (in AWS it comes with the Powertools layer; without it traces stop at Lambda's own segment).
    Called at the first invocation only when Lambda runs the function with tracing active (``functions._wiring``)."""
    if _tracing_disabled():
        return None
    try:
        from aws_lambda_powertools import Tracer  # noqa: PLC0415 - optional, and costly to import
    except ImportError:
        return None
    try:
        return Tracer(service="stepfold", patch_modules=TRACED_MODULES)
    except ImportError:
        return None


def traced(tracer: Any | None, name: str, **annotations: str | int) -> AbstractContextManager[object]:
    """One subsegment ``## <name>`` around a handler's work, annotated (``thread_id`` makes a thread's traces
    searchable in X-Ray); nothing without a tracer."""
    if tracer is None:
        return contextlib.nullcontext()
    return _traced(tracer, name, annotations)


@contextlib.contextmanager
def _traced(tracer: Any, name: str, annotations: dict[str, str | int]) -> Iterator[object]:
    with tracer.provider.in_subsegment(f"## {name}") as subsegment:
        for key, value in annotations.items():
            subsegment.put_annotation(key, value)
        yield subsegment


def _metrics_disabled() -> bool:
    """Powertools' own switch (``single_metric`` does not check it)."""
    return os.environ.get("POWERTOOLS_METRICS_DISABLED", "").strip().lower() in ("1", "true", "yes")


def _metric(name: str, unit: MetricUnit, value: float, **dimensions: str) -> None:
    if _metrics_disabled():
        return
    with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE) as metric:
        for key, dim in dimensions.items():
            metric.add_dimension(name=key, value=dim)


def count(name: str, **dimensions: str) -> None:
    """One EMF count, written at once (a shared ``Metrics`` set is not safe when the local stack runs
    several invocations at the same time; one metric per line is, and costs nothing in CloudWatch)."""
    _metric(name, MetricUnit.Count, 1, **dimensions)


def record_step(agent: str, events: Sequence[Event], route: str) -> None:
    """EMF metrics for one step: steps, tool calls by tool and outcome, approvals, errors, LLM usage and cost."""
    count("Steps", agent=agent)
    calls = {e.call_id: e.tool for e in events if isinstance(e, ToolCall)}
    for event in events:
        match event:
            case LLMCall():
                dims = {"agent": agent, "model": event.model}
                _metric("LLMLatency", MetricUnit.Milliseconds, event.latency_ms, **dims)
                _metric("InputTokens", MetricUnit.Count, event.input_tokens, **dims)
                _metric("OutputTokens", MetricUnit.Count, event.output_tokens, **dims)
                _metric("CostUSD", MetricUnit.NoUnit, event.cost_usd, **dims)
            case ToolResult():
                _metric("ToolCalls", MetricUnit.Count, 1, agent=agent, tool=event.tool, outcome="ok")
            case Error():
                _metric("Errors", MetricUnit.Count, 1, agent=agent, kind=event.kind)
                if event.call_id in calls:
                    _metric(
                        "ToolCalls", MetricUnit.Count, 1, agent=agent, tool=calls[event.call_id], outcome=event.kind
                    )
            case HumanRequest():
                _metric("ApprovalsRequested", MetricUnit.Count, 1, agent=agent, kind=event.kind)
            case HumanResponse(decision="expired"):
                _metric("ApprovalsExpired", MetricUnit.Count, 1, agent=agent)
            case HumanResponse():
                _metric("ApprovalsDecided", MetricUnit.Count, 1, agent=agent, decision=event.decision)
            case _:
                pass
    if route in ("done", "failed"):
        _metric("ThreadsDone" if route == "done" else "ThreadsFailed", MetricUnit.Count, 1, agent=agent)
