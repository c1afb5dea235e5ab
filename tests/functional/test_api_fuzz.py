"""API fuzzing: schemathesis against the served OpenAPI document, over HTTP, through the local front door.

A LocalStack (moto) and the HTTP front door run on 127.0.0.1 with an API key. Every operation of the document gets
schemathesis' examples, coverage (boundary values, wrong types, unexpected methods) and a bounded fuzzing
run (seeded, unless ``STEPFOLD_FUZZ=deep``: see ``conftest.py``), valid and invalid requests, sent to the live server
with the key. The acceptance bar: no request gets a 5xx.
Responses must also match their documented schema and content type, invalid requests must be refused, and a route
that needs the key must refuse a request without it (schemathesis re-sends one without credentials).

The document is what ``ApiFunction`` answers to ``GET /openapi.json``, asked at import time so that
``schema.parametrize`` can make one test per operation; ``test_the_fuzzed_document_is_the_served_one`` fetches it
from the running server too and compares. (``schemathesis.pytest.from_fixture`` would load it from the server alone,
but with pytest 9 it fails: ``'Function' object has no attribute '_nodeid'``. Also with pytest 9, schemathesis gives
every operation's test the same node id, and anything that goes by node id, pytest-xdist first, silently runs one of
them: a second parametrization, the fuzz profile, gives each test its own, ``...[POST /threads][ci]``.)

A thread id in a generated request is, half the time, a real thread: one waiting for an approval (deploybot), one
waiting for an answer (calculator), one done (orders). So the routes get past "thread not found" and into their
state handling with garbage input. A thread that a request changed (any event appended) is replaced by a new one, so
every request meets a thread in the state its placeholder names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
)

from functions import api
from infra.local.http import FrontDoor, front_door
from infra.local.stack import LambdaContext
from tests.functional._http import http_event
from tests.functional.conftest import FUZZ_PROFILE, FUZZ_PROFILES, Shared

KEY = "fuzz-test-key"
AUTH = {"authorization": f"Bearer {KEY}"}
MAX_EXAMPLES = 25 * FUZZ_PROFILES[FUZZ_PROFILE]
"""Fuzzing examples per operation (times the profile's scale, see ``conftest.py``); the examples and coverage
phases add a bounded few of their own."""
SEED = 20_240_601
"""The seed of the ``ci`` profile's run; ``deep`` draws anew each time."""
THREADS = {"approval-thread": "deploybot", "question-thread": "calculator", "done-thread": "orders"}
"""Values the generator may put in ``{thread_id}``; the test swaps each for a real thread of that agent."""
TEXT = "what is 2+2? deploy the latest backend to production"
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    negative_data_rejection,
    ignored_auth,
]
"""Not ``status_code_conformance``: API Gateway answers 401 on every route with the authorizer, and the handler
413/415 on any route, but the document lists only each route's own errors. Not ``positive_data_acceptance``: a
schema-valid request can still be a 400/404 (an unknown agent, a cursor we did not issue, a fork past the end)."""

REPRODUCIBLE = FUZZ_PROFILE == "ci"
CONFIG = schemathesis.Config.from_dict(
    {
        **({"seed": SEED} if REPRODUCIBLE else {}),
        "auth": {"openapi": {"bearer": {"bearer": KEY}, "apiKey": {"api_key": KEY}}},
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": REPRODUCIBLE, "database": "none"},
        "dictionaries": {"threads": {"values": list(THREADS)}},
        "parameters": {"path.thread_id": {"dictionary": "threads", "probability": 0.5}},
        # API Gateway's HTTP API methods; the local server has no TRACE (nor QUERY) and would answer 501.
        "phases": {"coverage": {"unexpected-methods": ["DELETE", "OPTIONS", "PATCH", "PUT"]}},
    }
)
SERVED = api.handler(http_event("GET", "/openapi.json"), LambdaContext(function_name="ApiFunction"))
schema = schemathesis.openapi.from_dict(json.loads(SERVED["body"]), config=CONFIG)


@pytest.fixture(scope="module")
def door(shared: Shared) -> Iterator[FrontDoor]:
    env = {"POWERTOOLS_LOG_LEVEL": "CRITICAL", "POWERTOOLS_METRICS_DISABLED": "true", "STEPFOLD_API_KEY": KEY}
    with shared.lease(env) as stack, front_door(stack) as server:
        yield server


@pytest.fixture(scope="module")
def http(door: FrontDoor) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=door.base_url, headers=AUTH, timeout=30) as client:
        yield client


class Threads:
    """Real threads for the placeholder ids, launched on first use and again once a request changed one."""

    def __init__(self, door: FrontDoor, http: httpx.Client) -> None:
        self.door = door
        self.http = http
        self.ids: dict[str, tuple[str, int]] = {}

    def get(self, placeholder: str) -> str:
        """A thread of the placeholder's agent, in the state it had when it was launched and settled."""
        if placeholder in self.ids:
            known, version = self.ids[placeholder]
            if self.door.stack.thread(known).version == version:
                return known
        launched = self.http.post("/threads", json={"agent": THREADS[placeholder], "input": TEXT})
        assert launched.status_code == 201, launched.text
        thread_id: str = launched.json()["thread_id"]
        self.ids[placeholder] = (thread_id, self.door.stack.wait(thread_id).version)
        return thread_id


@pytest.fixture(scope="module")
def threads(door: FrontDoor, http: httpx.Client) -> Threads:
    return Threads(door, http)


def test_the_fuzzed_document_is_the_served_one(door: FrontDoor) -> None:
    served = httpx.get(f"{door.base_url}/openapi.json")  # public: no key
    assert served.status_code == 200
    assert served.json() == schema.raw_schema
    live = schemathesis.openapi.from_url(f"{door.base_url}/openapi.json", config=CONFIG)
    assert operations(live) == operations(schema)
    assert len(operations(live)) >= 17


def operations(loaded: schemathesis.BaseSchema) -> set[str]:
    """``METHOD /path`` of every operation; a definition schemathesis cannot use fails the test."""
    labels = set()
    for result in loaded.get_all_operations():
        assert isinstance(result, Ok), result
        labels.add(result.ok().label)
    return labels


@schema.parametrize()
@pytest.mark.parametrize("profile", [FUZZ_PROFILE])  # in the node id: see the module's docstring
def test_no_request_gets_a_server_error(case: Any, door: FrontDoor, threads: Threads, profile: str) -> None:
    placeholder = (case.path_parameters or {}).get("thread_id")
    if placeholder in THREADS:
        case.path_parameters["thread_id"] = threads.get(placeholder)
    case.call_and_validate(base_url=door.base_url, checks=CHECKS)


# --- what the fuzzer found -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data", "multipart/form-data; boundary=x", "Multipart/Form-Data; boundary=", "multipart/mixed"],
)
def test_a_multipart_body_is_a_415_not_a_500(content_type: str) -> None:
    """Found by the coverage phase: ``multipart/form-data`` without a boundary made Powertools raise ValueError."""
    event = http_event("POST", "/threads", None, None, {"content-type": content_type})
    event["body"] = '{"agent": "orders", "input": "x"}'

    result = api.handler(event, LambdaContext(function_name="ApiFunction"))

    assert result["statusCode"] == 415
    assert json.loads(result["body"]) == {
        "error": "unsupported_media_type",
        "detail": "send the body as application/json",
    }
