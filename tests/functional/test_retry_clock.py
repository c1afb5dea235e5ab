"""The local stack's ``time_scale`` shortens the waits of the real ASL's Retry, and nothing else of it.

The functional tests run on a stack built with :data:`infra.local.stack.TEST_TIME_SCALE`, so a step that fails
transiently is retried in milliseconds instead of seconds. What must not change: which errors are retried, how
many attempts there are, the backoff growing by the ASL's ``BackoffRate`` under its full jitter, and each wait
coming between two attempts. ``stepfold serve`` and the demo keep real timing (the default, 1).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents import AGENTS, scripted_model
from core.adapters.llm import ProviderConfig
from core.adapters.llm.scripted import ScriptedLLM
from core.kernel.agent import Agent
from core.kernel.model import LLMRequest, RetryableLLMError
from core.kernel.thread import fold
from infra.local.stack import TEST_TIME_SCALE, LocalStack


def _step_retrier(stack: LocalStack, error: str) -> dict[str, Any]:
    """The retrier of the ``Step`` state that lists ``error``, in the definition the stack's executions run."""
    sfn = stack.clients["stepfunctions"]
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=stack.state_machine_arn)["definition"])
    (retrier,) = [r for r in definition["States"]["Step"]["Retry"] if error in r["ErrorEquals"]]
    return dict(retrier)


def test_a_step_that_keeps_failing_gets_every_attempt_with_growing_backoff_and_each_wait_between(
    stack: LocalStack,
) -> None:
    assert stack.time_scale == TEST_TIME_SCALE < 1
    waits_seen_by_attempt: list[int] = []

    def down(_: LLMRequest) -> Any:
        waits_seen_by_attempt.append(len(stack.retry_waits))
        raise RetryableLLMError("scripted", "the provider is down", status=503)

    flaky = Agent(
        name="flaky",
        description="its model is down",
        prompt_id="calculator",
        prompt_version=1,
        model="scripted:flaky",
        tools=(),
    )
    brain = ScriptedLLM(down, name="flaky")
    rt = stack.rt
    rt.agents = {**AGENTS, "flaky": flaky}
    rt.use_provider_config(ProviderConfig(scripted=lambda n: brain if n == "flaky" else scripted_model(n)))

    thread = stack.launch("flaky", "anything")
    final = stack.wait(thread.id, until=("failed",))

    assert fold(final).failure_error == "ModelUnavailable"
    retrier = _step_retrier(stack, "ModelUnavailable")
    attempts, interval, backoff = retrier["MaxAttempts"], retrier["IntervalSeconds"], retrier["BackoffRate"]
    assert attempts >= 2
    assert waits_seen_by_attempt == list(range(attempts + 1)), "the first try, then one attempt after each wait"
    waits = stack.retry_waits
    # The first step runs in the thread's execution (standard mode) or in its first burst (express mode, where a
    # burst's Step carries the same Retry and its execution is named as Step Functions names one: a UUID).
    (ran_in,) = {w.execution for w in waits}
    if stack.loop_mode == "standard":
        assert ran_in == f"{thread.id}-1"
    else:
        sfn = stack.clients["stepfunctions"]
        burst_machine = json.loads(sfn.describe_state_machine(stateMachineArn=stack.state_machine_arn)["definition"])[
            "States"
        ]["Burst"]["Parameters"]["StateMachineArn"]
        (burst,) = sfn.list_executions(stateMachineArn=burst_machine)["executions"]
        assert ran_in == burst["name"]
    assert [(w.state, w.retry) for w in waits] == [("Step", n) for n in range(1, attempts + 1)]
    assert [w.ceiling for w in waits] == [interval * backoff**n for n in range(attempts)]
    assert backoff > 1
    assert retrier["JitterStrategy"] == "FULL"
    assert all(0 <= w.seconds <= w.ceiling for w in waits), waits


@pytest.mark.parametrize("scale", [-0.5, 1.5, float("nan"), "fast"])
def test_a_time_scale_outside_0_to_1_is_refused(scale: Any) -> None:
    with pytest.raises(ValueError, match=r"time_scale must be a number from 0 to 1 .* got "):
        LocalStack(time_scale=scale)


def test_a_stack_waits_in_real_time_unless_asked() -> None:
    assert LocalStack().time_scale == 1.0
