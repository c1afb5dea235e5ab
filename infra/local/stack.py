"""The local stack: the deployed code on one machine, with no AWS account and no Docker.

moto provides DynamoDB, S3, Lambda, Step Functions, Secrets Manager, Scheduler and EventBridge
in this process. Resources are created from what ``template.yaml`` declares, and the REAL
``agent_loop.asl.json`` runs in moto's own Step Functions engine. moto's Lambda, without Docker,
only echoes payloads, so one small adapter (:meth:`LocalStack._invoke`) routes each invoke, by
function name, to the handler the template names, with real Lambda event and context shapes.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import importlib
import json
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from core.kernel.events import Event
from core.kernel.store import StoreUnavailableError
from core.kernel.thread import Thread, fold
from core.services.approvals import Decision, decide
from core.services.control import launch
from core.services.notify import RecordingNotifier
from core.services.replies import RecordingReplier
from functions._wiring import SECRET_SOURCES, Runtime, Settings, build_runtime, install_runtime
from infra.asl_check import substitute
from infra.local import nested
from infra.local.template import Template, load_template

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
REGION = "us-east-1"
LOOP_MODES = ("standard", "express")
LOOP_MODE_ENV = "STEPFOLD_LOOP_MODE"
"""The environment variable that selects the local stack's loop mode when the caller does not."""
FAST = {"RetryIntervalSeconds": 1, "RetryMaxAttempts": 3}
"""Substitutions that keep retries short locally; the ASL file is the same one that is deployed."""
TEST_TIME_SCALE = 0.01
"""The ``time_scale`` the functional tests build their stack with: a 4 s backoff is waited as 40 ms."""

_TEST_RUNNER_ENV = "PYTEST_"
"""Variables the test runner sets while the stack runs (the current test's name): :meth:`LocalStack.reset` leaves
them alone."""
_READ_AT_COLD_START = frozenset(f.alias for f in Settings.model_fields.values() if f.alias)
"""The variables :func:`build_runtime` reads (with boto3's ``AWS_*``); the keys are read at their first use."""
_TABLE = "stepfold-threads"
_BUCKET = "stepfold-payloads"
_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")
_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@dataclass
class LambdaContext:
    """The attributes of the real Lambda context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = ""
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""
    function_version: str = "$LATEST"
    deadline_ms: float = field(default_factory=lambda: time.time() * 1000 + 60_000)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.deadline_ms - time.time() * 1000))


@dataclass(frozen=True)
class RetryWait:
    """One wait of the ASL's Retry before its state runs again, as moto's engine computed it."""

    execution: str
    """The execution's name (``<thread>-<seq>``)."""
    state: str
    retry: int
    """1 before this entry into the state is first retried, 2 before the second retry, ..."""
    ceiling: float
    """What the Retrier's backoff allows this time: ``IntervalSeconds x BackoffRate^(retry-1)``, capped by
    ``MaxDelaySeconds`` (moto keeps the multiplier per execution, not per entry into the state)."""
    seconds: float
    """What the Retrier asked to wait: ``ceiling``, or with ``JitterStrategy: FULL`` anything from 0 to it. The stack
    waited ``seconds x time_scale``."""


@dataclass(frozen=True)
class Invocation:
    """One routed Lambda invoke, kept for tests and the demo."""

    function: str
    event: Any
    result: Any
    error: str | None


class LocalStack:
    """Start with ``with LocalStack() as stack:``; everything stops (and is forgotten) on exit."""

    def __init__(
        self,
        *,
        root: Path = ROOT,
        substitutions: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        time_scale: float = 1.0,
        loop_mode: str | None = None,
    ) -> None:
        """``time_scale``: the fraction of each Retry wait of the ASL the stack really waits (1, the default, is
        real timing, for ``stepfold serve`` and the demo; the tests use :data:`TEST_TIME_SCALE`). The Retry itself
        is unchanged: the same attempts, the same backoff and jitter, each wait recorded in :attr:`retry_waits`."""
        if not (isinstance(time_scale, int | float) and 0 <= time_scale <= 1):
            raise ValueError(
                f"time_scale must be a number from 0 to 1 (the fraction of each Retry wait really waited), "
                f"got {time_scale!r}"
            )
        mode = loop_mode or os.environ.get(LOOP_MODE_ENV) or "standard"
        if mode not in LOOP_MODES:
            raise ValueError(f"loop_mode must be one of {', '.join(LOOP_MODES)}, got {mode!r}")
        self.loop_mode = mode
        """The template's LoopMode (ARCHITECTURE.md "Loop modes"): the argument, else $STEPFOLD_LOOP_MODE, else
        standard."""
        self.parameters = {"LoopMode": mode}
        """Template parameters the stack deploys with, over their defaults."""
        self.time_scale = float(time_scale)
        self.retry_waits: list[RetryWait] = []
        self.root = root
        self.template: Template = load_template(root / "template.yaml")
        self.substitution_overrides = {**FAST, **(substitutions or {})}
        self.env_overrides = dict(env or {})
        self.notifier = RecordingNotifier()
        self.replier = RecordingReplier()
        self.invocations: list[Invocation] = []
        self.function_arns: dict[str, str] = {}
        self.state_machine_arn = ""
        self._main_state_machine_arn = ""
        self.workflow_arns: dict[str, str] = {}
        """The template's other state machines (workflows that run agents as steps), by logical id."""
        self._built: Runtime | None = None
        self._built_fields: dict[str, Any] = {}
        self._built_env: dict[str, str] = {}
        self._handler_paths: dict[str, str] = {}
        self._handlers: dict[str, Callable[[Any, Any], Any]] = {}
        self._mock: Any = None
        self._saved_env: dict[str, str | None] = {}
        self._saved_invoke: Any = None
        self._lock = threading.Lock()
        self._role = ""
        self.runtime: Runtime | None = None
        self.clients: dict[str, Any] = {}
        self.listeners: list[Callable[[Invocation], None]] = []
        self.bytes_written = 0
        self.write_requests = 0

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        from moto import mock_aws  # noqa: PLC0415 - dev dependency, only the local stack needs it
        from moto.awslambda_simple.models import LambdaSimpleBackend  # noqa: PLC0415

        self._set_env(_FAKE_ENV, only_missing=False)
        self._mock = mock_aws(
            config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
        )
        self._mock.start()
        self._saved_invoke = LambdaSimpleBackend.invoke
        stack = self

        def invoke(
            _backend: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any
        ) -> bytes:
            del qualifier, headers
            return stack._invoke(function_name, body, response_headers)

        LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign,assignment]  # the one documented adapter
        _serialize_dynamodb()
        _fill_start_execution_gap()
        nested.fill_sync_execution_gap()  # after the start gap: it wraps what that one installs
        _fill_stop_execution_gap()
        _fill_token_per_attempt_gap()
        _fill_unstarted_execution_gap()
        _scale_retry_waits()
        _speed_up_moto()
        _RETRY_CLOCK.run_for(self)
        import boto3  # noqa: PLC0415

        for name in ("dynamodb", "s3", "lambda", "stepfunctions", "iam", "secretsmanager"):
            self.clients[name] = boto3.client(name, region_name=REGION)
        settings = self._create_resources()
        self._main_state_machine_arn = self.state_machine_arn
        self._adopt(build_runtime(settings))
        self._built = self.rt
        self._built_fields = {f.name: getattr(self.rt, f.name) for f in fields(self.rt)}
        self._built_env = dict(os.environ)

    def _adopt(self, runtime: Runtime) -> None:
        """Make ``runtime`` the one every handler uses, with the stack's recorders and write counter on it."""
        self.runtime = runtime
        runtime.notifier = self.notifier
        runtime.replier = self.replier  # answers to triggers are recorded, never sent off this machine
        events = runtime.clients["dynamodb"].meta.events
        for operation in _WRITES:
            events.register(f"before-send.dynamodb.{operation}", self._count_write)
        install_runtime(runtime)

    # --- one running stack, many users (the functional tests share one per session) ------------------------------

    def configure(self, env: Mapping[str, str]) -> Runtime:
        """Redeploy the functions with ``env`` on top of their environment: the next invoke is a cold start that
        reads it (settings, keys, prompt versions), as a fresh stack started with ``env=`` would. Undone by
        :meth:`reset`."""
        changed = {key for key, value in env.items() if os.environ.get(key) != value}
        self._set_env(env, only_missing=False)
        if changed & _READ_AT_COLD_START or any(key.startswith("AWS_") for key in changed):
            self._adopt(build_runtime(Settings.from_env()))
        else:  # only what is read at first use (keys, log and metric switches): a new container reads them anew
            self.rt._secrets = None
            self.rt.use_provider_config(self.rt.provider_config)
        return self.rt

    def use_state_machine(self, name: str, **substitutions: Any) -> str:
        """Create the real ASL under ``name`` with these substitutions and run every thread launched from now on in
        it (the functions are redeployed with its ARN and approval timeout), as a stack started with
        ``substitutions=`` would. Undone by :meth:`reset`. Returns its ARN."""
        arn = self.add_state_machine(name, **substitutions)
        values = self.template.substitutions(
            self.template.state_machine(),
            self._arns(),
            {**self.substitution_overrides, **substitutions},
            self.parameters,
        )
        self.state_machine_arn = arn
        self.configure(
            {
                "STEPFOLD_STATE_MACHINE_ARN": arn,
                "STEPFOLD_APPROVAL_TIMEOUT_SECONDS": str(values.get("ApprovalTimeoutSeconds", 86_400)),
            }
        )
        return arn

    def reset(self) -> None:
        """The running stack as it was just after :meth:`start`, for its next user: the table and bucket empty, no
        execution (a parked one is stopped first) and no state machine but its own, the environment and runtime
        it started with (the same object, every field as built: no model built yet, keys read again), new
        recorders (notifier, replier, invocations, write counts) and no listeners. Handlers stay imported (a warm
        container). Call it only when no execution is mid-step (see :meth:`busy_executions`)."""
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends  # noqa: PLC0415

        sfn = self.clients["stepfunctions"]
        backend = stepfunctions_parser_backends[ACCOUNT][REGION]
        machines: list[Any] = list(backend.state_machines)  # the parser backend's: its executions run
        for machine in machines:
            for execution in machine.executions:
                if execution.exec_status == "RUNNING":
                    sfn.stop_execution(executionArn=execution.exec_arn)
            if machine.arn not in (self._main_state_machine_arn, *self.workflow_arns.values()):
                sfn.delete_state_machine(stateMachineArn=machine.arn)
            else:
                machine.executions.clear()  # Step Functions has no API that forgets an execution
        self.state_machine_arn = self._main_state_machine_arn
        ddb = self.clients["dynamodb"]
        with contextlib.suppress(ddb.exceptions.ResourceNotFoundException):  # a user may have deleted it
            ddb.delete_table(TableName=_TABLE)
        self._create_table()
        s3 = self.clients["s3"]
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=_BUCKET):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    s3.delete_objects(Bucket=_BUCKET, Delete={"Objects": keys})
        except s3.exceptions.NoSuchBucket:
            s3.create_bucket(Bucket=_BUCKET)
        for key in set(os.environ) - set(self._built_env):
            if not key.startswith(_TEST_RUNNER_ENV):
                del os.environ[key]
        os.environ.update({k: v for k, v in self._built_env.items() if not k.startswith(_TEST_RUNNER_ENV)})
        if self.runtime is not None:
            self.runtime.use_provider_config(None)  # closes the models a user built
        built = self._built
        assert built is not None, "the stack is not started"
        for name, value in self._built_fields.items():
            setattr(built, name, copy.copy(value) if isinstance(value, dict | list) else value)
        cache = getattr(built.threads, "_cache", None)
        if cache is not None:
            cache.clear()
        self.notifier = RecordingNotifier()
        self.replier = RecordingReplier()
        built.notifier, built.replier = self.notifier, self.replier
        self.runtime = built
        install_runtime(built)
        with self._lock:
            self.invocations = []
            self.retry_waits = []
            self.bytes_written = self.write_requests = 0
        self.listeners = []

    def busy_executions(self) -> list[str]:
        """Executions, of any state machine, that are mid-step (running and not parked on a human)."""
        return [e.exec_arn for e in self._running() if not _parked_on_human(e)]

    def _running(self) -> list[Any]:
        """moto's running executions, of every state machine, as its engine holds them. Read there rather than
        through the API (list, then one history per execution): these checks run after every test and on every
        poll of :meth:`wait`, and a stack with a hundred threads parked on a human made each one take half a
        second of serializing histories."""
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends  # noqa: PLC0415

        backend = stepfunctions_parser_backends[ACCOUNT][REGION]
        machines: list[Any] = list(backend.state_machines)
        return [e for m in machines for e in list(m.executions) if e.exec_status == _RUNNING]

    def stop(self) -> None:
        from moto.awslambda_simple.models import LambdaSimpleBackend  # noqa: PLC0415

        self.wait_idle()
        install_runtime(None)
        _RETRY_CLOCK.release(self)
        if self._saved_invoke is not None:
            LambdaSimpleBackend.invoke = self._saved_invoke  # type: ignore[method-assign]
            self._saved_invoke = None
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def _set_env(self, values: Mapping[str, str], *, only_missing: bool) -> None:
        for key, value in values.items():
            if only_missing and key in os.environ:
                continue
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    # --- resources from template.yaml ------------------------------------------------------------

    def _create_resources(self) -> Settings:
        t = self.template
        s3, lam, iam = (self.clients[n] for n in ("s3", "lambda", "iam"))
        table_name = _TABLE
        self._create_table()
        bucket = _BUCKET
        s3.create_bucket(Bucket=bucket)
        role = iam.create_role(
            RoleName="stepfold-local", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
        )["Role"]["Arn"]
        for function in t.functions():
            arn = lam.create_function(
                FunctionName=function.name,
                Runtime=t.runtime(),
                Role=role,
                Handler=function.handler,
                Code={"ZipFile": b"local stack: routed to the handler in-process"},
            )["FunctionArn"]
            self.function_arns[function.logical_id] = arn
            self._handler_paths[function.name] = function.handler
        self._role = role
        parts = t.loop_parts()  # the agent loop's Express bursts: it names them
        self.workflow_arns = nested.create_workflows(self, parts)
        self.state_machine_arn = self.add_state_machine(t.state_machine().name)
        later = [m for m in t.workflows() if m not in parts]
        self.workflow_arns.update(nested.create_workflows(self, later))
        values = t.substitutions(t.state_machine(), self._arns(), self.substitution_overrides, self.parameters)
        env = {
            **t.function_environment(),
            "STEPFOLD_TABLE": table_name,
            "STEPFOLD_BUCKET": bucket,
            "STEPFOLD_STATE_MACHINE_ARN": self.state_machine_arn,
            "STEPFOLD_APPROVAL_TIMEOUT_SECONDS": str(values.get("ApprovalTimeoutSeconds", 86_400)),
            # Locally every key comes from the environment (STEPFOLD_API_KEY(S), OPENAI_API_KEY, ...), never from
            # Secrets Manager: no secret ARN, whatever the shell has set.
            "STEPFOLD_SECRETS_ARN": "",
            **dict.fromkeys(SECRET_SOURCES, ""),
            **self.env_overrides,
        }
        self._set_env({k: str(v) for k, v in env.items()}, only_missing=False)
        # STEPFOLD_MODEL from the caller's shell wins over the template's empty default
        return Settings.from_env()

    def _create_table(self) -> None:
        t, ddb = self.template, self.clients["dynamodb"]
        ddb.create_table(TableName=_TABLE, **t.table_properties())
        if t.ttl_attribute():
            ddb.update_time_to_live(
                TableName=_TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": t.ttl_attribute()}
            )

    def add_state_machine(self, name: str, **substitutions: Any) -> str:
        """Create the template's state machine (the real ASL) under ``name``, with these substitutions on top of the
        stack's: a second loop with other limits, on the same tables and functions. Returns its ARN."""
        machine = self.template.state_machine()
        overrides = {**self.substitution_overrides, **substitutions}
        values = self.template.substitutions(machine, self._arns(), overrides, self.parameters)
        definition = substitute((self.root / machine.definition_uri).read_text(), values)
        arn: str = self.clients["stepfunctions"].create_state_machine(
            name=name, definition=definition, roleArn=self._role, type=machine.type
        )["stateMachineArn"]
        return arn

    def add_workflow(self, logical_id: str, name: str, **substitutions: Any) -> str:
        """Create another state machine of the template (its real ASL), e.g. ``AgentBurst``, the express loop mode's
        bursts, under ``name``, with these substitutions on top of the stack's: a loop made by
        :meth:`add_state_machine` or :meth:`use_state_machine` with ``BurstMachineArn=`` runs its bursts there, with
        other budgets. Deleted by :meth:`reset`. Returns its ARN."""
        found = [m for m in self.template.workflows() if m.logical_id == logical_id]
        if not found:
            raise ValueError(f"the template has no state machine {logical_id} besides the agent loop")
        machine = found[0]
        overrides = {**self.substitution_overrides, **substitutions}
        arns = {**self._arns(), self.template.state_machine().logical_id: self.state_machine_arn}
        values = self.template.substitutions(machine, arns, overrides, self.parameters)
        definition = substitute((self.root / machine.definition_uri).read_text(), values)
        arn: str = self.clients["stepfunctions"].create_state_machine(
            name=name, definition=definition, roleArn=self._role, type=machine.type
        )["stateMachineArn"]
        return arn

    def _arns(self) -> dict[str, str]:
        """What a ``!Ref``/``!GetAtt`` of a substitution resolves to: the functions and the other state machines."""
        return {**self.function_arns, **self.workflow_arns}

    # --- the Lambda adapter ----------------------------------------------------------------------

    def _invoke(self, function_name: str, body: Any, response_headers: dict[str, str]) -> bytes:
        name = function_name.rsplit(":", 1)[-1] if function_name.startswith("arn:") else function_name
        handler = self.handler(name)
        if handler is None:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(
                {"errorType": "ResourceNotFoundException", "errorMessage": f"no function {name}"}
            ).encode()
        raw = body.decode() if isinstance(body, bytes) else body
        event = json.loads(raw) if raw else {}
        context = LambdaContext(function_name=name, invoked_function_arn=self.function_arns.get(name, ""))
        try:
            result = handler(event, context)
        except SystemExit as exc:  # the process died mid-invocation: Lambda reports Runtime.ExitError
            response_headers["x-amz-function-error"] = "Unhandled"
            self._record(Invocation(name, event, None, "Runtime.ExitError"))
            return json.dumps({"errorType": "Runtime.ExitError", "errorMessage": f"exited: {exc}"}).encode()
        except Exception as exc:  # noqa: BLE001 - reported to Step Functions exactly as Lambda would
            response_headers["x-amz-function-error"] = "Unhandled"
            error = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }
            self._record(Invocation(name, event, None, type(exc).__name__))
            return json.dumps(error).encode()
        self._record(Invocation(name, event, result, None))
        return json.dumps(result).encode()

    def handler(self, name: str) -> Callable[[Any, Any], Any] | None:
        """The function's handler, imported on its first invoke (as a Lambda cold start does)."""
        if name not in self._handlers:
            path = self._handler_paths.get(name)
            if path is None:
                return None
            module, _, attr = path.rpartition(".")
            self._handlers[name] = getattr(importlib.import_module(module.replace("/", ".")), attr)
        return self._handlers[name]

    def _record(self, invocation: Invocation) -> None:
        with self._lock:
            self.invocations.append(invocation)
        for listener in self.listeners:
            listener(invocation)

    def _record_retry(self, wait: RetryWait) -> None:
        with self._lock:
            self.retry_waits.append(wait)

    def _count_write(self, request: Any, **_: Any) -> None:
        with self._lock:
            self.write_requests += 1
            self.bytes_written += len(request.body or b"")

    # --- driving threads -------------------------------------------------------------------------

    @property
    def rt(self) -> Runtime:
        assert self.runtime is not None, "the stack is not started"
        return self.runtime

    def launch(self, agent: str, text: str, *, idempotency_key: str | None = None, source: str = "api") -> Thread:
        """Create a thread and start its execution, as the API's launch does."""
        rt = self.rt
        return launch(
            rt.threads,
            rt.executions,
            rt.agents,
            agent=agent,
            text=text,
            clock=rt.clock,
            idempotency_key=idempotency_key,
            source=source,
        ).thread

    def decide(self, approval_id: str, decision: Decision) -> Thread:
        """Apply a person's decision, as the approval page and the API's responses route do."""
        rt = self.rt
        return decide(
            approval_id,
            decision,
            threads=rt.threads,
            approvals=rt.approvals,
            agents=rt.agents,
            tokens=rt.sfn,
            clock=rt.clock,
        )

    def start_execution(self, thread_id: str, seq: int) -> str:
        response = self.clients["stepfunctions"].start_execution(
            stateMachineArn=self.state_machine_arn,
            name=f"{thread_id}-{seq}",
            input=json.dumps({"thread_id": thread_id, "seq": seq, "iteration": 0}),
        )
        arn: str = response["executionArn"]
        return arn

    def execution_arn(self, thread_id: str, seq: int = 1) -> str:
        return self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{thread_id}-{seq}"

    def execution_status(self, execution_arn: str) -> str:
        status: str = self.clients["stepfunctions"].describe_execution(executionArn=execution_arn)["status"]
        return status

    def wait_execution(self, execution_arn: str, *, timeout: float = 30.0) -> str:
        """Poll until the execution has ended (even one parked on a human); returns how (``SUCCEEDED``, ``FAILED``,
        ``ABORTED``, ``TIMED_OUT``)."""
        deadline = time.monotonic() + timeout
        while (status := self.execution_status(execution_arn)) == "RUNNING":
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_arn} is still RUNNING after {timeout}s")
            time.sleep(0.02)
        return status

    def thread(self, thread_id: str) -> Thread:
        return self.rt.threads.load(thread_id)

    def wait(
        self,
        thread_id: str,
        *,
        until: tuple[str, ...] = ("awaiting_human", "paused", "done", "failed"),
        timeout: float = 30.0,
        on_events: Callable[[list[Event]], None] | None = None,
    ) -> Thread:
        """Poll until the thread's folded status is one of ``until`` and no execution is mid-step."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            try:
                thread = self.thread(thread_id)
            except StoreUnavailableError:  # a read that kept landing mid-commit (DynamoDB allows it): poll again
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
                continue
            if on_events is not None and thread.version > seen:
                on_events(list(thread.events[seen:]))
                seen = thread.version
            status = fold(thread).status
            if status in until and self._settled(thread, status):
                return thread
            if time.monotonic() > deadline:
                raise TimeoutError(f"thread {thread_id} is {status} after {timeout}s; waited for {until}")
            time.sleep(0.02)

    def _settled(self, thread: Thread, status: str) -> bool:
        """A waiting thread counts once its link was sent; an ended one once its execution ended."""
        if status == "awaiting_human":
            request = fold(thread).open_request
            sent = self.notifier.last_for(thread.id)
            return request is not None and sent is not None and sent[0].approval_id == request.approval_id
        return not self.running_executions(thread.id)

    def running_executions(self, thread_id: str) -> list[str]:
        """The thread's executions (of any state machine) that are mid-step."""
        return [e.exec_arn for e in self._running() if _runs_thread(e, thread_id) and not _parked_on_human(e)]

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no execution is mid-step (so stopping the mock does not cut one in half)."""
        if self._mock is None:
            return
        deadline = time.monotonic() + timeout
        while self.busy_executions() and time.monotonic() < deadline:
            time.sleep(0.02)

    def execution_ended(self, execution_arn: str) -> list[Any]:
        """What EventBridge does when an execution ends: build the "Step Functions Execution Status Change" event
        from the execution as it is, and invoke every function whose template rule matches it (through moto's
        Lambda, as a rule target is). Returns what each invoked function returned."""
        from core.services.triggers import matches  # noqa: PLC0415

        sfn = self.clients["stepfunctions"]
        execution = sfn.describe_execution(executionArn=execution_arn)
        if execution["status"] == "RUNNING":
            return []

        def millis(value: Any) -> int | None:
            return int(value.timestamp() * 1000) if value is not None else None

        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states",
            "account": ACCOUNT,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": REGION,
            "resources": [execution_arn],
            "detail": {
                "executionArn": execution_arn,
                "stateMachineArn": execution["stateMachineArn"],
                "name": execution["name"],
                "status": execution["status"],
                "startDate": millis(execution.get("startDate")),
                "stopDate": millis(execution.get("stopDate")),
                "input": execution.get("input"),
                "output": execution.get("output"),
                "error": execution.get("error"),
                "cause": execution.get("cause"),
            },
        }
        answers = []
        for rule in self.template.event_rules():
            if matches(rule.pattern, event):
                response = self.clients["lambda"].invoke(FunctionName=rule.function, Payload=json.dumps(event).encode())
                answers.append(json.loads(response["Payload"].read() or b"null"))
        return answers

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.clients["stepfunctions"].get_execution_history(executionArn=execution_arn)[
            "events"
        ]
        return events

    def items(self) -> tuple[int, int]:
        """(number of items, bytes) in the threads table: what the demo reports."""
        ddb = self.clients["dynamodb"]
        count = size = 0
        for page in ddb.get_paginator("scan").paginate(TableName=_TABLE):
            count += page["Count"]
            size += sum(len(json.dumps(item)) for item in page["Items"])
        return count, size


_RUNNING = "RUNNING"


def _runs_thread(execution: Any, thread_id: str) -> bool:
    """Whether a running execution of moto's engine works on the thread: the agent loop's are named
    ``<thread>-<seq>``; an Express burst (express loop mode) has a generated name, and its input names the thread."""
    if str(execution.name).startswith(f"{thread_id}-"):
        return True
    given = execution.input_data
    return isinstance(given, dict) and given.get("thread_id") == thread_id


def _parked_on_human(execution: Any) -> bool:
    """Whether a running execution of moto's engine waits in ``WaitForHuman`` (for a task token, not mid-step):
    the last state it entered, read from the history its engine keeps, and its token not answered yet. A token
    answered (SendTaskSuccess/Failure) wakes the engine's worker, which records the answer in the history only when
    it runs: until then the execution is about to move on, not parked (a stack reset in that window would stop it
    mid-way)."""
    worker = execution.exec_worker
    env = worker.env if worker is not None else None
    if env is None:  # not started yet
        return False
    history = env.event_manager.get_event_history()
    for event in reversed(history):
        kind = event["type"]  # a str enum: equal to its name
        if kind == "TaskStateEntered":
            waiting = event["stateEnteredEventDetails"]["name"] == "WaitForHuman" and not _token_answered(env)
            return waiting or nested.waits_on_child(history)
        if kind in ("TaskStateExited", "PassStateEntered", "ChoiceStateEntered"):
            return False
    return False


def _token_answered(env: Any) -> bool:
    """Whether the newest task token of an execution (moto keeps one callback endpoint per token, in the order the
    tokens were made) has its answer."""
    pool = getattr(env.callback_pool_manager, "_pool", None)
    if not pool:
        return False
    newest = next(reversed(pool.values()))
    return newest.get_outcome() is not None


_TORN_READS = frozenset({"Query", "Scan"})
"""Requests DynamoDB runs read-committed item by item: they may see some items of a transaction and not others."""


class _DynamoGate:
    """How moto's DynamoDB is made to behave like the real service's isolation, for threads sharing one moto.

    DynamoDB's isolation (developer guide, "Isolation levels for DynamoDB transactions"): TransactWriteItems is
    atomic and serializable against every other write and against GetItem/TransactGetItems; Query and Scan are
    read-committed item by item, so one that runs while a transaction commits may return some of its items and
    not others (never one from a transaction that fails). moto is not thread-safe, so two locks:

    - ``commit``, held for the whole of every request but Query/Scan: writes (and point reads) are serialized
      against each other, so none ever sees half a transaction and no two conditional writes interleave.
    - ``engine``, held whenever moto's data structures are touched (a whole Query/Scan, a whole moto call, one
      item of a transaction being published). Query/Scan take only this one.

    A successful TransactWriteItems runs in moto in one piece (moto checks every condition and rolls back on
    failure), then its items are taken back to their before-images and published again one at a time, in
    request order, releasing ``engine`` between items (``between_items`` is called there): a Query or Scan can
    land in between and see the transaction half-applied, exactly what real DynamoDB allows, while a failed
    transaction is never visible and moto's dicts are never read while they change.

    moto backs a transaction up by deep-copying every table it writes, once per item it writes: a step on a
    10,000-event thread deep-copied 40,000 items. The gate has it back up only what a transaction can change
    (:class:`_TransactionBackup`): the same rollback, for the cost of copying the table's item maps.
    """

    def __init__(self) -> None:
        self.commit = threading.RLock()
        self.engine = threading.RLock()
        self.between_items: Callable[[int, int], None] = _let_readers_in

    def call(self, original: Callable[[Any], Any], handler: Any) -> Any:
        action = handler._get_action()
        if action in _TORN_READS:
            with self.engine:
                return original(handler)
        with self.commit:
            if action != "TransactWriteItems":
                with self.engine:
                    return original(handler)
            return self._transact(original, handler)

    def _transact(self, original: Callable[[Any], Any], handler: Any) -> Any:
        backend = handler.dynamodb_backend
        params = getattr(handler, "params", None) or {}
        with self.engine:
            try:
                targets = [_target(backend, action) for action in params.get("TransactItems", [])]
            except Exception:  # noqa: BLE001 - malformed request: let moto answer it the way DynamoDB would
                return original(handler)
            # moto updates items in place: keep copies of the before-images, taken before it runs.
            befores = [copy.deepcopy(_get_item(backend, name, key)) for name, key in targets]
            with _backups_from(list(zip(targets, befores, strict=True))):
                response = original(handler)
            if not (isinstance(response, tuple) and response and response[0] == 200):
                return response  # cancelled: moto rolled every item back, nobody saw anything
            afters = [_get_item(backend, name, key) for name, key in targets]
            for (name, key), before in zip(targets, befores, strict=True):
                _set_item(backend, name, key, before)
        for done, ((name, key), after) in enumerate(zip(targets, afters, strict=True), start=1):
            with self.engine:
                _set_item(backend, name, key, after)
            if done < len(targets):
                self.between_items(done, len(targets))
        return response


def _let_readers_in(done: int, total: int) -> None:
    """Between two items of a transaction being published: give a waiting Query or Scan the chance to run."""
    del done, total
    time.sleep(0)


def _target(backend: Any, action: dict[str, Any]) -> tuple[str, tuple[Any, Any]]:
    """The table name and key (moto's hash and range values) one TransactWriteItems action writes."""
    (kind, op), *_ = action.items()
    table = backend.get_table(op["TableName"])
    names = (table.hash_key_attr, table.range_key_attr)
    keys = op["Item"] if kind == "Put" else op["Key"]
    return op["TableName"], backend.get_keys_value(table, {name: keys[name] for name in names if name is not None})


def _get_item(backend: Any, table_name: str, key: tuple[Any, Any]) -> Any:
    return backend.get_table(table_name).get_item(*key)


def _set_item(backend: Any, table_name: str, key: tuple[Any, Any], item: Any) -> None:
    """Put ``item`` (a moto Item, or ``None`` for absent) at ``key`` directly: no stream record, no conditions."""
    _place(backend.get_table(table_name), key, item)


def _place(table: Any, key: tuple[Any, Any], item: Any) -> None:
    hash_value, range_value = key
    if item is None:
        if range_value is not None:
            table.items[hash_value].pop(range_value, None)
        else:
            table.items.pop(hash_value, None)
    elif range_value is not None:
        table.items[hash_value][range_value] = item
    else:
        table.items[hash_value] = item


class _TransactionBackup:
    """Stands in for the ``copy`` module in moto's DynamoDB backend while one TransactWriteItems runs there.

    moto's ``transact_write_items`` backs up each table it writes with ``copy.deepcopy(table)`` and, when the
    transaction is cancelled, puts the backup in the table's place. A transaction changes nothing of a table but
    the items it names (a Put or Delete replaces the item in the table's maps; an Update changes the item object in
    place), so the backup here is a shallow copy of the table whose item maps are copied and hold deep copies of
    the named items (their before-images): what a deep copy would restore, without copying every other item. A
    table with a stream (whose records a rollback also takes back) and any other object get a real deep copy.
    """

    def __init__(self, befores: list[tuple[tuple[str, tuple[Any, Any]], Any]]) -> None:
        self._befores = befores
        self._made: dict[int, Any] = {}

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table  # noqa: PLC0415

        if not isinstance(value, Table) or value.stream_shard is not None:
            return copy.deepcopy(value, memo)
        if id(value) not in self._made:  # moto asks once per item; the table is the same until all are asked
            backup = copy.copy(value)
            backup.items = copy.copy(value.items)  # moto's maps: hash -> item, or hash -> {range -> item}
            if value.range_key_attr is not None:
                for hash_value, entries in value.items.items():
                    backup.items[hash_value] = dict(entries)
            for (name, key), before in self._befores:
                if name == value.name:
                    _place(backup, key, copy.deepcopy(before))
            self._made[id(value)] = backup
        return self._made[id(value)]

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


@contextlib.contextmanager
def _backups_from(befores: list[tuple[tuple[str, tuple[Any, Any]], Any]]) -> Iterator[None]:
    """While moto runs one transaction (the gate's ``engine`` held), it backs tables up with a
    :class:`_TransactionBackup`."""
    models: Any = importlib.import_module("moto.dynamodb.models")
    saved = models.copy
    models.copy = _TransactionBackup(befores)
    try:
        yield
    finally:
        models.copy = saved


_DYNAMO_GATE = _DynamoGate()


def _fill_start_execution_gap() -> None:
    """moto's engine runs ``arn:aws:states:::states:startExecution`` (ContinueAsNew) but passes the ASL's
    ``StateMachineArn``/``Name``/``Input`` to boto3 as they are, which wants ``stateMachineArn``/..., and returns
    boto3's answer with a datetime it cannot serialise. Translate both ways, as the real service does, and name an
    unnamed start with a UUID as it does. Idempotent."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (  # noqa: PLC0415
        state_task_service_sfn as sfn_task,
    )

    task = sfn_task.StateTaskServiceSfn
    if getattr(task, "_stepfold_filled", False):
        return
    parameters_of, response_of = task._normalise_parameters, task._normalise_response

    def parameters(self: Any, params: dict[str, Any], boto_service_name: Any = None, action: Any = None) -> None:
        parameters_of(self, params, boto_service_name, action)
        if action is None:
            for key in list(params):
                params[key[:1].lower() + key[1:]] = params.pop(key)
            if "stateMachineArn" in params and "input" in params and "name" not in params:
                # a start without a Name (the express loop mode's bursts): Step Functions names it with a UUID;
                # moto's engine would name every such execution "None", and the second one would already exist
                params["name"] = str(uuid.uuid4())

    def response(self: Any, value: Any, boto_service_name: Any = None, action: Any = None) -> None:
        response_of(self, value, boto_service_name, action)
        if action is None and isinstance(value, dict):
            for key in list(value):
                item = value.pop(key)
                value[key[:1].upper() + key[1:]] = item.isoformat() if hasattr(item, "isoformat") else item

    task._normalise_parameters = parameters  # type: ignore[method-assign,assignment]
    task._normalise_response = response  # type: ignore[method-assign,assignment]
    task._stepfold_filled = True  # type: ignore[attr-defined]


def _fill_unstarted_execution_gap() -> None:
    """moto's ``SendTaskSuccess``/``Failure``/``Heartbeat`` look for the token in every running execution's engine,
    and an execution started a moment ago has none yet (``exec_worker`` or its ``env`` still None): the call fails
    with an AttributeError (a 500 from the API that relays a person's decision) whenever any execution anywhere is
    starting, which the express loop mode's bursts make frequent. Such an execution holds no token, so leave it out
    of what those calls search, as Step Functions would never see the difference. Idempotent."""
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend  # noqa: PLC0415

    backend = StepFunctionsParserBackend
    if getattr(backend, "_stepfold_started_filled", False):
        return
    every = backend._get_executions

    def started_executions(self: Any, execution_status: Any = None) -> list[Any]:
        return [
            e
            for e in every(self, execution_status)
            if e.exec_worker is not None and getattr(e.exec_worker, "env", None) is not None
        ]

    backend._get_executions = started_executions  # type: ignore[method-assign]
    backend._stepfold_started_filled = True  # type: ignore[attr-defined]


def _fill_token_per_attempt_gap() -> None:
    """moto's engine makes a Task's token (``$$.Task.Token``) and its callback endpoint once when the state is entered,
    and every Retry attempt reuses them; the first attempt's end interrupts that endpoint, so a retried
    ``.waitForTaskToken`` task (WaitForHuman) or ``.sync``/``.sync:2`` task (Burst, ContinueAsNew) finds it spent and
    times out at once (``States.Timeout``). Step Functions issues a new token for each attempt. Give each attempt a
    new one, as it does, when the last one is spent. Idempotent."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (  # noqa: PLC0415
        state_task_service_callback as callback_task,
    )

    task = callback_task.StateTaskServiceCallback
    if getattr(task, "_stepfold_token_filled", False):
        return
    before = task._eval_execution

    def eval_execution(self: Any, env: Any) -> None:
        token = (env.states.context_object.context_object_data.get("Task") or {}).get("Token")
        endpoint = env.callback_pool_manager.get(token) if token else None
        if endpoint is not None and endpoint._notify_event.is_set():  # spent by an earlier attempt
            env.callback_pool_manager.add(env.states.context_object.update_task_token())
        before(self, env)

    task._eval_execution = eval_execution  # type: ignore[method-assign]
    task._stepfold_token_filled = True  # type: ignore[attr-defined]


def _fill_stop_execution_gap() -> None:
    """moto's executing backend inherits a ``StopExecution`` that never reaches the running interpreter: the execution
    stays RUNNING. Stop it the way the engine itself can and report it ABORTED at once, as AWS does. moto's
    response handler drops the call's ``error`` and ``cause``; the local stack lives with that. Idempotent."""
    import datetime  # noqa: PLC0415

    from moto.stepfunctions.parser.models import StepFunctionsParserBackend  # noqa: PLC0415

    if getattr(StepFunctionsParserBackend, "_stepfold_filled", False):
        return

    def stop_execution(self: Any, execution_arn: str) -> Any:
        from moto.stepfunctions.parser.api import ExecutionStatus  # noqa: PLC0415

        execution = self.describe_execution(execution_arn)
        now = datetime.datetime.now(tz=datetime.UTC)
        execution.stop(stop_date=now, error=None, cause=None)
        # A program parked on a task token only notices the stop when the wait ends: report it as AWS does, now.
        execution.exec_status, execution.stop_date = ExecutionStatus.ABORTED, now
        return execution

    StepFunctionsParserBackend.stop_execution = stop_execution  # type: ignore[method-assign]
    StepFunctionsParserBackend._stepfold_filled = True  # type: ignore[attr-defined]


class _RetryClock:
    """Stands in for the ``time`` module in moto's retrier module, whose one use of it is the wait before a retry.

    moto's Retrier computes the interval (IntervalSeconds, BackoffRate, MaxDelaySeconds, then the jitter) and
    sleeps it. The clock records each wait for the running stack (:class:`RetryWait`: the ceiling is taken just before
    the jitter, on the same engine thread) and sleeps it scaled by the stack's ``time_scale``. Nothing else of the
    engine is touched: which errors retry, how many times and what is caught stay moto's reading of the real ASL.
    """

    def __init__(self) -> None:
        self.scale = 1.0
        self.stack: LocalStack | None = None
        self._pending = threading.local()

    def run_for(self, stack: LocalStack) -> None:
        """Scale and record the waits for ``stack``, the one running in this process (moto's mock is global)."""
        self.stack, self.scale = stack, stack.time_scale

    def release(self, stack: LocalStack) -> None:
        """Real timing again, nothing recorded, once ``stack`` stops."""
        if self.stack is stack:
            self.stack, self.scale = None, 1.0

    def before_jitter(self, env: Any, ceiling: float) -> None:
        self._pending.wait = (env, ceiling)

    def sleep(self, seconds: float) -> None:
        env, ceiling = getattr(self._pending, "wait", None) or (None, seconds)
        self._pending.wait = None
        stack = self.stack
        if stack is not None and env is not None:
            context = env.states.context_object.context_object_data
            state = context["State"]
            stack._record_retry(
                RetryWait(
                    execution=context["Execution"]["Name"],
                    state=state["Name"],
                    retry=int(state["RetryCount"]) + 1,  # moto counts the retry once its wait is over
                    ceiling=float(ceiling),
                    seconds=float(seconds),
                )
            )
        time.sleep(seconds * self.scale)


_RETRY_CLOCK = _RetryClock()


def _scale_retry_waits() -> None:
    """Route the wait of moto's Retrier through :data:`_RETRY_CLOCK` (see :class:`_RetryClock`). Idempotent."""
    package = "moto.stepfunctions.parser.asl.component.common.retry"
    retrier_decl: Any = importlib.import_module(f"{package}.retrier_decl")
    jitter: Any = importlib.import_module(f"{package}.jitter_strategy_decl").JitterStrategyDecl
    if retrier_decl.time is _RETRY_CLOCK:
        return
    if retrier_decl.time is not time:
        raise RuntimeError("moto's retrier no longer waits with time.sleep: the local stack cannot scale its waits")
    jittered = jitter._eval_body

    def eval_body(self: Any, env: Any) -> None:
        _RETRY_CLOCK.before_jitter(env, env.stack[-1])  # the backoff's interval, before the jitter draws from it
        jittered(self, env)

    jitter._eval_body = eval_body
    retrier_decl.time = _RETRY_CLOCK


def _serialize_dynamodb() -> None:
    """Give moto's DynamoDB the real service's isolation for the executions running on moto's threads.

    Writes are atomic and serialized; Query and Scan interleave with a transaction's items as DynamoDB lets them
    (see :class:`_DynamoGate`). Idempotent: moto's handler is wrapped once per process.
    """
    from moto.dynamodb.responses import DynamoHandler  # noqa: PLC0415

    original = DynamoHandler.call_action
    if getattr(original, "_stepfold_serialized", False):
        return

    def call_action(handler: Any) -> Any:
        return _DYNAMO_GATE.call(original, handler)

    call_action._stepfold_serialized = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    _answer_reads_as_json()


_PLAIN_READS = frozenset({"Query", "Scan"})
"""Reads whose answer moto builds as the wire's JSON already: items of attribute values, counts, a key."""


def _answer_reads_as_json() -> None:
    """Answer a Query or Scan with its result as JSON, instead of through moto's serializer.

    moto builds these answers as the JSON DynamoDB sends (attribute values are ``{"S": ...}`` maps) and then walks
    the operation's output shape value by value to serialize them, which made reading a 10,000-event thread take
    seconds. ``json.dumps`` writes the same document (binary values base64, as the serializer does; no member left
    empty); ``test_local_moto.py`` compares the two on every attribute type. Other operations, and errors, go
    through moto's serializer as before. Called by :func:`_serialize_dynamodb`, once per process.
    """
    from moto.dynamodb.responses import DynamoHandler  # noqa: PLC0415

    serialized = DynamoHandler.serialized

    def answer(handler: Any, action_result: Any) -> Any:
        result = action_result.result
        if not (isinstance(result, dict) and handler._get_action() in _PLAIN_READS):
            return serialized(handler, action_result)
        body = json.dumps({k: v for k, v in result.items() if v is not None}, default=_base64)
        return 200, {"Content-Type": "application/x-amz-json-1.0", **handler.response_headers}, body

    DynamoHandler.serialized = answer  # type: ignore[method-assign,assignment]


def _base64(value: Any) -> str:
    if not isinstance(value, bytes):
        raise TypeError(f"{type(value).__name__} in a DynamoDB read's answer: only binary values need encoding")
    return base64.b64encode(value).decode("ascii")


def _speed_up_moto() -> None:
    """What the local stack changes in moto for speed only (ARCHITECTURE.md, "The local stack"): each change gives
    the same answers as moto's own code, and is tested against it in ``test_local_moto.py``. Idempotent."""
    _query_one_partition()
    _list_each_handlers_actions_once()
    _parse_each_definition_once()
    _parse_each_json_path_once()
    _one_lambda_client_per_region()


class _Partition:
    """A moto table as its ``query`` sees it, holding only the items of one partition: every other attribute is the
    table's own."""

    def __init__(self, table: Any, hash_key: Any) -> None:
        self._table = table
        self._hash_key = hash_key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    def all_items(self) -> list[Any]:
        entries = self._table.items.get(self._hash_key)  # .get: moto's map is a defaultdict, nothing is added
        if entries is None:
            return []
        return list(entries.values()) if self._table.range_key_attr else [entries]


def _query_one_partition() -> None:
    """Run a Query on a table's own key over the items of its partition, not over the whole table.

    moto's ``Table.query`` lists every item of the table, sorted by key, then keeps those of the queried partition:
    with 1,000 threads of ~20 items each, every step's read sorted 21,000 items. The same function runs here on a
    :class:`_Partition` of the table (its map of that partition: moto keys it by the same hash value), so it finds,
    orders, pages, filters and projects exactly as before. A Query on an index, whose partitions moto keeps no map
    of, runs on the whole table as before.
    """
    import functools  # noqa: PLC0415
    import inspect  # noqa: PLC0415

    from moto.dynamodb.models.table import Table  # noqa: PLC0415

    query = Table.query
    if getattr(query, "_stepfold_partition", False):
        return
    parameters = inspect.signature(query)

    @functools.wraps(query)
    def partition_query(self: Any, *args: Any, **kwargs: Any) -> Any:
        given = parameters.bind(self, *args, **kwargs).arguments
        if given.get("index_name") or given.get("hash_key") is None:
            return query(self, *args, **kwargs)
        partition: Any = _Partition(self, given["hash_key"])
        return query(partition, *args, **kwargs)

    partition_query._stepfold_partition = True  # type: ignore[attr-defined]
    Table.query = partition_query  # type: ignore[method-assign]


_PARSED_DEFINITIONS = 16
"""Parse trees kept (a stack has one state machine, and the tests a few more with other substitutions)."""


def _parse_each_definition_once() -> None:
    """Parse a state machine's definition once, not once per execution.

    moto's engine parses the ASL with ANTLR when an execution starts (the parse tree), then builds the execution's
    program from the tree. The tree is kept per definition (the :data:`_PARSED_DEFINITIONS` last used) and only
    read after; the program, whose components an execution evaluates, is still built anew for every execution from
    it. A definition that does not parse is parsed (and refused) every time, as before.
    """
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser  # noqa: PLC0415
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor  # noqa: PLC0415

    parser = AmazonStateLanguageParser
    if getattr(parser, "_stepfold_cached", False):
        return
    parse = parser.parse
    trees: dict[str, Any] = {}  # the most recently used last
    lock = threading.Lock()

    def parse_once(definition: str) -> tuple[Any, Any]:
        with lock:
            tree = trees.pop(definition, None)
        if tree is None:
            _, tree = parse(definition)  # raises on a syntax error: nothing kept
        with lock:
            trees[definition] = tree
            while len(trees) > _PARSED_DEFINITIONS:
                del trees[next(iter(trees))]
        return Preprocessor().visit(tree), tree

    parser.parse = staticmethod(parse_once)  # type: ignore[method-assign]
    parser._stepfold_cached = True  # type: ignore[attr-defined]


def _parse_each_json_path_once() -> None:
    """Parse each JSONPath of the ASL once, not at every evaluation.

    moto's engine evaluates every ``$.x`` of a state (``Parameters``, ``ResultSelector``, ``ResultPath``, ...) with
    ``jsonpath_ng``'s ``parse``, which builds a new parser (its grammar tables) for every call: ~10 per step. A
    parsed path is an expression that finding or updating never changes; it is kept per path string (at most a few
    hundred: the ASL's own), in the two modules that parse them.
    """
    import functools  # noqa: PLC0415

    for name in (
        "moto.stepfunctions.parser.asl.utils.json_path",
        "moto.stepfunctions.parser.asl.component.common.path.result_path",
    ):
        module: Any = importlib.import_module(name)
        if not getattr(module.parse, "_stepfold_cached", False):
            cached = functools.lru_cache(maxsize=1024)(module.parse)
            cached._stepfold_cached = True  # type: ignore[attr-defined]
            module.parse = cached


def _list_each_handlers_actions_once() -> None:
    """List a moto response handler's methods once per class, not on every request.

    moto's ``BaseResponse.call_action`` asks ``inspect.getmembers`` for every method of the handler's class, for
    each request, to see whether the action is one: 4% of the local stack's time. The list is kept per class (moto
    defines its handlers' methods once, at import; the local stack replaces methods, never adds one).
    """
    import functools  # noqa: PLC0415

    responses: Any = importlib.import_module("moto.core.responses")
    if getattr(responses.method_names_from_class, "_stepfold_cached", False):
        return
    cached = functools.lru_cache(maxsize=None)(responses.method_names_from_class)
    cached._stepfold_cached = True  # type: ignore[attr-defined]
    responses.method_names_from_class = cached


def _one_lambda_client_per_region() -> None:
    """Invoke a Task's Lambda function through one boto3 client per region, not a new client per invoke.

    moto's engine builds a Lambda client (same fake keys, same config, no retries) for every Task it runs: its
    event hooks copied, its endpoint resolved, each time. The client is kept per (region, whether moto intercepts
    boto3) and shared by the engine's threads, as boto3 clients may be; the invoke, its payload and its errors are
    the same.
    """
    from moto.core.models import botocore_stubber  # noqa: PLC0415

    lambda_eval: Any = importlib.import_module(
        "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils"
    )
    if getattr(lambda_eval.boto_client_for, "_stepfold_cached", False):
        return
    build = lambda_eval.boto_client_for
    clients: dict[tuple[str, str, bool], Any] = {}
    lock = threading.Lock()

    def client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        key = (region, service, bool(botocore_stubber.enabled))
        with lock:
            if key not in clients:
                clients[key] = build(region=region, service=service, state_credentials=state_credentials)
            return clients[key]

    client_for._stepfold_cached = True  # type: ignore[attr-defined]
    lambda_eval.boto_client_for = client_for
