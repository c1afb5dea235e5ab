"""What a model call costs, in USD, from its token counts: the numbers behind the thread's cost fold and cost limit.

Prices are standard on-demand rates per 1M tokens, without prompt caching, batch discounts, long-context surcharges
or regional premiums. Each row names the provider's pricing page and the day (``as_of``) its numbers were checked
against copies of that page; re-check there before trusting them for billing. A model with no row costs 0.0: the
thread then under-reports instead of failing, so add a row when adding a model. Some rows are for models retired from
the first-party API; they stay so that old threads keep their cost.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

OPENAI_PRICING = "https://platform.openai.com/docs/pricing"
ANTHROPIC_PRICING = "https://platform.claude.com/docs/en/about-claude/pricing"
BEDROCK_PRICING = "https://aws.amazon.com/bedrock/pricing/"

_MTOK = 1_000_000


@dataclass(frozen=True)
class Price:
    """USD per 1M input and output tokens for the models of ``provider`` whose id starts with ``prefix``."""

    provider: str
    prefix: str
    input_per_mtok: float
    output_per_mtok: float
    as_of: str
    source: str


# Prefixes are chosen so the longest match is right: "gpt-4o-mini" beats "gpt-4o", and Opus 4 is keyed by its
# "-0" alias and dated snapshot, because "claude-opus-4" alone would also match Opus 4.5 and later at a third the price.
PRICES: tuple[Price, ...] = (
    # OpenAI
    Price("openai", "gpt-4o", 2.50, 10.00, "2026-11-25", OPENAI_PRICING),
    Price("openai", "gpt-4o-2024-05-13", 5.00, 15.00, "2026-11-25", OPENAI_PRICING),  # the first snapshot cost more
    Price("openai", "gpt-4o-mini", 0.15, 0.60, "2026-11-25", OPENAI_PRICING),
    Price("openai", "gpt-4.1", 2.00, 8.00, "2026-11-25", OPENAI_PRICING),
    Price("openai", "gpt-4.1-mini", 0.40, 1.60, "2026-11-25", OPENAI_PRICING),
    Price("openai", "gpt-4.1-nano", 0.10, 0.40, "2026-11-25", OPENAI_PRICING),
    # Anthropic (Sonnet 4 and 4.5: prompts over 200K input tokens are billed higher, see the source)
    Price("anthropic", "claude-sonnet-4", 3.00, 15.00, "2026-11-25", ANTHROPIC_PRICING),
    Price("anthropic", "claude-sonnet-4-5", 3.00, 15.00, "2026-11-25", ANTHROPIC_PRICING),
    Price("anthropic", "claude-3-5-haiku", 0.80, 4.00, "2026-11-25", ANTHROPIC_PRICING),
    Price("anthropic", "claude-haiku-4-5", 1.00, 5.00, "2026-11-25", ANTHROPIC_PRICING),
    Price("anthropic", "claude-opus-4-0", 15.00, 75.00, "2026-11-25", ANTHROPIC_PRICING),
    Price("anthropic", "claude-opus-4-2025", 15.00, 75.00, "2026-11-25", ANTHROPIC_PRICING),
    Price("anthropic", "claude-opus-4-1", 15.00, 75.00, "2026-11-25", ANTHROPIC_PRICING),
    Price("anthropic", "claude-opus-4-5", 5.00, 25.00, "2026-11-25", ANTHROPIC_PRICING),
    # Bedrock: Anthropic models at the same on-demand rates, plus Amazon Nova. Cross-region inference profile ids
    # ("us.", "eu.", "global."...) match after their first segment is dropped, see price_for.
    Price("bedrock", "anthropic.claude-sonnet-4", 3.00, 15.00, "2026-11-25", BEDROCK_PRICING),
    Price("bedrock", "anthropic.claude-sonnet-4-5", 3.00, 15.00, "2026-11-25", BEDROCK_PRICING),
    Price("bedrock", "anthropic.claude-3-5-haiku", 0.80, 4.00, "2026-11-25", BEDROCK_PRICING),
    Price("bedrock", "anthropic.claude-haiku-4-5", 1.00, 5.00, "2026-11-25", BEDROCK_PRICING),
    Price("bedrock", "anthropic.claude-opus-4-2025", 15.00, 75.00, "2026-11-25", BEDROCK_PRICING),
    Price("bedrock", "anthropic.claude-opus-4-1", 15.00, 75.00, "2026-11-25", BEDROCK_PRICING),
    Price("bedrock", "anthropic.claude-opus-4-5", 5.00, 25.00, "2026-11-25", BEDROCK_PRICING),
    Price("bedrock", "amazon.nova-lite", 0.06, 0.24, "2026-11-25", BEDROCK_PRICING),
    Price("bedrock", "amazon.nova-pro", 0.80, 3.20, "2026-11-25", BEDROCK_PRICING),
    # Scripted models cost nothing; this nominal price exists so demo and test threads show a non-zero cost fold
    # and can exercise the cost limit. It is not a real price.
    Price("scripted", "", 0.50, 1.50, "2026-11-25", "nominal (stepfold demo price, not a provider price)"),
)


def price_for(model: str) -> Price | None:
    """The row for a model string such as ``openai:gpt-4o-mini-2024-07-18``: the longest prefix of its provider.

    Bedrock inference-profile ids (``us.anthropic.claude-...``) fall back to the id without their geography.
    """
    provider, sep, name = model.partition(":")
    if not sep:
        return None
    rows = [row for row in PRICES if row.provider == provider]
    candidates = [name]
    if provider == "bedrock" and name.count(".") >= 2:
        candidates.append(name.split(".", 1)[1])
    for candidate in candidates:
        matches = [row for row in rows if candidate.startswith(row.prefix)]
        if matches:
            return max(matches, key=lambda row: len(row.prefix))
    return None


_log = logging.getLogger("stepfold.pricing")
_unpriced: set[str] = set()
_unpriced_lock = threading.Lock()


def warn_unpriced(model: str) -> None:
    """Say once per process that ``model`` has no price, so a $0.00 cost is never mistaken for a free model."""
    with _unpriced_lock:
        if model in _unpriced:
            return
        _unpriced.add(model)
    _log.warning(
        "no price for model %s: its calls are recorded as costing $0 and cost limits cannot hold; "
        "add a row to core/kernel/pricing.py",
        model,
        extra={"model": model},
    )


def cost_usd(model: str, input_tokens: int, output_tokens: int) -> float:
    """USD for one call; 0.0 for a model with no price row (see the module docstring), warned about once."""
    price = price_for(model)
    if price is None:
        warn_unpriced(model)
        return 0.0
    return (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / _MTOK
