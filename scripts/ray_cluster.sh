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
# the same shared path on every node. RAY_ADDRESS (default http://HEAD:8265, HEAD as below) is the dashboard.
# DRY_RUN=1 prints the submit command (credential names, never values) instead of running it.
# head/worker: RAY_NUM_CPUS and RAY_NUM_GPUS set Ray's resources (default: what Ray detects), RAY_TEMP_DIR its
# temp dir (default Ray's), RAY_HEAD_IP the head's address (default: this host's address towards the network, as
# Ray picks it); ROCR_VISIBLE_DEVICES is
# cleared (verl's workers refuse it next to the CUDA_VISIBLE_DEVICES that Ray sets per GPU actor).
# `stop` runs `ray stop`: it ends every Ray process of this user on the node, other clusters included.
# MAPO_FORWARD_ENV: more variable names (space separated) that `submit` copies into the job's runtime env.
# RAY_SUBMIT_RETRIES (default 24): `submit` retries every 5 s while a fresh cluster has no job agent yet.
# RAY_ENTRYPOINT_RESOURCES: a JSON object of custom resources for the job's driver (`ray job submit
# --entrypoint-resources`), e.g. '{"head": 1}' with `head --resources='{"head": 1}'`: the driver runs on that node,
# and Ray then prefers it for verl's TaskRunner.
#
# Closed by default (docs/training.md, "Who can reach the cluster"): the dashboard and its job API listen on the
# head's address only (RAY_DASHBOARD_HOST, default RAY_HEAD_IP), and Ray's token authentication is on
# (RAY_AUTH_MODE=token): every node, `submit` and `status` read the token from RAY_AUTH_TOKEN_PATH (default
# ~/.ray/auth_token, which must be on the filesystem the nodes share, mode 600); `head` creates it when it is
# missing. The token is never on a command line or printed. RAY_AUTH_MODE=disabled opens the cluster, with a warning.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
RAY_PORT="${RAY_PORT:-6379}"
export MAPO_DATA_DIR="${MAPO_DATA_DIR:-$HOME/data/mapo}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
case "$RAY_AUTH_MODE" in
    token) export RAY_AUTH_TOKEN_PATH="${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}" ;;
    disabled) ;;
    *)
        echo "error: RAY_AUTH_MODE=$RAY_AUTH_MODE: expected token (the default) or disabled" >&2
        exit 2
        ;;
esac
# Environment variables `submit` copies into the job's runtime env when they are set here (names only
# are ever printed). Ray keeps a job's runtime env in its job record: `ray job list` shows the values,
# the dashboard in a browser masks them. See docs/training.md, "Credentials".
FORWARD_ENV=(MAPO_DATA_DIR HF_HOME HF_ENDPOINT HF_TOKEN HF_TOKEN_PATH WANDB_API_KEY)
# shellcheck disable=SC2206
FORWARD_ENV+=(${MAPO_FORWARD_ENV:-})
# ray start's resource, temp-dir and address flags from RAY_NUM_CPUS, RAY_NUM_GPUS, RAY_TEMP_DIR, RAY_HEAD_IP
START_ARGS=()
[[ -z "${RAY_NUM_CPUS:-}" ]] || START_ARGS+=(--num-cpus="$RAY_NUM_CPUS")
[[ -z "${RAY_NUM_GPUS:-}" ]] || START_ARGS+=(--num-gpus="$RAY_NUM_GPUS")
[[ -z "${RAY_TEMP_DIR:-}" ]] || START_ARGS+=(--temp-dir="$RAY_TEMP_DIR")

# auth_token [create]: with token authentication on, check the token file that Ray reads (RAY_AUTH_TOKEN_PATH): a
# regular, non-empty file that no other user can read. `create` (the head) first writes a new random token there
# when the file is missing (mode 600, atomically). A token given by value (RAY_AUTH_TOKEN) is Ray's to read.
auth_token() {
    [[ "$RAY_AUTH_MODE" == token && -z "${RAY_AUTH_TOKEN:-}" ]] || return 0
    "$PYTHON" - "$RAY_AUTH_TOKEN_PATH" "${1:-}" <<'PY' || exit 2
import os, secrets, stat, sys, tempfile
path, create = sys.argv[1], sys.argv[2] == "create"
how = "RAY_AUTH_MODE=disabled opens the cluster without one (docs/training.md)"
try:
    if create and not os.path.lexists(path):
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".auth_token.", dir=folder)  # mode 600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, path)  # never replaces a token another head wrote meanwhile
            print(f"created the cluster's auth token at {path} (mode 600)", file=sys.stderr)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    info = os.stat(path)
except FileNotFoundError:
    sys.exit(f"error: RAY_AUTH_TOKEN_PATH={path}: no such file; the head creates it (scripts/ray_cluster.sh head): "
             f"point RAY_AUTH_TOKEN_PATH at the head's token on the shared filesystem; {how}")
except OSError as err:
    sys.exit(f"error: RAY_AUTH_TOKEN_PATH={path}: {err.strerror or err}")
if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
    sys.exit(f"error: RAY_AUTH_TOKEN_PATH={path}: not a token (a regular, non-empty file)")
if info.st_mode & 0o077:
    sys.exit(f"error: RAY_AUTH_TOKEN_PATH={path}: other users can read it (mode {info.st_mode & 0o777:o}): "
             f"chmod 600 {path}")
PY
}

# this host's address towards the network (what Ray picks for a node by default), or loopback without a route
host_ip() {
    "$PYTHON" -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.connect(("8.8.8.8", 53))
    print(s.getsockname()[0])
except OSError:
    print("127.0.0.1")'
}

cmd="${1:-}"
shift || true
case "$cmd" in
    head)
        HEAD_IP="${RAY_HEAD_IP:-$(host_ip)}"
        DASHBOARD_HOST="${RAY_DASHBOARD_HOST:-$HEAD_IP}"
        case "$DASHBOARD_HOST" in
            0.0.0.0 | :: | "[::]")
                echo "warning: RAY_DASHBOARD_HOST=$DASHBOARD_HOST: the dashboard and its job API listen on every" \
                    "interface of this host" >&2
                ;;
        esac
        if [[ "$RAY_AUTH_MODE" == disabled ]]; then
            echo "warning: RAY_AUTH_MODE=disabled: token authentication is off; anyone who reaches this cluster's" \
                "ports (GCS $RAY_PORT, dashboard on $DASHBOARD_HOST) can run jobs as $(id -un)" >&2
        fi
        auth_token create
        env -u ROCR_VISIBLE_DEVICES ray start --head --port="$RAY_PORT" --node-ip-address="$HEAD_IP" \
            --dashboard-host="$DASHBOARD_HOST" ${START_ARGS[@]+"${START_ARGS[@]}"} "$@"
        ;;
    worker)
        [[ $# -ge 1 ]] || { echo "usage: $0 worker HEAD_IP [ray start args]" >&2; exit 2; }
        head="$1"
        shift
        auth_token
        env -u ROCR_VISIBLE_DEVICES ray start --address="$head:$RAY_PORT" ${START_ARGS[@]+"${START_ARGS[@]}"} "$@"
        ;;
    status)
        auth_token
        ray status
        ;;
    stop)
        ray stop
        ;;
    submit)
        [[ $# -ge 1 ]] || { echo "usage: $0 submit CONFIG_NAME [overrides...]" >&2; exit 2; }
        CONFIG="$1"
        shift
        auth_token
        ADDRESS="${RAY_ADDRESS:-http://${RAY_HEAD_IP:-$(host_ip)}:8265}"
        (cd "$ROOT" && "$PYTHON" -m mapo_verl check --config-path "$ROOT/trainer_configs" --config-name "$CONFIG" "$@")
        # The runtime env (with any credentials) goes to `ray job submit` as a file that only this user can
        # read, in a private temporary folder removed on exit: no secret value on a command line (`ps`) or
        # in DRY_RUN's output. Values are read from this shell's environment by Python, never by argv.
        PRIVATE_DIR="$(umask 077 && mktemp -d "${TMPDIR:-/tmp}/mapo-submit.XXXXXX")"
        trap 'rm -rf "$PRIVATE_DIR"' EXIT
        RUNTIME_ENV_FILE="$PRIVATE_DIR/runtime_env.json"
        FORWARDED="$("$PYTHON" - "$ROOT/scripts/runtime_env.yaml" "$RUNTIME_ENV_FILE" "${FORWARD_ENV[@]}" <<'PY'
import json, os, sys
import yaml
template, target, *names = sys.argv[1:]
with open(template) as f:
    env = yaml.safe_load(f)
env["working_dir"] = os.path.dirname(os.path.dirname(os.path.abspath(template)))
forwarded = [name for name in names if os.environ.get(name)]
env["env_vars"].update({name: os.environ[name] for name in forwarded})
fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
with os.fdopen(fd, "w") as f:
    json.dump(env, f)
print(" ".join(forwarded))
PY
)"
        CMD=(ray job submit --address "$ADDRESS" --runtime-env "$RUNTIME_ENV_FILE")
        [[ -z "${RAY_ENTRYPOINT_RESOURCES:-}" ]] || CMD+=(--entrypoint-resources "$RAY_ENTRYPOINT_RESOURCES")
        CMD+=(--no-wait -- bash scripts/job_entry.sh "$CONFIG" "$@")
        echo "forwarding to the job's runtime env (values not shown): ${FORWARDED:-(none)}"
        if [[ -n "${DRY_RUN:-}" ]]; then
            printf '%q ' "${CMD[@]}"
            echo
            exit 0
        fi
        # A cluster that has just started refuses jobs until its dashboard agent is up ("No available agent to
        # submit job, please try again later"): retried every 5 s, RAY_SUBMIT_RETRIES times (default 24).
        for ((attempt = 1; ; attempt++)); do
            if out="$("${CMD[@]}" 2>&1)"; then
                echo "$out"
                break
            fi
            if [[ "$out" != *"No available agent to submit job"* ]]; then
                echo "$out" >&2
                exit 1
            fi
            if [[ $attempt -ge ${RAY_SUBMIT_RETRIES:-24} ]]; then
                echo "$out" >&2
                echo "error: the head's job agent did not come up within $((attempt * 5)) s. Is another Ray running on" \
                    "the head host? Its dashboard agent holds port 52365: start this head with" \
                    "--dashboard-agent-listen-port=<free port> (scripts/ray_cluster.sh head --dashboard-agent-listen-port=...)" >&2
                exit 1
            fi
            echo "the cluster's job agent is not up yet; submitting again in 5 s ($attempt)" >&2
            sleep 5
        done
        echo "follow it with: RAY_AUTH_MODE=$RAY_AUTH_MODE ray job logs --address $ADDRESS --follow <submission id>"
        ;;
    *)
        echo "usage: $0 head | worker HEAD_IP | status | submit CONFIG_NAME [overrides...] | stop" >&2
        exit 2
        ;;
esac
