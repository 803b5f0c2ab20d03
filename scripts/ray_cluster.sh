#!/usr/bin/env bash
# Many nodes with a Ray cluster.
#
#   on the head node:     scripts/ray_cluster.sh head                 (ray start --head)
#   on every other node:  scripts/ray_cluster.sh worker HEAD_IP       (ray start --address HEAD_IP:6379)
#   anywhere:             scripts/ray_cluster.sh status               (nodes and GPUs the cluster sees)
#   from this checkout:   scripts/ray_cluster.sh submit CONFIG_NAME trainer.nnodes=N [overrides...]
#   on every node:        scripts/ray_cluster.sh stop
#
# `submit` runs the pre-flight check here, then `ray job submit` with scripts/runtime_env.yaml, which
# puts this checkout (mapo_verl, reward_fns, trainer_configs) on every node. MAPO_DATA_DIR must name
# the same shared path on every node. RAY_ADDRESS (default http://127.0.0.1:8265) is the dashboard.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
RAY_PORT="${RAY_PORT:-6379}"
export MAPO_DATA_DIR="${MAPO_DATA_DIR:-$HOME/data/mapo}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"

cmd="${1:-}"
shift || true
case "$cmd" in
    head)
        ray start --head --port="$RAY_PORT" --dashboard-host=0.0.0.0 "$@"
        ;;
    worker)
        [[ $# -ge 1 ]] || { echo "usage: $0 worker HEAD_IP [ray start args]" >&2; exit 2; }
        head="$1"
        shift
        ray start --address="$head:$RAY_PORT" "$@"
        ;;
    status)
        ray status
        ;;
    stop)
        ray stop
        ;;
    submit)
        [[ $# -ge 1 ]] || { echo "usage: $0 submit CONFIG_NAME [overrides...]" >&2; exit 2; }
        CONFIG="$1"
        shift
        (cd "$ROOT" && "$PYTHON" -m mapo_verl check --config-path "$ROOT/trainer_configs" --config-name "$CONFIG" "$@")
        RUNTIME_ENV_JSON="$("$PYTHON" - "$ROOT/scripts/runtime_env.yaml" <<'PY'
import json, os, sys
import yaml
env = yaml.safe_load(open(sys.argv[1]))
env["working_dir"] = os.path.dirname(os.path.dirname(os.path.abspath(sys.argv[1])))
env["env_vars"]["MAPO_DATA_DIR"] = os.environ["MAPO_DATA_DIR"]
for key in ("HF_HOME", "HF_TOKEN", "WANDB_API_KEY", "HF_ENDPOINT"):
    if os.environ.get(key):
        env["env_vars"][key] = os.environ[key]
print(json.dumps(env))
PY
)"
        CMD=(ray job submit --address "${RAY_ADDRESS:-http://127.0.0.1:8265}" --runtime-env-json "$RUNTIME_ENV_JSON"
             --no-wait -- bash scripts/job_entry.sh "$CONFIG" "$@")
        if [[ -n "${DRY_RUN:-}" ]]; then
            printf '%q ' "${CMD[@]}"
            echo
            exit 0
        fi
        "${CMD[@]}"
        echo "follow it with: ray job logs --follow <submission id>   (or the dashboard at ${RAY_ADDRESS:-http://127.0.0.1:8265})"
        ;;
    *)
        echo "usage: $0 head | worker HEAD_IP | status | submit CONFIG_NAME [overrides...] | stop" >&2
        exit 2
        ;;
esac
