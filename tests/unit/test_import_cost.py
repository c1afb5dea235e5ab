"""Cold start is a feature: importing the kernel must not pull in AWS SDKs, HTTP clients or Powertools.

Each check runs in a fresh interpreter, so modules this test process already imported do not hide a leak.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("botocore", "boto3", "httpx", "aws_lambda_powertools")

_PROBE = """
import json, sys
import {module}
heavy = {heavy!r}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def _heavy_after_import(module: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module, heavy=HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize(
    "module", ["core.kernel.agent", "agents", "core.adapters.store", "core.adapters.llm", "core.adapters.llm.scripted"]
)
def test_importing_the_kernel_loads_no_heavy_dependency(module: str) -> None:
    assert _heavy_after_import(module) == []


def test_the_probe_would_notice_a_heavy_import() -> None:
    assert "httpx" in _heavy_after_import("core.adapters.llm.openai")
