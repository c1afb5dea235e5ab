"""The per-agent daily cost ledger on DynamoDB (moto), and its use by the running stack."""

from __future__ import annotations

import pytest

from core.adapters.store.spend_dynamodb import DynamoSpendLedger
from core.kernel.budget import day_of
from core.kernel.thread import fold
from infra.local.stack import LocalStack


def test_the_ledger_adds_atomically_per_agent_and_day(stack: LocalStack) -> None:
    ledger = DynamoSpendLedger("stepfold-threads", stack.clients["dynamodb"])
    assert ledger.spent("calculator", "2026-11-25") == 0.0
    assert ledger.add("calculator", "2026-11-25", 0.25) == pytest.approx(0.25)
    assert ledger.add("calculator", "2026-11-25", 0.5) == pytest.approx(0.75)
    assert ledger.add("calculator", "2026-11-26", 0.1) == pytest.approx(0.1)
    assert ledger.spent("deploybot", "2026-11-25") == 0.0
    item = stack.clients["dynamodb"].get_item(
        TableName="stepfold-threads", Key={"PK": {"S": "SPEND#calculator"}, "SK": {"S": "DAY#2026-11-25"}}
    )["Item"]
    assert int(item["expires_at"]["N"]) > 0


def test_the_stack_books_every_threads_cost_to_its_agents_day(stack: LocalStack) -> None:
    first = stack.launch("calculator", "add 1 and 2")
    second = stack.launch("calculator", "multiply 3 and 4")
    costs = [fold(stack.wait(t.id)).cost_usd for t in (first, second)]
    stack.wait_idle()
    spend = stack.rt.spend
    assert spend is not None
    assert spend.spent("calculator", day_of(stack.rt.now())) == pytest.approx(sum(costs))
