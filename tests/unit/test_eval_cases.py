"""Every registered agent ships eval cases (evals/<agent>/*.json), they pass with the agent's scripted model and
its pinned prompt, and they check decisions a model can get wrong: a model that always stops at once fails them.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from agents import AGENTS, build_llm
from core.adapters.llm import LLM
from core.adapters.llm.scripted import Say, ScriptedLLM
from core.services.evals import load_cases, run_eval
from infra import cli_evals

EVALS = Path(__file__).resolve().parents[2] / "evals"
MIN_CASES = 1


def test_every_registered_agent_has_eval_cases() -> None:
    shipped = {p.name for p in EVALS.iterdir() if p.is_dir() and any(p.glob("*.json"))}

    missing = sorted(set(AGENTS) - shipped)
    assert not missing, (
        f"agents without eval cases in evals/<agent>/: {', '.join(missing)}; add at least {MIN_CASES} "
        "(`stepfold export THREAD --out evals/<agent>/<case>.json`, or by hand like evals/orders/*.json)"
    )
    assert not shipped - set(AGENTS), f"eval cases for agents that are not registered: {shipped - set(AGENTS)}"
    for name in AGENTS:
        cases = load_cases(EVALS / name)
        assert len(cases) >= MIN_CASES, f"{name} ships {len(cases)} eval cases, at least {MIN_CASES} are expected"
        assert {c.agent for c in cases} == {name}, f"evals/{name} holds a case of another agent"


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_stepfold_eval_passes_for_every_agent(name: str) -> None:
    out = io.StringIO()

    code = cli_evals.run(["eval", name], stdout=out)

    assert code == 0, out.getvalue()
    assert f"{name}: {name}/v{AGENTS[name].prompt_version} " in out.getvalue()


def _stops_at_once(model: str) -> LLM:
    """A model that ends every thread at once, whatever it is asked."""
    return ScriptedLLM(lambda request: Say("done_for_now", {"answer": "nothing to do"}), name=model)


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_the_cases_fail_a_model_that_does_nothing(name: str) -> None:
    """A case that any answer passes tests nothing: most of each agent's cases expect a real step."""
    cases = load_cases(EVALS / name)

    lazy = run_eval(AGENTS[name], cases, llm_for=_stops_at_once)
    good = run_eval(AGENTS[name], cases, llm_for=build_llm)

    assert good.ok, good.table()
    expecting_work = [c.name for c in cases if c.expect.tool != "done_for_now"]
    assert expecting_work, f"{name}: at least one case should expect a tool call, not the end"
    assert set(expecting_work) <= {r.case for r in lazy.failures}
