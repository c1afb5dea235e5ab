"""Fixtures for the kernel's unit tests: a fixed clock, deterministic ids, a StepContext builder, ``drive``.

``drive(agent, text, responses)`` plays the runtime and a person: it runs :func:`core.kernel.agent.step` in a loop,
extends the thread with each outcome's events, and answers each human request with the next
:class:`~core.kernel.events.HumanResponse` field dict (``{"decision": "approve"}``, ``{"decision": "answer", "answer":
"5"}``).
It stops at ``done``/``failed``/``paused``, or at ``await_human`` once the responses run out.

``snapshot`` is syrupy's, storing each snapshot as one text file ``tests/unit/snapshots/<module>/<test>.txt``:
``assert text == snapshot``, in a test whose name says ``snapshot``. ``make snapshots`` (syrupy's
``--snapshot-update``) writes the missing and changed ones and deletes those no test uses; a plain run never writes,
fails on an unused one, and a failed comparison names the file and that command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, get_args

import pytest
import syrupy
from pydantic import BaseModel
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode
from syrupy.location import PyTestLocation

from agents import build_llm, deploybot, triage
from core.adapters.llm import LLM
from core.kernel.agent import Agent, Checkpoint, StepContext, StepOutcome, step
from core.kernel.events import EVENT_ADAPTER, Event, HumanResponse, LLMCall, ToolCall
from core.kernel.prompts import PromptLibrary
from core.kernel.thread import Thread, ThreadState, fold, start_thread

FIXED_NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE_COMMAND = "make snapshots"
"""What writes the snapshots: the Makefile target, which runs pytest with syrupy's ``--snapshot-update``."""

E = TypeVar("E", bound=BaseModel)

EVENT_CLASSES: tuple[type[BaseModel], ...] = get_args(get_args(Event)[0])
"""Every concrete event class of the union, read from the type itself (no list to forget to update)."""


def fixed_clock() -> datetime:
    return FIXED_NOW


class Ids:
    """Deterministic ids ``<prefix>_<n>``, one counter across prefixes (as a thread's ids would interleave)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"


class ThreadBuilder:
    """Hand-built threads for fold and context tests: ``add`` numbers the events and stamps the fixed clock."""

    def __init__(self, agent: str = "calculator", thread_id: str = "t_1") -> None:
        self.agent = agent
        self.thread_id = thread_id
        self.events: list[Event] = []

    def add(self, cls: type[E], **fields: Any) -> E:
        event = cls(seq=len(self.events), ts=FIXED_NOW, **fields)
        self.events.append(EVENT_ADAPTER.validate_python(event))
        return event

    def thread(self, **labels: str) -> Thread:
        return Thread(id=self.thread_id, agent=self.agent, events=tuple(self.events), labels=labels)


def respond(thread: Thread, *, clock: Callable[[], datetime] = fixed_clock, **fields: Any) -> Thread:
    """The thread with a person's answer to its open request (``by`` defaults to alice)."""
    request = fold(thread).open_request
    if request is None:
        raise AssertionError(f"thread {thread.id} has no open human request to respond to")
    fields.setdefault("by", "alice")
    response = HumanResponse(seq=thread.next_seq, ts=clock(), approval_id=request.approval_id, **fields)
    return thread.extend([response])


def llm_calls(thread: Thread) -> list[LLMCall]:
    return [e for e in thread.events if isinstance(e, LLMCall)]


@dataclass
class Run:
    """What ``drive`` did: the final thread, each step's outcome, and the model it used."""

    thread: Thread
    outcomes: list[StepOutcome]
    llm: LLM

    @property
    def state(self) -> ThreadState:
        return fold(self.thread)

    @property
    def routes(self) -> list[str]:
        return [o.route for o in self.outcomes]

    def tools(self, *, prefetch: bool = False) -> list[str]:
        """Tool names in call order: the model's calls, plus code's prefetches when asked."""
        return [e.tool for e in self.thread.events if isinstance(e, ToolCall) and (prefetch or not e.prefetch)]

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.thread.events if isinstance(e, kind)]


@dataclass
class Driver:
    """Runs an agent to a stop with its scripted model (or ``llm``), answering requests like a person."""

    ctx: StepContext
    max_steps: int = 60
    thread_id: str = "t_1"

    def __call__(
        self,
        agent: Agent,
        text: str | None = None,
        responses: Sequence[Mapping[str, Any]] = (),
        *,
        llm: LLM | None = None,
        thread: Thread | None = None,
    ) -> Run:
        model = llm if llm is not None else build_llm(agent.model)
        if thread is None:
            if text is None:
                raise ValueError("drive needs a text or a thread")
            thread = start_thread(self.thread_id, agent.name, text, now=self.ctx.clock())
        pending = [dict(r) for r in responses]
        outcomes: list[StepOutcome] = []
        for _ in range(self.max_steps):
            outcome = step(thread, agent, model, self.ctx)
            outcomes.append(outcome)
            thread = thread.extend(outcome.events)
            if outcome.route == "await_human":
                if not pending:
                    break
                thread = respond(thread, clock=self.ctx.clock, **pending.pop(0))
            elif outcome.route in ("done", "failed", "paused"):
                break
        else:
            raise AssertionError(f"{agent.name} did not stop within {self.max_steps} steps")
        if pending:
            raise AssertionError(f"{agent.name} stopped at {outcomes[-1].route!r} with {len(pending)} responses unused")
        return Run(thread, outcomes, model)


MakeCtx = Callable[..., StepContext]
"""``make_ctx(prompts=..., checkpoint=..., model=...)``: a StepContext on the fixed clock and deterministic ids."""


@pytest.fixture
def clock() -> Callable[[], datetime]:
    return fixed_clock


@pytest.fixture
def ids() -> Ids:
    return Ids()


@pytest.fixture
def make_ctx(clock: Callable[[], datetime], ids: Ids) -> MakeCtx:
    """Build a StepContext with the fixed clock and deterministic ids; keyword overrides win."""

    def build(
        *,
        prompts: PromptLibrary | None = None,
        checkpoint: Checkpoint | None = None,
        model: str | None = None,
    ) -> StepContext:
        return StepContext(prompts=prompts or PromptLibrary(), clock=clock, ids=ids, checkpoint=checkpoint, model=model)

    return build


@pytest.fixture
def drive(make_ctx: MakeCtx) -> Driver:
    return Driver(make_ctx())


@pytest.fixture(autouse=True)
def _reset_example_services() -> Iterator[None]:
    """The example agents act on module-level fakes; every test starts and ends with them empty."""
    deploybot.SERVICE.reset()
    triage.TRACKER.reset()
    yield
    deploybot.SERVICE.reset()
    triage.TRACKER.reset()


class TextSnapshot(SingleFileSnapshotExtension):
    """One UTF-8 text file per snapshot, ``tests/unit/snapshots/<test module>/<test name>[<parameters>].txt``,
    compared exactly (``\n`` line ends), so a snapshot reads, and diffs in review, as the text itself."""

    _write_mode = WriteMode.TEXT
    file_extension = "txt"

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        return str(SNAPSHOTS / test_location.basename)


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion, request: pytest.FixtureRequest) -> SnapshotAssertion:
    """syrupy's ``snapshot``, stored as :class:`TextSnapshot` files: ``assert text == snapshot``."""
    if "snapshot" not in request.node.name:
        raise AssertionError(
            f"{request.node.name} compares with a snapshot, so its name must contain 'snapshot': "
            f"`{UPDATE_COMMAND}` selects the tests whose snapshots it writes by that word (-k snapshot)"
        )
    return snapshot.use_extension(TextSnapshot)


@pytest.hookimpl(tryfirst=True)  # before syrupy's own (also tryfirst; the later-registered conftest goes first)
def pytest_assertrepr_compare(config: pytest.Config, op: str, left: object, right: object) -> list[str] | None:
    """syrupy's explanation of a failed snapshot, led by which file and the command that writes it."""
    found = next((side for side in (right, left) if isinstance(side, SnapshotAssertion)), None)
    if found is None or not found.num_executions:
        return None
    result = found.executions[found.num_executions - 1]  # the comparison that failed
    where = Path(result.snapshot_location).relative_to(SNAPSHOTS.parents[2])
    if result.recalled_data is None:
        lead = f"output == {where}, but there is no snapshot: run `{UPDATE_COMMAND}` and review the file it writes"
    else:
        lead = f"output == {where}: if the change is intended, run `{UPDATE_COMMAND}` and review the diff"
    return [lead, *(syrupy.pytest_assertrepr_compare(config, op, left, right) or [])]


@pytest.fixture
def offline_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region, with the instance-metadata lookup off, so a real boto3 client can be built
    (and its config read) on a machine with no AWS account and no network."""
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
