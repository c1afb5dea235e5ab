"""Bytes written and read by one step, early and late in a thread (warm container).

Drives one thread through 200 steps with ``core.runner.advance`` (what the step Lambda runs) on the
DynamoDB + S3 store against moto, counting the bytes of every write request (TransactWriteItems,
PutItem, UpdateItem, S3 PutObject) and every read response (Query, GetItem, S3 GetObject) per step.
Prints the bytes of step 10 and step 200 and their ratios; the target is <= 1.1 for both.

Run: ``python benchmarks/bytes_per_step.py`` (standalone, well under a minute) or ``make bench``.
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import BaseModel, ConfigDict

from core.agent import Agent, Limits, StepContext
from core.events import ToolResult
from core.llm.base import LLMRequest
from core.llm.scripted import Say, ScriptedLLM
from core.runner import advance
from core.thread import start_thread
from core.tools import Tool, ToolContext

STEPS = 200
EARLY = 10
TARGET = 1.1
WRITES = ("TransactWriteItems", "PutItem", "UpdateItem", "PutObject")
READS = ("Query", "GetItem", "GetObject")


class Lookup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int


def lookup(args: Lookup, _: ToolContext) -> dict[str, Any]:
    return {"n": args.n, "value": f"record {args.n}", "tags": ["a", "b", "c"]}


AGENT = Agent(
    name="bench",
    description="looks things up, forever",
    prompt_id="calculator",
    prompt_version=1,
    tools=(Tool("lookup", "Look up record n.", Lookup, lookup, idempotent=True),),
    model="scripted:bench",
    limits=Limits(max_steps=STEPS + 10),
)


def brain(request: LLMRequest) -> Say:
    done = sum(isinstance(e, ToolResult) for e in request.events)
    return Say("lookup", {"n": done})


class Meter:
    """Counts request bytes (writes) and response bytes (reads) through botocore's event hooks."""

    def __init__(self) -> None:
        self.bytes: dict[str, int] = defaultdict(int)

    def attach(self, client: Any, service: str) -> None:
        for op in WRITES:
            client.meta.events.register(f"before-send.{service}.{op}", self._sent)
        for op in READS:
            client.meta.events.register(f"after-call.{service}.{op}", self._received)

    def _sent(self, request: Any, **_: Any) -> None:
        body = request.body
        if isinstance(body, bytes | str):
            self.bytes["write"] += len(body)
        else:  # a streamed S3 body: its declared length
            self.bytes["write"] += int(request.headers.get("Content-Length", 0))

    def _received(self, http_response: Any, **_: Any) -> None:
        self.bytes["read"] += len(http_response.content or b"")

    def take(self) -> tuple[int, int]:
        out = (self.bytes["write"], self.bytes["read"])
        self.bytes.clear()
        return out


def main() -> int:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(key, value)
    import boto3
    from moto import mock_aws

    from core.store.dynamodb import DynamoThreadStore, create_table

    started = time.perf_counter()
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        create_table(ddb, "bench")
        s3.create_bucket(Bucket="bench")
        store = DynamoThreadStore("bench", ddb, s3, "bench")
        meter = Meter()
        meter.attach(ddb, "dynamodb")
        meter.attach(s3, "s3")
        ticks = count()
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        ctx = StepContext(clock=lambda: t0 + timedelta(milliseconds=next(ticks)))
        llm = ScriptedLLM(brain, name="bench")
        thread = store.create(start_thread("bench-thread", AGENT.name, "look everything up", now=t0))
        seq = thread.version
        per_step: dict[int, tuple[int, int]] = {}
        meter.take()
        for step in range(1, STEPS + 1):
            result = advance(store, thread.id, seq, agents={AGENT.name: AGENT}, llm_for=lambda _: llm, ctx=ctx)
            assert result.route == "continue", result
            seq = result.seq
            per_step[step] = meter.take()
    w_early, r_early = per_step[EARLY]
    w_late, r_late = per_step[STEPS]
    write_ratio, read_ratio = w_late / w_early, r_late / r_early
    print(f"thread of {seq} events after {STEPS} steps ({time.perf_counter() - started:.1f}s)")
    print(f"step {EARLY:>3}: wrote {w_early} bytes, read {r_early} bytes")
    print(f"step {STEPS:>3}: wrote {w_late} bytes, read {r_late} bytes")
    print(f"write ratio: {write_ratio:.3f}")
    print(f"read ratio: {read_ratio:.3f}")
    ok = write_ratio <= TARGET and read_ratio <= TARGET
    print(f"target <= {TARGET}: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
