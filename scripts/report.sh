#!/usr/bin/env bash
# The main job: every sampler on the built-in digits model, error and model
# calls per sampler. Builds .venv on first use. Extra args go to the report.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
exec "${SAMPLER_LAB_VENV:-$root/.venv}/bin/python" -m sampler_lab report "$@"
