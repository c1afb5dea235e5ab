"""The price table: longest-prefix matching, the nominal scripted price, and the rows' own bookkeeping."""

from __future__ import annotations

import re

import pytest

from core.kernel.pricing import PRICES, cost_usd, price_for


@pytest.mark.parametrize(
    ("model", "per_mtok"),
    [
        ("openai:gpt-4o", (2.50, 10.00)),
        ("openai:gpt-4o-2024-08-06", (2.50, 10.00)),
        ("openai:gpt-4o-2024-05-13", (5.00, 15.00)),
        ("openai:gpt-4o-mini", (0.15, 0.60)),
        ("openai:gpt-4o-mini-2024-07-18", (0.15, 0.60)),
        ("openai:gpt-4.1", (2.00, 8.00)),
        ("openai:gpt-4.1-mini-2025-04-14", (0.40, 1.60)),
        ("openai:gpt-4.1-nano", (0.10, 0.40)),
        ("anthropic:claude-sonnet-4-20250514", (3.00, 15.00)),
        ("anthropic:claude-sonnet-4-5", (3.00, 15.00)),
        ("anthropic:claude-3-5-haiku-20241022", (0.80, 4.00)),
        ("anthropic:claude-haiku-4-5-20251001", (1.00, 5.00)),
        ("anthropic:claude-opus-4-20250514", (15.00, 75.00)),
        ("anthropic:claude-opus-4-0", (15.00, 75.00)),
        ("anthropic:claude-opus-4-1-20250805", (15.00, 75.00)),
        ("anthropic:claude-opus-4-5-20251101", (5.00, 25.00)),
        ("bedrock:anthropic.claude-sonnet-4-5-20250929-v1:0", (3.00, 15.00)),
        ("bedrock:us.anthropic.claude-sonnet-4-20250514-v1:0", (3.00, 15.00)),
        ("bedrock:global.anthropic.claude-haiku-4-5-20251001-v1:0", (1.00, 5.00)),
        ("bedrock:eu.anthropic.claude-3-5-haiku-20241022-v1:0", (0.80, 4.00)),
        ("bedrock:anthropic.claude-opus-4-20250514-v1:0", (15.00, 75.00)),
        ("bedrock:anthropic.claude-opus-4-5-20251101-v1:0", (5.00, 25.00)),
        ("bedrock:amazon.nova-lite-v1:0", (0.06, 0.24)),
        ("bedrock:us.amazon.nova-pro-v1:0", (0.80, 3.20)),
        ("scripted:calculator", (0.50, 1.50)),
    ],
)
def test_longest_prefix_of_the_provider_wins(model: str, per_mtok: tuple[float, float]) -> None:
    price = price_for(model)

    assert price is not None
    assert (price.input_per_mtok, price.output_per_mtok) == per_mtok
    assert price.provider == model.partition(":")[0]


@pytest.mark.parametrize(
    "model",
    [
        "openai:o3",
        "anthropic:claude-opus-4-6",  # a later Opus must not inherit Opus 4's price
        "bedrock:anthropic.claude-opus-4-6-v1",
        "bedrock:meta.llama3-1-8b-instruct-v1:0",
        "gpt-4o",  # no provider
        "mistral:gpt-4o",  # a prefix only counts under its own provider
        "anthropic:gpt-4o",
    ],
)
def test_unknown_models_have_no_price_and_cost_nothing(model: str) -> None:
    assert price_for(model) is None
    assert cost_usd(model, 1_000_000, 1_000_000) == 0.0


def test_cost_is_tokens_times_price_per_million() -> None:
    assert cost_usd("openai:gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)
    assert cost_usd("openai:gpt-4o-mini", 0, 1_000_000) == pytest.approx(0.60)
    assert cost_usd("anthropic:claude-sonnet-4-5", 412, 57) == pytest.approx((412 * 3 + 57 * 15) / 1e6)
    assert cost_usd("openai:gpt-4o", 0, 0) == 0.0


def test_scripted_threads_show_a_nominal_non_zero_cost() -> None:
    cost = cost_usd("scripted:calculator", 1000, 200)

    assert cost == pytest.approx((1000 * 0.50 + 200 * 1.50) / 1e6)
    assert cost > 0


def test_every_row_says_when_and_where_its_price_came_from() -> None:
    for row in PRICES:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", row.as_of), row
        assert row.provider == "scripted" or row.source.startswith("https://"), row
        assert 0 < row.input_per_mtok <= row.output_per_mtok, row
        assert row.provider in {"openai", "anthropic", "bedrock", "scripted"}, row


def test_no_two_rows_share_a_provider_and_prefix() -> None:
    keys = [(row.provider, row.prefix) for row in PRICES]

    assert len(keys) == len(set(keys))
