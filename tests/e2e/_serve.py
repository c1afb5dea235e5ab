"""``stepfold serve`` as a subprocess, and the ``stepfold`` CLI as a shell user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEY = "e2e-api-key-0123456789"
_SCRIPT = Path(sys.executable).with_name("stepfold")
STEPFOLD = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "infra.cli"]
"""The installed console script (what ``make setup`` puts in .venv/bin), else the module."""
_LINK = re.compile(r"^approval (\S+) for (\S+) \((.*?)\): (http://\S+)$")
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def environment(**overrides: str | None) -> dict[str, str]:
    """The process environment without proxies or a real model, plus ``overrides`` (None removes a name)."""
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS and k != "STEPFOLD_MODEL"}
    env.update({"PYTHONUNBUFFERED": "1", "POWERTOOLS_LOG_LEVEL": "WARNING", "NO_PROXY": "127.0.0.1,localhost"})
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


class Served:
    """A running ``stepfold serve --port 0``: its URL, everything it printed, and the approval links it sent."""

    def __init__(
        self,
        startup_timeout: float = 60.0,
        env: dict[str, str | None] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [*STEPFOLD, "serve", "--port", "0", *extra_args],
            cwd=ROOT,
            env=environment(**{"STEPFOLD_API_KEY": KEY, **(env or {})}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name="stepfold-serve-output", daemon=True)
        self._reader.start()
        found = self.wait_for(lambda line: line.startswith("url:"), startup_timeout)
        self.url = found.split()[-1]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> str:
        """The first printed line that ``predicate`` accepts, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                if self.process.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError("stepfold serve exited:\n" + "\n".join(self.lines))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"stepfold serve did not print it in {timeout}s:\n" + "\n".join(self.lines))
                self._changed.wait(min(left, 0.5))

    def link(self, approval_id: str, timeout: float = 20.0) -> str:
        """The signed approval link ``serve`` printed when it sent ``approval_id``."""
        line = self.wait_for(lambda text: (m := _LINK.match(text)) is not None and m[1] == approval_id, timeout)
        found = _LINK.match(line)
        assert found is not None
        return found[4]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def stepfold(
    *args: str, url: str, key: str | None = KEY, timeout: float = 60.0, **env: str | None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a shell user would: ``STEPFOLD_URL`` and ``STEPFOLD_API_KEY`` in the environment."""
    return subprocess.run(
        [*STEPFOLD, *args],
        cwd=ROOT,
        env=environment(STEPFOLD_URL=url, STEPFOLD_API_KEY=key, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
