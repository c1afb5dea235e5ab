"""Real headless Chromium for the e2e tests: Debian's /usr/bin/chromium driven by Playwright (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason="no /usr/bin/chromium: run .ci/e2e-deps.sh (apt chromium)"
)


def launch(playwright: Any) -> Any:
    """A headless Chromium browser, with screenshots' folder ready."""
    ARTIFACTS.mkdir(exist_ok=True)
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
