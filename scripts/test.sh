#!/usr/bin/env bash
# The test command. Builds the venvs on first use, then runs
#   1. the engine suite in .venv (torch 2.13 CPU, oracles), and
#   2. the node suite inside a real ComfyUI in .venv-host.
# Extra args go to both pytest runs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh
bash scripts/setup_env.sh --host
bash scripts/setup_browser.sh  # chromium + playwright-core for tests/host/test_browser.py
status=0
"${SAMPLER_LAB_VENV:-$root/.venv}/bin/python" -m pytest -q -n 2 --ignore=tests/host "$@" \
  || status=$?
"${SAMPLER_LAB_HOST_VENV:-$root/.venv-host}/bin/python" -m pytest -q tests/host "$@" \
  || status=$?
exit $status
