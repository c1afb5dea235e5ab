"""The LangGraph side of the comparison: the bench agent as a tool-calling graph on the DynamoDB checkpointer.

The graph is the one LangGraph's docs build for a ReAct agent: an ``agent`` node (the model) and a prebuilt
``ToolNode``, joined by ``tools_condition``. The model is a plain function that returns an ``AIMessage`` with
one tool call, as a fake chat model would: the same ``lookup(n)`` call stepfold's scripted model makes. The
graph is compiled with ``interrupt_after=["tools"]`` so one ``invoke`` is one agent step (one model call and
one tool), which is what one stepfold step Lambda does.

Peers live only in .venv-bench; their imports are untyped here (mypy runs from .venv, where they are absent).
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import (  # type: ignore[import-not-found, unused-ignore]
    AIMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.tools import tool  # type: ignore[import-not-found, unused-ignore]
from langgraph.graph import START, MessagesState, StateGraph  # type: ignore[import-not-found, unused-ignore]
from langgraph.prebuilt import ToolNode, tools_condition  # type: ignore[import-not-found, unused-ignore]
from langgraph_checkpoint_dynamodb import (  # type: ignore[import-not-found, unused-ignore]
    DynamoDBConfig,
    DynamoDBSaver,
    DynamoDBTableConfig,
)

from benchmarks._common import BENCH_TASK, lookup_result


@tool  # type: ignore[untyped-decorator, unused-ignore]
def lookup(n: int) -> dict[str, Any]:
    """Look up record n."""
    return lookup_result(n)


def _call(n: int) -> dict[str, Any]:
    return {"name": "lookup", "args": {"n": n}, "id": f"call_{n:06d}"}


def fake_model(state: Any) -> dict[str, Any]:
    """What a fake chat model bound to the tools answers: look up the next record."""
    done = sum(isinstance(m, ToolMessage) for m in state["messages"])
    return {"messages": [AIMessage(content="", tool_calls=[_call(done)])]}


def saver(table: str) -> Any:
    """The checkpointer on whatever DynamoDB boto3 reaches (moto here); ``deploy=True`` creates its table."""
    config = DynamoDBConfig(table_config=DynamoDBTableConfig(table_name=table), region_name="us-east-1")
    return DynamoDBSaver(config, deploy=True)


def clients(checkpointer: Any) -> list[Any]:
    """The boto3 clients the saver talks through (its client and its resource's), for byte metering."""
    return [checkpointer.client, checkpointer.dynamodb.meta.client]


def graph(checkpointer: Any) -> Any:
    builder = StateGraph(MessagesState)
    builder.add_node("agent", fake_model)
    builder.add_node("tools", ToolNode([lookup]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=checkpointer, interrupt_after=["tools"])


def config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def start(app: Any, thread_id: str) -> None:
    """The first step: the user's task, one model call, one tool call."""
    app.invoke({"messages": [HumanMessage(BENCH_TASK)]}, config(thread_id))


def step(app: Any, thread_id: str) -> None:
    """One more step: resume after the last tool result."""
    app.invoke(None, config(thread_id))


def conversation(steps: int) -> list[Any]:
    """The messages of a thread after ``steps`` steps, as the graph itself would have produced them."""
    messages: list[Any] = [HumanMessage(BENCH_TASK)]
    for n in range(steps):
        call = _call(n)
        messages.append(AIMessage(content="", tool_calls=[call]))
        messages.append(ToolMessage(content=json.dumps(lookup_result(n)), name="lookup", tool_call_id=call["id"]))
    return messages


def seed(app: Any, thread_id: str, steps: int) -> None:
    """Write a thread of ``steps`` steps through the public API: one checkpoint, as if the tools node wrote it."""
    app.update_state(config(thread_id), {"messages": conversation(steps)}, as_node="tools")


def message_count(app: Any, thread_id: str) -> int:
    return len(app.get_state(config(thread_id)).values["messages"])
