"""Functional tier: the real handlers, the real ASL, moto in-process (see infra/local/stack.py).

One local stack serves the whole session (building one costs about a second; there are hundreds of tests). Each
user leases it (:meth:`Shared.lease`): the lease resets the stack to how it was just after it started (empty table
and bucket, no executions, the runtime as built, new recorders) and applies the user's environment as a cold start.
The ``stack`` fixture is one lease per test; a module that shares threads or a server between its tests holds one
lease for the module. Tests that bring their own ``mock_aws()`` ask for ``no_local_stack``: moto's mocks nest and
share one set of backends, so the shared stack is stopped first (and started again by the next lease). Tests of
the stores themselves need no stack, only moto: :func:`scratch_aws` gives them a table and a bucket of their own in
the shared stack's moto (and deletes them after), so the stack is never stopped for them.

Whatever a test leaves behind that would reach the next one fails that test, after being cleaned up
(:func:`_no_leaks`): a changed environment, an execution still mid-step, a botocore hook left on the stack's
clients, a patched Lambda adapter, a listener, another runtime installed.

The stack is built with :data:`~infra.local.stack.TEST_TIME_SCALE`: the ASL's Retry waits a hundredth of its
interval (the same attempts and backoff, see ``test_retry_clock.py``).

The tier runs in the agent loop's mode ``STEPFOLD_LOOP_MODE`` names (``standard``, the default, or ``express``;
ARCHITECTURE.md "Loop modes"): the shared stack and every ``LocalStack`` a test builds read it (``make test-express``
runs the tier in express mode; CI runs it in both). A test of one mode's own states (e.g. the exact states a step
enters in the Standard workflow) is marked ``@pytest.mark.standard_loop("why")`` and is skipped, saying why, in the
other mode; the express mode's own paths are tested in both runs (``test_loop_modes.py`` makes its own loops).

Property and fuzz tests take their hypothesis settings from :func:`fuzz`, under the profile ``STEPFOLD_FUZZ``
names (:data:`FUZZ_PROFILES`). ``ci``, the default, on a developer's machine as in CI, draws the same examples on
every run: a red run is never a new draw, and what passed here passes there. ``deep`` draws ten times as many, new
ones each run (and replays, from hypothesis' example database, any that failed): a run that hunts for bugs rather
than guards, ``STEPFOLD_FUZZ=deep pytest tests/functional -k "fuzz or properties"``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, settings

from agents import deploybot, triage
from core.adapters.store.dynamodb import create_table
from functions import _wiring
from infra.local.stack import LOOP_MODE_ENV, LOOP_MODES, REGION, TEST_TIME_SCALE, LocalStack

FUZZ_PROFILES = {"ci": 1, "deep": 10}
"""Each profile and how many times the examples a test asks for (:func:`fuzz`) it runs."""
FUZZ_PROFILE = os.environ.get("STEPFOLD_FUZZ") or "ci"
if FUZZ_PROFILE not in FUZZ_PROFILES:
    raise pytest.UsageError(f"STEPFOLD_FUZZ must be one of {', '.join(FUZZ_PROFILES)}; got {FUZZ_PROFILE!r}")
for _name in FUZZ_PROFILES:
    settings.register_profile(
        f"stepfold-functional-{_name}",
        derandomize=_name == "ci",
        **({"database": None} if _name == "ci" else {}),
        deadline=None,  # a request through the stack takes what it takes; speed is the benchmarks' business
        print_blob=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def fuzz(examples: int) -> settings:
    """The hypothesis settings of a functional property or fuzz test that draws ``examples`` examples (times the
    profile's scale), under the profile ``STEPFOLD_FUZZ`` names. Registered, not loaded: the other tiers keep theirs."""
    return settings(
        settings.get_profile(f"stepfold-functional-{FUZZ_PROFILE}"), max_examples=examples * FUZZ_PROFILES[FUZZ_PROFILE]
    )


LOOP_MODE = os.environ.get(LOOP_MODE_ENV) or "standard"
"""The loop mode the tier runs in (what :class:`~infra.local.stack.LocalStack` reads)."""
if LOOP_MODE not in LOOP_MODES:
    raise pytest.UsageError(f"{LOOP_MODE_ENV} must be one of {', '.join(LOOP_MODES)}; got {LOOP_MODE!r}")


def pytest_report_header() -> str:
    return f"stepfold loop mode: {LOOP_MODE} ({LOOP_MODE_ENV})"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip, saying why, the tests of the standard loop mode's own states when the tier runs in another."""
    for item in items:
        marker = item.get_closest_marker("standard_loop")
        if marker is None:
            continue
        if not (marker.args and isinstance(marker.args[0], str) and marker.args[0]):
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.standard_loop needs the reason, a string")
        if LOOP_MODE != "standard":
            item.add_marker(pytest.mark.skip(reason=f"standard loop mode only ({LOOP_MODE} here): {marker.args[0]}"))


QUIET = {"POWERTOOLS_LOG_LEVEL": "WARNING"}
SETTLE_S = 30.0
"""How long a test's executions may take to finish their step after the test returned before it is a leak."""


class Shared:
    """The session's one local stack, started on first use and stopped for tests that bring their own moto."""

    def __init__(self) -> None:
        self.stack: LocalStack | None = None
        self.leased = False
        self.transitions = 0
        self.env = dict(os.environ)
        """The environment just after the last start or stop (each sets or restores the stack's variables)."""

    def running(self) -> LocalStack:
        if self.stack is None:
            self.stack = LocalStack(env=QUIET, time_scale=TEST_TIME_SCALE)
            self.stack.start()
            self._transition()
        return self.stack

    def suspend(self) -> None:
        assert not self.leased, "a module holds the shared stack; a test with its own mock_aws() cannot run inside it"
        if self.stack is not None:
            self.stack.stop()
            self.stack = None
            self._transition()

    def _transition(self) -> None:
        self.transitions += 1
        self.env = dict(os.environ)

    @contextlib.contextmanager
    def lease(self, env: Mapping[str, str] = QUIET) -> Iterator[LocalStack]:
        """The stack as a fresh ``LocalStack(env=env)`` would be, for one user (a module's fixture or a test)."""
        assert not self.leased, "the shared stack is leased twice at once"
        stack = self.running()
        stack.reset()
        if any(os.environ.get(key) != value for key, value in env.items()):
            stack.configure(env)
        self.leased = True
        before = _Seen.take(stack)
        try:
            yield stack
        finally:
            self.leased = False
            before.env = dict(os.environ)  # the lease gives back the environment it found, whatever the user set
            problems = _leaks(stack, before)
            stack.reset()
            if problems:
                pytest.fail("the stack's user left behind: " + "; ".join(problems))


SHARED = Shared()


@dataclass
class _Seen:
    """What a user of the stack must give back as it found it."""

    env: dict[str, str]
    hooks: dict[int, list[tuple[str, Any]]]
    runtime: Any

    @classmethod
    def take(cls, stack: LocalStack | None) -> _Seen:
        hooks = {id(client): _hooks(client) for client in _clients(stack).values()}
        return cls(dict(os.environ), hooks, _wiring._RUNTIME)


def _clients(stack: LocalStack | None) -> dict[str, Any]:
    """The stack's botocore clients and its runtime's (a test that redeploys gets a runtime with new clients)."""
    if stack is None or stack.runtime is None:
        return {}
    return {
        **{f"stack.{k}": v for k, v in stack.clients.items()},
        **{f"runtime.{k}": v for k, v in stack.rt.clients.items()},
    }


def _hooks(client: Any) -> list[tuple[str, Any]]:
    """Every (event name, handler) registered on a botocore client's emitter."""
    emitter = getattr(client.meta.events, "_emitter", client.meta.events)
    found: list[tuple[str, Any]] = []
    pending: list[tuple[str, dict[str, Any]]] = [("", emitter._handlers._root)]
    while pending:
        name, node = pending.pop()
        if node["values"] is not None:
            found += [(name, handler) for part in node["values"] for handler in part]
        for chunk, child in node["children"].items():
            pending.append((f"{name}.{chunk}" if name else chunk, child))
    return found


def _leaks(stack: LocalStack | None, before: _Seen) -> list[str]:
    """What the test left that would reach the next one; each is undone as it is found."""
    from moto.awslambda_simple.models import LambdaSimpleBackend  # noqa: PLC0415

    problems = []
    changed = sorted(
        k for k in {*os.environ, *before.env} if os.environ.get(k) != before.env.get(k) and not k.startswith("PYTEST_")
    )
    if changed:
        problems.append(f"environment variables changed: {', '.join(changed)}")
        for key in changed:
            if key in before.env:
                os.environ[key] = before.env[key]
            else:
                del os.environ[key]
    if stack is None:
        return problems
    stack.wait_idle(timeout=SETTLE_S)
    if busy := stack.busy_executions():
        problems.append(f"executions still mid-step {SETTLE_S:.0f}s after the test: {', '.join(busy)}")
    for name, client in _clients(stack).items():
        if id(client) not in before.hooks:
            continue
        extra = [hook for hook in _hooks(client) if hook not in before.hooks[id(client)]]
        for event, handler in extra:
            client.meta.events.unregister(event, handler)
        if extra:
            problems.append(f"botocore hooks left on {name}: {', '.join(event for event, _ in extra)}")
    if "_invoke" in vars(stack):  # put back as the bound method counts as given back
        if vars(stack)["_invoke"] != LocalStack._invoke.__get__(stack):
            problems.append("stack._invoke still patched")
        del stack._invoke
    if getattr(LambdaSimpleBackend.invoke, "__qualname__", "").split(".")[0] != "LocalStack":
        problems.append("moto's Lambda invoke is not the stack's adapter")
    if stack.listeners:
        stack.listeners = []
        problems.append("listeners left on the stack")
    if _wiring._RUNTIME is not stack.runtime:
        _wiring.install_runtime(stack.runtime)
        problems.append("another runtime left installed")
    return problems


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    """Fails a test that leaves something behind for the next one (and cleans it up first)."""
    stack, transitions = SHARED.stack, SHARED.transitions
    before = _Seen.take(stack)
    yield
    if SHARED.transitions != transitions:  # started or stopped for this test: what it left is checked from there
        stack, before.env = None, SHARED.env
    problems = _leaks(stack, before)
    if problems:
        pytest.fail("left behind: " + "; ".join(problems))


def pytest_sessionfinish() -> None:
    if SHARED.stack is not None:
        SHARED.stack.stop()
        SHARED.stack = None


@pytest.fixture(autouse=True)
def _fresh_fakes() -> Iterator[None]:
    deploybot.SERVICE.reset()
    triage.TRACKER.reset()
    yield
    deploybot.SERVICE.reset()
    triage.TRACKER.reset()


@pytest.fixture(scope="package", autouse=True)
def _the_stack_ends_with_this_tier() -> Iterator[None]:
    """Stop the shared stack when the functional tests are done: its moto mock patches botocore for the whole
    process, and the tiers that run after this one (infra, unit) must reach their own fakes, not moto."""
    yield
    SHARED.suspend()


@pytest.fixture(scope="session")
def shared() -> Shared:
    """The session's one local stack: ``with shared.lease(env) as stack`` in a fixture that needs other settings."""
    return SHARED


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    with SHARED.lease() as running:
        yield running


@dataclass(frozen=True)
class ScratchAws:
    """A threads table and a bucket of their own in the session's moto, with clients of their own (hooks a test
    registers on them stay with them)."""

    dynamodb: Any
    s3: Any
    table: str
    bucket: str


@contextlib.contextmanager
def scratch_aws(config: Any = None) -> Iterator[ScratchAws]:
    """A table (the store's schema, :func:`~core.adapters.store.dynamodb.create_table`) and a bucket with unique
    names in the shared stack's moto, deleted afterwards; ``config`` is a botocore ``Config`` for the clients."""
    stack = SHARED.running()
    name = f"scratch-{uuid.uuid4().hex[:16]}"
    dynamodb = boto3.client("dynamodb", region_name=REGION, config=config)
    s3 = boto3.client("s3", region_name=REGION, config=config)
    create_table(dynamodb, name)
    s3.create_bucket(Bucket=name)
    try:
        yield ScratchAws(dynamodb, s3, name, name)
    finally:
        if SHARED.stack is stack:  # else it was stopped meanwhile, and moto forgot everything with it
            _delete_scratch(stack, name)


def _delete_scratch(stack: LocalStack, name: str) -> None:
    """With the stack's clients: the test's may still have faults queued on them."""
    ddb, s3 = stack.clients["dynamodb"], stack.clients["s3"]
    ddb.delete_table(TableName=name)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=name, Delete={"Objects": keys})
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def scratch() -> Iterator[ScratchAws]:
    """:func:`scratch_aws` for one test."""
    with scratch_aws() as aws:
        yield aws


@pytest.fixture
def no_local_stack() -> None:
    """For a test that starts its own ``mock_aws()``: the shared stack is not running meanwhile."""
    SHARED.suspend()


@pytest.fixture(scope="module")
def no_local_stack_in_module() -> None:
    """For a module whose fixtures start their own ``mock_aws()`` (``pytestmark``): no shared stack meanwhile."""
    SHARED.suspend()
