#!/usr/bin/env bash
# One node: check the environment, prepare missing data, run the pre-flight check, start training.
#
#   scripts/train.sh CONFIG_NAME [hydra overrides...]
#   scripts/train.sh mapo_geo3k_qwen2_5_vl_7b
#   scripts/train.sh mapo_geo3k_qwen2_5_vl_3b_small trainer.n_gpus_per_node=2
#
# Environment: MAPO_DATA_DIR (prepared parquet, default ~/data/mapo), MAPO_SOURCE_DIR (hand-downloaded sources,
# default ~/data/mapo_sources), PYTHON (default python), DRY_RUN=1 (print the training command instead of
# running it), SKIP_DATA_PREP=1, SKIP_GPU_CHECK=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
export MAPO_DATA_DIR="${MAPO_DATA_DIR:-$HOME/data/mapo}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"

if [[ $# -lt 1 ]]; then
    echo "usage: $0 CONFIG_NAME [overrides...]   (configs: $(cd "$ROOT/trainer_configs" && ls ./*.yaml | sed 's|^\./||; s|\.yaml$||' | tr '\n' ' '))" >&2
    exit 2
fi
CONFIG="$1"
shift
if [[ ! -f "$ROOT/trainer_configs/$CONFIG.yaml" ]]; then
    echo "error: no config $ROOT/trainer_configs/$CONFIG.yaml" >&2
    exit 2
fi

# 1. environment
"$PYTHON" -c 'import verl, mapo_verl, reward_fns' || {
    echo "error: verl / mapo-verl are not importable with $PYTHON: pip install -e '.[gpu]' in this checkout" >&2
    exit 1
}
if [[ -z "${DRY_RUN:-}" && -z "${SKIP_GPU_CHECK:-}" ]]; then
    "$PYTHON" -c 'import vllm' || { echo "error: vLLM is not installed (pip install -e '.[gpu]')" >&2; exit 1; }
    command -v nvidia-smi >/dev/null || { echo "error: nvidia-smi not found: no NVIDIA GPU on this node" >&2; exit 1; }
    echo "GPUs on this node: $(nvidia-smi --list-gpus | wc -l)"
fi

# 2. data: the parquet files the COMPOSED config reads (data.train_files / data.val_files, overrides included),
#    each prepared once into its folder by data_prep.<folder name> (the convention $MAPO_DATA_DIR/<name>/;
#    <name>_paper/ is written with the MAPO authors' prompts, --prompt-style paper).
#    Hand-downloaded sets (emoset, webemo, emotion6) are read from $MAPO_SOURCE_DIR/<name>
#    (default ~/data/mapo_sources/<name>); where that is missing the preparer says what to download and where.
if [[ -z "${SKIP_DATA_PREP:-}" ]]; then
    (cd "$ROOT" && "$PYTHON" -m data_prep.datasets_needed --prepare --config-path "$ROOT/trainer_configs" \
        --config-name "$CONFIG" "$@") || exit 1
fi

# 3. pre-flight: the config as main_ppo composes it, validated without GPUs
(cd "$ROOT" && "$PYTHON" -m mapo_verl check --config-path "$ROOT/trainer_configs" --config-name "$CONFIG" "$@")

# 4. train (the config path must be absolute: main_ppo resolves relative ones inside verl's package)
CMD=("$PYTHON" -m verl.trainer.main_ppo --config-path "$ROOT/trainer_configs" --config-name "$CONFIG" "$@")
if [[ -n "${DRY_RUN:-}" ]]; then
    printf '%q ' "${CMD[@]}"
    echo
    exit 0
fi
cd "$ROOT"
exec "${CMD[@]}"
