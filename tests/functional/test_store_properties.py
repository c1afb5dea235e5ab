"""Property-based: random threads round-trip through the DynamoDB + S3 store unchanged (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from moto import mock_aws

from core.adapters.store.dynamodb import DynamoThreadStore, create_table
from core.kernel.thread import Thread, fold
from tests.unit.test_properties import threads

pytestmark = pytest.mark.usefixtures("no_local_stack_in_module")  # each brings its own mock_aws()


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[Any, Any]]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            mp.setenv(key, value)
        with mock_aws():
            ddb = boto3.client("dynamodb", region_name="us-east-1")
            s3 = boto3.client("s3", region_name="us-east-1")
            create_table(ddb, "props")
            s3.create_bucket(Bucket="props")
            yield ddb, s3


COUNTER = iter(range(1_000_000))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(threads())
def test_random_threads_round_trip_through_dynamodb(clients: tuple[Any, Any], thread: Thread) -> None:
    ddb, s3 = clients
    writer = DynamoThreadStore("props", ddb, s3, "props", offload_bytes=1_000)  # small: exercise S3 too
    reader = DynamoThreadStore("props", ddb, s3, "props", cache=False)
    thread = thread.model_copy(update={"id": f"t_prop_{next(COUNTER)}"})
    writer.create(Thread(id=thread.id, agent=thread.agent, events=thread.events[:1]))
    for start in range(1, thread.version, 7):
        batch = thread.events[start : start + 7]
        writer.append(thread.id, start, batch)
    loaded = reader.load(thread.id)
    assert loaded == thread
    assert fold(loaded) == fold(thread)
