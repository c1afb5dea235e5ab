"""The layering checker (``python -m tests.layering``) on the real tree and on planted offences."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.layering import ROOT, Offence, check, main

BAD_CORE = """\
import os
import os as operating_system
import functions.api
from infra.local import demo
import aws_lambda_powertools
from aws_lambda_powertools.logging import Logger
from os import environ
from os import getenv as read
import importlib

TOKEN = os.environ["TOKEN"]
REGION = operating_system.getenv("AWS_REGION")
loader = importlib.import_module("functions.step")
"""

CLEAN_CORE = """\
import os.path
import functionsx
from core.kernel import thread
from . import sibling
from .functions import helpers

environ = {"not": "the process environment"}
HERE = os.path.join("a", "b")
value = environ["not"]
"""


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_the_real_tree_is_layered() -> None:
    offences, count = check(ROOT)

    assert offences == []
    assert count >= 20


def test_make_layers_runs_it_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.layering"], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("layering ok: ")
    assert int(done.stdout.split(": ")[1].split()[0]) == check(ROOT)[1]


def test_every_kind_of_offence_in_core_is_reported_with_its_line(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"core/__init__.py": "", "core/bad.py": BAD_CORE})

    offences, count = check(root)

    assert count == 2
    assert [str(o) for o in offences] == [
        "core/bad.py:3: core must not import functions (imports functions.api)",
        "core/bad.py:4: core must not import infra (imports infra.local)",
        "core/bad.py:5: core must not import aws_lambda_powertools (imports aws_lambda_powertools)",
        "core/bad.py:6: core must not import aws_lambda_powertools (imports aws_lambda_powertools.logging)",
        "core/bad.py:7: core must not read the environment (from os import environ)",
        "core/bad.py:8: core must not read the environment (from os import getenv)",
        "core/bad.py:11: core must not read the environment (os.environ)",
        "core/bad.py:12: core must not read the environment (operating_system.getenv)",
        "core/bad.py:13: core must not import functions (imports functions.step)",
    ]


def test_look_alikes_are_not_offences(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"core/__init__.py": "", "core/fine.py": CLEAN_CORE, "core/functions/__init__.py": ""})

    assert check(root) == ([], 3)


def test_relative_imports_that_climb_out_of_core_are_caught(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"core/adapters/llm/x.py": "from .... import functions\nfrom ....infra import local\n"})

    assert check(root)[0] == [
        Offence("core/adapters/llm/x.py", 1, "core must not import functions (imports functions)"),
        Offence("core/adapters/llm/x.py", 2, "core must not import infra (imports infra)"),
    ]


def test_functions_may_use_core_and_the_environment_but_not_infra(tmp_path: Path) -> None:
    handler = (
        "import os\nfrom core.kernel.agent import step\nSTAGE = os.environ['STAGE']\nfrom infra.local import demo\n"
    )
    root = _tree(tmp_path, {"functions/step.py": handler, "infra/local/demo.py": "import functions\n"})

    offences, count = check(root)

    assert count == 1
    assert [str(o) for o in offences] == ["functions/step.py:4: functions must not import infra (imports infra.local)"]


def test_the_kernel_knows_no_agent_and_agents_build_on_the_kernel_only(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "core/adapters/llm/scripted.py": "from agents import BRAINS\n",
            "agents/travel.py": (
                "import os\nfrom core.kernel.agent import Agent\nfrom functions._wiring import runtime\n"
            ),
        },
    )

    offences, count = check(root)

    assert count == 2
    assert [str(o) for o in offences] == [
        "agents/travel.py:3: agents must not import functions (imports functions._wiring)",
        "core/adapters/llm/scripted.py:1: core must not import agents (imports agents)",
    ]


def test_an_unparsable_module_is_an_offence(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"core/broken.py": "def (:\n"})

    [offence] = check(root)[0]

    assert offence.path == "core/broken.py"
    assert offence.problem.startswith("cannot be parsed")


def test_main_exits_1_and_prints_one_line_per_offence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _tree(tmp_path, {"core/bad.py": "import os\nx = os.getenv('A')\nimport infra\n"})

    assert main([str(root)]) == 1

    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "core/bad.py:2: core must not read the environment (os.getenv)",
        "core/bad.py:3: core must not import infra (imports infra)",
    ]
    assert err == "layering: 2 offence(s) in 1 modules\n"


def test_main_on_a_clean_tree_prints_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _tree(tmp_path, {"core/a.py": "import json\n", "core/b.py": "", "functions/h.py": "import core\n"})

    assert main([str(root)]) == 0
    assert capsys.readouterr().out == "layering ok: 3 modules\n"
