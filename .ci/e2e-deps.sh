#!/usr/bin/env bash
# What the e2e browser test needs beyond the Python extras: Debian's chromium at /usr/bin/chromium.
# Idempotent; runs as root in CI with no stdin. Playwright drives this binary (executable_path), so
# `playwright install` is never needed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if [ -x /usr/bin/chromium ]; then
  echo "e2e deps: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "e2e deps: no apt-get here; install chromium at /usr/bin/chromium yourself (the browser test skips without it)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "e2e deps: need root (or sudo) to apt-get install chromium" >&2
    exit 1
  fi
fi
$SUDO apt-get update -q </dev/null
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium </dev/null
/usr/bin/chromium --version
