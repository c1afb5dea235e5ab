"""One isolated ``pip install --target`` directory per contender: its footprint, and where its cold start runs.

Each contender gets its own directory with its pinned requirements and their dependencies, resolved alone, so
peers whose pins clash (the durable SDK's boto3 floor vs aioboto3's botocore cap) are each measured with what
they really pull in. A process that measures a contender starts with ``python -S`` (no site-packages at all)
and adds only that directory, so nothing else on the machine leaks into an import.

For each contender: ``imports`` is what one agent step needs (timed by ``cold_start.py``), ``smoke`` runs one
agent step with a fake model through the peer's public API (run once, untimed, to prove the imports suffice).
Installs are cached under ``.venv-bench/targets/`` by a hash of their requirements.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks._common import (
    BOTO3,
    DURABLE,
    LANGGRAPH,
    OPENAI_AGENTS,
    OURS,
    PYDANTIC_AI,
    ROOT,
    STRANDS,
)

TARGETS_DIR = ROOT / ".venv-bench" / "targets"
BENCH_REQUIREMENTS = ROOT / "benchmarks" / "requirements-bench.txt"
LAMBDA_REQUIREMENTS = ROOT / "requirements-lambda.txt"

BOTO3_PIN = "boto3==1.44.8"
"""boto3 for stepfold and the floor: the version .venv resolves (the Lambda runtime brings its own)."""
DURABLE_PINS = ("aws-durable-execution-sdk-python==3.0.0",)
DURABLE_SMOKE_PINS = ("aws-durable-execution-sdk-python-testing==1.4.0",)
"""Not in requirements-bench.txt: the SDK's boto3>=1.43.114 cannot share .venv-bench with aioboto3's botocore cap."""

LAMBDA_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")
"""Top-level packages the Lambda Python runtime already has (boto3 and its dependencies): not shipped."""


def pins(*names: str) -> tuple[str, ...]:
    """The pinned lines of requirements-bench.txt for ``names``."""
    found: dict[str, str] = {}
    for line in BENCH_REQUIREMENTS.read_text().splitlines():
        spec = line.split("#", 1)[0].strip()
        if "==" in spec:
            found[spec.split("==", 1)[0].strip().lower()] = spec
    missing = [n for n in names if n.lower() not in found]
    if missing:
        raise KeyError(f"requirements-bench.txt pins none of {missing}")
    return tuple(found[n.lower()] for n in names)


def lambda_pins() -> tuple[str, ...]:
    lines = (line.split("#", 1)[0].strip() for line in LAMBDA_REQUIREMENTS.read_text().splitlines())
    return tuple(line for line in lines if line)


@dataclass(frozen=True)
class Target:
    contender: str
    requirements: tuple[str, ...]
    imports: str
    smoke: str = ""
    smoke_requirements: tuple[str, ...] = ()
    source: bool = False
    """stepfold: the repo's own packages are on the path too (core/, functions/, prompts/)."""
    notes: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        digest = hashlib.sha256(json.dumps([self.requirements, sys.version_info[:2]]).encode()).hexdigest()[:10]
        return f"{self.contender.split()[0].lower()}-{digest}"

    @property
    def directory(self) -> Path:
        return TARGETS_DIR / self.key

    @property
    def smoke_directory(self) -> Path:
        return TARGETS_DIR / f"{self.key}-smoke"


_OURS_IMPORTS = """
import functions.step
import boto3
import core.adapters.store.dynamodb, core.adapters.store.approvals_dynamodb
"""
_OURS_SMOKE = """
from benchmarks._common import BENCH_AGENT, BENCH_TASK, T0, bench_context, bench_llm
from core.kernel.runner import advance
from core.adapters.store.memory import MemoryThreadStore
from core.kernel.thread import start_thread
store = MemoryThreadStore()
thread = store.create(start_thread("t", "bench", BENCH_TASK, now=T0))
llm = bench_llm()
result = advance(store, "t", thread.version, agents={"bench": BENCH_AGENT}, llm_for=lambda _: llm, ctx=bench_context())
assert result.route == "continue" and result.tool_runs == 1, result
"""

_LANGGRAPH_IMPORTS = """
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph_checkpoint_dynamodb import DynamoDBConfig, DynamoDBSaver, DynamoDBTableConfig
"""
_LANGGRAPH_SMOKE = """
from langgraph.checkpoint.memory import InMemorySaver
@tool
def lookup(n: int) -> dict:
    "Look up record n."
    return {"n": n, "value": f"record {n}"}
def agent(state):
    if any(isinstance(m, ToolMessage) for m in state["messages"]):
        return {"messages": [AIMessage("done")]}
    return {"messages": [AIMessage("", tool_calls=[{"name": "lookup", "args": {"n": 0}, "id": "c0"}])]}
g = StateGraph(MessagesState)
g.add_node("agent", agent); g.add_node("tools", ToolNode([lookup]))
g.add_edge(START, "agent"); g.add_conditional_edges("agent", tools_condition); g.add_edge("tools", "agent")
app = g.compile(checkpointer=InMemorySaver())
out = app.invoke({"messages": [HumanMessage("look everything up")]}, {"configurable": {"thread_id": "t"}})
assert out["messages"][-1].content == "done", out
"""

_PYDANTIC_AI_IMPORTS = """
from pydantic_ai import Agent
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
"""
_PYDANTIC_AI_SMOKE = """
def model(messages, info):
    if any(p.part_kind == "tool-return" for m in messages for p in m.parts):
        return ModelResponse(parts=[TextPart("done")])
    return ModelResponse(parts=[ToolCallPart("lookup", {"n": 0})])
agent = Agent(FunctionModel(model))
@agent.tool_plain
def lookup(n: int) -> dict:
    "Look up record n."
    return {"n": n, "value": f"record {n}"}
assert agent.run_sync("look everything up").output == "done"
"""

_OPENAI_AGENTS_IMPORTS = """
from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.items import ModelResponse
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText
"""
_OPENAI_AGENTS_SMOKE = """
set_tracing_disabled(True)
class Fake(Model):
    async def get_response(self, system_instructions, input, *args, **kwargs):
        if any(isinstance(i, dict) and i.get("type") == "function_call_output" for i in input):
            text = ResponseOutputText(type="output_text", text="done", annotations=[])
            out = [ResponseOutputMessage(id="m1", type="message", role="assistant", status="completed", content=[text])]
        else:
            out = [ResponseFunctionToolCall(type="function_call", id="f1", call_id="c0", name="lookup",
                                            arguments='{"n": 0}')]
        return ModelResponse(output=out, usage=Usage(), response_id=None)
    def stream_response(self, *args, **kwargs):
        raise NotImplementedError
@function_tool
def lookup(n: int) -> dict:
    "Look up record n."
    return {"n": n, "value": f"record {n}"}
agent = Agent(name="bench", instructions="look things up", tools=[lookup], model=Fake())
assert Runner.run_sync(agent, "look everything up").final_output == "done"
"""

_STRANDS_IMPORTS = """
from strands import Agent, tool
from strands.models import Model
"""
_STRANDS_SMOKE = """
class Fake(Model):
    def update_config(self, **config): pass
    def get_config(self): return {}
    async def structured_output(self, *args, **kwargs):
        raise NotImplementedError
        yield
    async def stream(self, messages, tool_specs=None, system_prompt=None, **kwargs):
        answered = any("toolResult" in block for m in messages for block in m["content"])
        yield {"messageStart": {"role": "assistant"}}
        if answered:
            yield {"contentBlockDelta": {"delta": {"text": "done"}}}
            yield {"contentBlockStop": {}}
            yield {"messageStop": {"stopReason": "end_turn"}}
        else:
            yield {"contentBlockStart": {"start": {"toolUse": {"toolUseId": "c0", "name": "lookup"}}}}
            yield {"contentBlockDelta": {"delta": {"toolUse": {"input": '{"n": 0}'}}}}
            yield {"contentBlockStop": {}}
            yield {"messageStop": {"stopReason": "tool_use"}}
        yield {"metadata": {"usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                            "metrics": {"latencyMs": 0}}}
@tool
def lookup(n: int) -> dict:
    "Look up record n."
    return {"n": n, "value": f"record {n}"}
agent = Agent(model=Fake(), tools=[lookup], callback_handler=None)
assert "done" in str(agent("look everything up"))
"""

_DURABLE_IMPORTS = """
from aws_durable_execution_sdk_python.context import DurableContext, durable_step
from aws_durable_execution_sdk_python.execution import durable_execution
"""
_DURABLE_SMOKE = """
from aws_durable_execution_sdk_python.execution import InvocationStatus
from aws_durable_execution_sdk_python_testing.runner import DurableFunctionTestRunner
@durable_step
def call_model(step_context, n):
    return {"tool": "lookup", "args": {"n": n}}
@durable_step
def run_tool(step_context, call):
    return {"n": call["args"]["n"], "value": "record"}
@durable_execution
def handler(event, context: DurableContext):
    call = context.step(call_model(0))
    return context.step(run_tool(call))
with DurableFunctionTestRunner(handler=handler) as runner:
    result = runner.run(input="look everything up", timeout=30)
assert result.status is InvocationStatus.SUCCEEDED, result
"""


def targets() -> list[Target]:
    """Every contender's isolated install (stepfold first, then the floor, then the peers)."""
    return [
        Target(OURS, (*lambda_pins(), BOTO3_PIN), _OURS_IMPORTS, _OURS_SMOKE, source=True),
        Target(
            BOTO3, (BOTO3_PIN,), "import boto3\n", "boto3.session.Session().client('dynamodb', region_name='us-east-1')"
        ),
        Target(
            LANGGRAPH,
            pins(
                "langgraph",
                "langgraph-checkpoint",
                "langgraph-prebuilt",
                "langchain-core",
                "langgraph-checkpoint-amazon-dynamodb",
                "aioboto3",
            ),
            _LANGGRAPH_IMPORTS,
            _LANGGRAPH_SMOKE,
        ),
        Target(PYDANTIC_AI, pins("pydantic-ai-slim"), _PYDANTIC_AI_IMPORTS, _PYDANTIC_AI_SMOKE),
        Target(OPENAI_AGENTS, pins("openai-agents"), _OPENAI_AGENTS_IMPORTS, _OPENAI_AGENTS_SMOKE),
        Target(STRANDS, pins("strands-agents"), _STRANDS_IMPORTS, _STRANDS_SMOKE),
        Target(DURABLE, DURABLE_PINS, _DURABLE_IMPORTS, _DURABLE_SMOKE, smoke_requirements=DURABLE_SMOKE_PINS),
    ]


def _pip_install(requirements: tuple[str, ...], directory: Path) -> None:
    if (directory / ".complete").exists():
        return
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"),
            *("--no-warn-conflicts", "--target", str(directory), *requirements),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install --target {directory} failed:\n{done.stderr[-3000:]}")
    shutil.rmtree(directory / "bin", ignore_errors=True)
    (directory / ".complete").write_text("\n".join(requirements) + "\n")


def install(target: Target) -> Path:
    """The contender's directory, installed (cached) with its requirements and their dependencies."""
    _pip_install(target.requirements, target.directory)
    if target.smoke_requirements:
        _pip_install(target.smoke_requirements, target.smoke_directory)
    return target.directory


def prologue(target: Target, *, smoke: bool = False) -> str:
    """The start of a ``python -S`` program that sees only the contender's directory (and, for stepfold, the repo)."""
    paths = [str(target.directory)]
    if smoke and target.smoke_requirements:
        paths.append(str(target.smoke_directory))
    lines = ["import sys, site, os", f"os.chdir({str(ROOT)!r})"]
    if not target.source:  # `-c` puts the working directory first: the repo's agents/ would shadow a peer's
        lines.append("sys.path[:] = [p for p in sys.path if p not in ('', '.')]")
    lines += [f"site.addsitedir({p!r})" for p in paths]
    if target.source:
        lines.append(f"sys.path.append({str(ROOT)!r})")
    return "\n".join(lines) + "\n"


def run_python(
    code: str, *, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-S", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def smoke(target: Target, env: dict[str, str]) -> str | None:
    """Run one agent step with a fake model in the contender's directory: None if it worked, else the error."""
    if not target.smoke:
        return None
    done = run_python(prologue(target, smoke=True) + target.imports + target.smoke, env=env, timeout=300)
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit {done.returncode}"


def footprint(directory: Path, *, exclude: tuple[str, ...] = ()) -> tuple[int, int]:
    """(bytes, files) under ``directory``, without bytecode caches and without the top-level names ``exclude``."""
    skip = {name.lower() for name in exclude}
    total = files = 0
    for path in directory.rglob("*"):
        rel = path.relative_to(directory)
        top = rel.parts[0].lower()
        name = top.split("-", 1)[0].removesuffix(".py") if top.endswith(".dist-info") else top.removesuffix(".py")
        if name in skip or name.replace("python_", "") in skip:
            continue
        if "__pycache__" in rel.parts or path.suffix == ".pyc" or rel.parts[0] == ".complete" or not path.is_file():
            continue
        total += path.stat().st_size
        files += 1
    return total, files
