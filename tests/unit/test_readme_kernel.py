"""README "Use the kernel on its own", run as written: the loop prints what the README shows, in under 30 lines,
with no AWS SDK, HTTP client or Powertools imported on the way (the kernel-only path of an existing app)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests import readme
from tests.readme import README

SECTION = "Use the kernel on its own"
HEAVY = ("botocore", "boto3", "httpx", "aws_lambda_powertools")
_PROBE = f"""
import json as _json, sys as _sys
print("imported:", _json.dumps(sorted(m for m in _sys.modules if m.split(".")[0] in {HEAVY!r})))
"""


def _blocks() -> tuple[str, str]:
    found = [b for b in readme.blocks() if b.section == SECTION]
    code = next(b.body for b in found if b.lang == "python")
    shown = next(b.body for b in found if b.lang == "text")
    return code, shown


def test_the_example_is_under_30_lines_of_code() -> None:
    code, _ = _blocks()
    lines = [line for line in code.splitlines() if line.strip()]
    assert len(lines) < 30, f"{len(lines)} lines of code; the issue promises under 30"


def test_the_kernel_example_prints_what_the_readme_shows_and_imports_no_aws_or_http() -> None:
    code, shown = _blocks()
    done = subprocess.run(
        [sys.executable, "-c", code + _PROBE],
        cwd=README.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    assert printed[:-1] == shown.splitlines(), done.stdout
    assert printed[-1].startswith("imported: ")
    assert json.loads(printed[-1].removeprefix("imported: ")) == []
