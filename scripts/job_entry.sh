#!/usr/bin/env bash
# Entry point of a `ray job submit` (scripts/ray_cluster.sh submit): runs in the job's working
# directory, which Ray unpacked from this checkout, so trainer_configs/ is found by absolute path.
#
#   bash scripts/job_entry.sh CONFIG_NAME [overrides...]
set -euo pipefail
CONFIG="$1"
shift
exec "${PYTHON:-python}" -m verl.trainer.main_ppo --config-path "$PWD/trainer_configs" --config-name "$CONFIG" "$@"
