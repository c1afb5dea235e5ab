"""orders: started by an ``order.failed`` event on the EventBridge bus (or the shop's signed webhook).

It looks the order up, tells the customer what happens next, and refunds only after a human approves.
:class:`OrderDesk` stands in for the shop's order and payments API and counts calls by idempotency key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents._fake import FakeSystem
from agents._script import done, results, since_last_input
from core.adapters.llm.scripted import Say
from core.kernel.agent import Agent, Limits
from core.kernel.events import Error, HumanResponse
from core.kernel.model import LLMRequest
from core.kernel.tools import Tool, ToolContext
from core.kernel.trigger_types import EventRule, Webhook

ORDER_ID = r"ord_[A-Za-z0-9]{1,32}"


@dataclass
class OrderDesk(FakeSystem):
    """The shop's orders (a fake with the shape of an order + payments API)."""

    orders: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            "ord_1001": {"customer": "c_17", "amount": 42.5, "currency": "EUR", "reason": "payment_declined"},
            "ord_1002": {"customer": "c_23", "amount": 129.0, "currency": "EUR", "reason": "out_of_stock"},
        }
    )
    notices: list[tuple[str, str]] = field(default_factory=list)
    refunds: list[tuple[str, float]] = field(default_factory=list)
    RECORDS = ("notices", "refunds")


DESK = OrderDesk()


class OrderArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: str = Field(pattern=f"^{ORDER_ID}$")


class NoticeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: str = Field(pattern=f"^{ORDER_ID}$")
    message: str = Field(min_length=1, max_length=1000)


class RefundArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: str = Field(pattern=f"^{ORDER_ID}$")
    amount: float = Field(gt=0)


def lookup_order(args: OrderArgs, _: ToolContext) -> dict[str, Any]:
    order = DESK.orders.get(args.order_id)
    if order is None:
        raise ValueError(f"there is no order {args.order_id}")
    return {"order_id": args.order_id, **order}


def notify_customer(args: NoticeArgs, ctx: ToolContext) -> dict[str, Any]:
    DESK.record(ctx.idempotency_key)
    DESK.notices.append((args.order_id, args.message))
    return {"order_id": args.order_id, "notified": True}


def refund_order(args: RefundArgs, ctx: ToolContext) -> dict[str, Any]:
    DESK.record(ctx.idempotency_key)
    DESK.refunds.append((args.order_id, args.amount))
    return {"order_id": args.order_id, "refunded": args.amount}


TOOLS = (
    Tool(
        "lookup_order",
        "Look an order up: customer, amount and why it failed.",
        OrderArgs,
        lookup_order,
        idempotent=True,
    ),
    Tool("notify_customer", "Email the customer about their order.", NoticeArgs, notify_customer),
    Tool("refund_order", "Refund an order in full.", RefundArgs, refund_order, policy="needs_approval"),
)


def event_input(event: dict[str, Any]) -> str:
    """The first user input for an EventBridge ``order.failed`` event: the order, the reason, when (Factor 3)."""
    detail = event.get("detail") or {}
    return _failed_order(detail, str(event.get("source", "")), str(event.get("time", "")))


def webhook_input(envelope: dict[str, Any]) -> str:
    """The same for the shop's signed ``order.failed`` webhook envelope."""
    data = envelope.get("data") or {}
    return _failed_order(data if isinstance(data, dict) else {}, "the shop webhook", "")


def _failed_order(detail: dict[str, Any], source: str, when: str) -> str:
    order = str(detail.get("order_id", "unknown"))[:40]
    reason = str(detail.get("reason", "unknown"))[:100]
    at = f" at {when}" if when else ""
    return f"Order {order} failed{at} (reported by {source or 'unknown'}): {reason}."


AGENT = Agent(
    name="orders",
    description="Handles failed orders from the event bus: looks them up, tells the customer, refunds with approval.",
    prompt_id="orders",
    prompt_version=1,
    tools=TOOLS,
    model="scripted:orders",
    limits=Limits(max_steps=8),
    triggers=(
        EventRule(
            {
                "source": [{"prefix": "shop."}],
                "detail-type": ["order.failed"],
                "detail": {"order_id": [{"exists": True}]},
            },
            event_input,
            name="orders-order-failed",
        ),
        Webhook("shop", ["order.failed"], webhook_input),
    ),
)


# --- the scripted brain ---------------------------------------------------------------------------


def brain(request: LLMRequest) -> Say:
    """What a good model does with the orders prompt, deterministically."""
    first, after = since_last_input(request.events)
    text = first.text if first else ""
    found = re.search(ORDER_ID, text)
    if found is None:
        return done("The event names no order id; nothing to do.")
    order_id = found[0]
    by_tool = {r.tool: r.result for r in results(after)}
    if "lookup_order" not in by_tool:
        if any(isinstance(e, Error) and e.tool == "lookup_order" for e in after):
            return done(f"Could not find order {order_id}; nothing was changed.")
        return Say("lookup_order", {"order_id": order_id})
    order = by_tool["lookup_order"] if isinstance(by_tool["lookup_order"], dict) else {}
    reason = order.get("reason")
    if reason not in ("payment_declined", "out_of_stock"):
        return done(f"Order {order_id} failed for a reason I cannot fix ({reason}); a person should look at it.")
    if reason == "out_of_stock" and "refund_order" not in by_tool:
        if any(isinstance(e, HumanResponse) and e.decision in ("reject", "expired") for e in after):
            return done(f"Order {order_id}: the refund was not approved; nothing was refunded.")
        return Say("refund_order", {"order_id": order_id, "amount": order.get("amount", 0)})
    if "notify_customer" not in by_tool:
        message = (
            "Your payment was declined. Please update your card and we will ship right away."
            if reason == "payment_declined"
            else "The item is out of stock, so we refunded your order in full."
        )
        return Say("notify_customer", {"order_id": order_id, "message": message})
    if reason == "out_of_stock":
        return done(f"Order {order_id}: out of stock; refunded {order.get('amount')} and told the customer.")
    return done(f"Order {order_id}: payment declined; asked the customer to update their card.")


BRAIN = brain
"""The scripted model for offline runs (``scripted:orders``): agents/__init__.py registers it with AGENT."""
