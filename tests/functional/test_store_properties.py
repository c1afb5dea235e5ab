"""Property-based: random threads round-trip through the DynamoDB + S3 store unchanged (moto)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given

from core.adapters.store.dynamodb import DynamoThreadStore
from core.kernel.thread import Thread, fold
from tests.functional.conftest import ScratchAws, fuzz, scratch_aws
from tests.unit.test_properties import threads


@pytest.fixture(scope="module")
def aws() -> Iterator[ScratchAws]:
    with scratch_aws() as scratch:
        yield scratch


COUNTER = iter(range(1_000_000))


@fuzz(40)
@given(threads())
def test_random_threads_round_trip_through_dynamodb(aws: ScratchAws, thread: Thread) -> None:
    writer = DynamoThreadStore(aws.table, aws.dynamodb, aws.s3, aws.bucket, offload_bytes=1_000)  # S3 too
    reader = DynamoThreadStore(aws.table, aws.dynamodb, aws.s3, aws.bucket, cache=False)
    thread = thread.model_copy(update={"id": f"t_prop_{next(COUNTER)}"})
    writer.create(Thread(id=thread.id, agent=thread.agent, events=thread.events[:1]))
    for start in range(1, thread.version, 7):
        batch = thread.events[start : start + 7]
        writer.append(thread.id, start, batch)
    loaded = reader.load(thread.id)
    assert loaded == thread
    assert fold(loaded) == fold(thread)
