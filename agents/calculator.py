"""calculator: four arithmetic tools, recovery from a divide-by-zero error, a question when input is ambiguous."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from agents._script import answers, ask, done, failed_after_last_result, results, since_last_input
from core.adapters.llm.scripted import Say
from core.kernel.agent import Agent, Limits
from core.kernel.model import LLMRequest
from core.kernel.tools import Tool, ToolContext


class Operands(BaseModel):
    model_config = ConfigDict(extra="forbid")

    a: float = Field(description="The first operand.")
    b: float = Field(description="The second operand.")


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def add(args: Operands, _: ToolContext) -> float | int:
    return _number(args.a + args.b)


def subtract(args: Operands, _: ToolContext) -> float | int:
    return _number(args.a - args.b)


def multiply(args: Operands, _: ToolContext) -> float | int:
    return _number(args.a * args.b)


def divide(args: Operands, _: ToolContext) -> float | int:
    return _number(args.a / args.b)


TOOLS = (
    Tool("add", "a + b", Operands, add, idempotent=True),
    Tool("subtract", "a - b", Operands, subtract, idempotent=True),
    Tool("multiply", "a * b", Operands, multiply, idempotent=True),
    Tool("divide", "a / b", Operands, divide, idempotent=True),
)

AGENT = Agent(
    name="calculator",
    description="Arithmetic with add/subtract/multiply/divide; asks when a request is ambiguous.",
    prompt_id="calculator",
    prompt_version=1,
    tools=TOOLS,
    model="scripted:calculator",
    limits=Limits(max_steps=20),
)


# --- the scripted brain: parses the request the way the prompt tells a model to work -----------------

_OPS = {
    "add": "add", "plus": "add", "sum": "add",
    "subtract": "subtract", "minus": "subtract",
    "multiply": "multiply", "times": "multiply",
    "divide": "divide",
}  # fmt: skip
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")


@dataclass(frozen=True)
class _Op:
    tool: str
    a: str
    b: str


class _UnclearError(Exception):
    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.token = token


def _clauses(text: str) -> list[str]:
    text = text.lower().strip().rstrip(".?!")
    text = re.sub(r"^(please\s+|what is\s+|compute\s+|calculate\s+)", "", text)
    return [c.strip() for c in re.split(r",?\s*(?:and then|then|after that)\s+|,\s*", text) if c.strip()]


_INFIX = re.compile(r"^(-?\d+(?:\.\d+)?)\s+(plus|minus|times|divided by|over)\s+(-?\d+(?:\.\d+)?)$")
_INFIX_OPS = {"plus": "add", "minus": "subtract", "times": "multiply", "divided by": "divide", "over": "divide"}


def _parse_clause(clause: str, first: bool) -> _Op:
    infix = _INFIX.match(clause)
    if infix:
        return _Op(_INFIX_OPS[infix[2]], infix[1], infix[3])
    words = clause.split(maxsplit=1)
    op = _OPS.get(words[0]) if words else None
    if op is None:
        raise _UnclearError(clause)
    rest = words[1] if len(words) > 1 else ""
    rest = re.sub(r"\b(?:the result|it)\b", "RESULT", rest) if not first else rest
    parts = [p.strip() for p in re.split(r"\s+(?:and|by|from|to|with)\s+", rest) if p.strip()]
    if len(parts) == 1 and not first:
        parts = ["RESULT", parts[0]]
    if len(parts) != 2:
        raise _UnclearError(clause)
    a, b = parts
    if op == "subtract" and " from " in f" {rest} ":
        a, b = b, a
    if op == "add" and " to " in f" {rest} ":
        a, b = b, a
    for token in (a, b):
        if token != "RESULT" and not _NUMBER.match(token):  # noqa: S105 - a marker word, not a secret
            raise _UnclearError(token)
    return _Op(op, a, b)


def plan(text: str) -> list[_Op]:
    """Turn "multiply 3 and 4, then divide the result by 2" into operations, or raise _UnclearError."""
    return [_parse_clause(c, i == 0) for i, c in enumerate(_clauses(text))]


def _plan_with_answers(text: str, given: list[str]) -> list[_Op]:
    """Plan, replacing each unclear word with the human's answer to the question about it."""
    for answer in given:
        try:
            return plan(text)
        except _UnclearError as unclear:
            if unclear.token not in text:
                raise
            text = text.replace(unclear.token, answer.strip(), 1)
    return plan(text)


def brain(request: LLMRequest) -> Say:
    """What a good model does with the calculator prompt, deterministically."""
    first, after = since_last_input(request.events)
    text = first.text if first else ""
    given = answers(after)
    try:
        ops = _plan_with_answers(text, given)
    except _UnclearError as unclear:
        if given:
            return done(f"I still could not work out the calculation: {unclear.token!r} is not a number.")
        return ask(f"What number do you mean by {unclear.token!r}?", context=f"The request was: {text}")
    values = [r.result for r in results(after)]
    failure = failed_after_last_result(after)
    if failure is not None:
        last = values[-1] if values else "none"
        return done(f"I could not finish: {failure.message}. The last result was {last}.")
    if len(values) >= len(ops):
        return done(f"The answer is {values[-1]}.")
    op = ops[len(values)]
    prev = values[-1] if values else None
    a = prev if op.a == "RESULT" else float(op.a)
    b = prev if op.b == "RESULT" else float(op.b)
    return Say(op.tool, {"a": a, "b": b})


BRAIN = brain
"""The scripted model for offline runs (``scripted:calculator``): agents/__init__.py registers it with AGENT."""
