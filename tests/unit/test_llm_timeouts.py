"""A model call, with every attempt made inside one step, must end before the step function's Lambda times out.

A Lambda killed mid-call reports ``Sandbox.Timedout`` instead of the retryable error the state machine retries on,
and leaves no error event in the thread. So the provider timeouts are checked against template.yaml, read the way
the local stack reads it, with the clients the providers really build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.adapters.llm import ProviderConfig, make_llm
from core.adapters.llm.anthropic import AnthropicMessages
from core.adapters.llm.bedrock import BedrockConverse
from core.adapters.llm.openai import OpenAIChat
from infra.local.template import load_template

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"

STEP_HANDLER = "functions.step.handler"

STEP_MARGIN_S = 15
"""Left of the Lambda timeout for the rest of the step: loading and saving the thread, and running one tool."""

RETRY_AFTER_CAP_S = 5
"""botocore's standard mode waits at most its backoff plus this for an ``x-amz-retry-after`` header."""

MAX_BACKOFF_S = 20
"""botocore's standard-mode cap on one backoff."""


def step_lambda_timeout_s() -> int:
    """The Timeout of the function that runs ``functions.step.handler``: its own, else the Globals one."""
    template = load_template(TEMPLATE)
    steps = [
        props
        for resource in template.resources.values()
        if resource.get("Type") == "AWS::Serverless::Function"
        and (props := resource.get("Properties", {})).get("Handler") == STEP_HANDLER
    ]
    assert len(steps) == 1, f"expected one function with Handler {STEP_HANDLER} in {TEMPLATE}"
    timeout = steps[0].get("Timeout", template.globals.get("Timeout", 3))  # 3 s: Lambda's own default
    assert isinstance(timeout, int), f"the step function's Timeout must be a literal number of seconds: {timeout!r}"
    return timeout


@pytest.mark.parametrize(
    ("model", "cls"), [("openai:gpt-4o-mini", OpenAIChat), ("anthropic:claude-sonnet-4-5", AnthropicMessages)]
)
def test_an_http_provider_call_fits_in_the_step_lambda(model: str, cls: type[Any]) -> None:
    llm = make_llm(model, ProviderConfig())  # the defaults, as functions/_wiring.py builds it
    assert isinstance(llm, cls)
    timeout = llm._poster.client.timeout  # the client the provider really built
    try:
        # httpx applies each timeout separately; one step makes one attempt (Step Functions does the retrying).
        worst_s = timeout.pool + timeout.connect + timeout.write + timeout.read
    finally:
        llm.close()

    assert all(t is not None for t in (timeout.pool, timeout.connect, timeout.write, timeout.read))
    assert worst_s + STEP_MARGIN_S <= step_lambda_timeout_s(), (
        f"{model}: a call can take {worst_s:g}s; with {STEP_MARGIN_S}s for the rest of the step that exceeds the "
        f"step function's {step_lambda_timeout_s()}s Lambda timeout: lower ProviderConfig.timeout_s or raise "
        "the Timeout in template.yaml"
    )


@pytest.mark.usefixtures("offline_aws_credentials")
def test_a_bedrock_call_with_its_retries_fits_in_the_step_lambda() -> None:
    llm = make_llm("bedrock:us.anthropic.claude-sonnet-4-20250514-v1:0", ProviderConfig())
    assert isinstance(llm, BedrockConverse)
    config = llm.client.meta.config  # the client the provider really built
    retries = config.retries or {}
    attempts = retries.get("total_max_attempts", 0)
    assert retries.get("mode") == "standard"
    assert 1 <= attempts <= 3, f"bounded retries expected, got {retries}"
    backoff_s = sum(min(2 ** (n - 1), MAX_BACKOFF_S) + RETRY_AFTER_CAP_S for n in range(1, attempts))

    worst_s = attempts * (config.connect_timeout + config.read_timeout) + backoff_s

    assert worst_s + STEP_MARGIN_S <= step_lambda_timeout_s(), (
        f"Bedrock: {attempts} attempts of {config.connect_timeout}+{config.read_timeout}s plus {backoff_s}s of "
        f"backoff can take {worst_s}s; with {STEP_MARGIN_S}s for the rest of the step that exceeds the step "
        f"function's {step_lambda_timeout_s()}s Lambda timeout: lower core/adapters/llm/bedrock.py's READ_TIMEOUT_S or "
        "MAX_ATTEMPTS, or raise the Timeout in template.yaml"
    )


def test_the_template_is_read_for_the_step_function() -> None:
    assert step_lambda_timeout_s() == 120
