#!/usr/bin/env bash
# Entry point of a `ray job submit` (scripts/ray_cluster.sh submit): runs in the job's working
# directory, which Ray unpacked from this checkout, so trainer_configs/ is found by absolute path.
# verl's trainer runs under mapo_verl's node watch: when a node dies with actors of this job on it, the
# job is ended (FAILED, exit 75) instead of waiting forever for them; MAPO_NODE_WATCH=0 turns it off
# (docs/training.md, "A lost node").
#
#   bash scripts/job_entry.sh CONFIG_NAME [overrides...]
set -euo pipefail
CONFIG="$1"
shift
exec "${PYTHON:-python}" -m mapo_verl.node_watch -- \
    "${PYTHON:-python}" -m verl.trainer.main_ppo --config-path "$PWD/trainer_configs" --config-name "$CONFIG" "$@"
