"""Launchers: syntax, the one-node dry run, credentials kept off command lines, the Slurm script's wait for its
nodes, and `mapo` registered in actors on every node of a Ray cluster.

The Ray-submit and Slurm tests put small fakes of `ray`, `srun`, `scontrol` and the pre-flight check first on
PATH: they record their argv, so the tests see exactly what the scripts would run. No cluster is needed."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO / "scripts").glob("*.sh")) + sorted((REPO / "scripts").glob("*.sbatch"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_syntax(script):
    assert os.access(script, os.X_OK), f"{script} is not executable"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    if shutil.which("shellcheck"):
        lint = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout


@pytest.mark.slow
def test_single_node_dry_run(subprocess_env, reward_file, tmp_path):
    env = {**subprocess_env, "DRY_RUN": "1", "PYTHON": str(Path(os.sys.executable))}
    override = f"reward.custom_reward_function.path={reward_file}"
    proc = subprocess.run(
        [str(REPO / "scripts/train.sh"), "mapo_geo3k_qwen2_5_vl_7b", override],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pre-flight check passed" in proc.stdout
    last = proc.stdout.strip().splitlines()[-1]
    assert (
        f"-m verl.trainer.main_ppo --config-path {REPO}/trainer_configs --config-name mapo_geo3k_qwen2_5_vl_7b" in last
    )


SECRETS = {"HF_TOKEN": "hf_SECRET_token_value_123", "WANDB_API_KEY": "wandb-SECRET-key-456"}


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _fake_bin(tmp_path: Path) -> Path:
    """A `ray` that records its argv, its RAY_AUTH_* variables and a copy of its --runtime-env file (with that file's
    mode), and a `python` that answers the pre-flight check and passes everything else to this interpreter."""
    fake = tmp_path / "bin"
    fake.mkdir()
    _executable(
        fake / "ray",
        "#!/usr/bin/env bash\n"
        'printf "%s\\n" "$@" > "$FAKE_LOG/ray.argv"\n'
        'env | grep "^RAY_AUTH" | sort > "$FAKE_LOG/ray.env"\n'
        'prev=""; for a in "$@"; do\n'
        '  if [[ "$prev" == --runtime-env ]]; then\n'
        '    cp "$a" "$FAKE_LOG/runtime_env.json"; stat -c %a "$a" > "$FAKE_LOG/runtime_env.mode"\n'
        '    stat -c %a "$(dirname "$a")" > "$FAKE_LOG/runtime_env.dirmode"; echo "$a" > "$FAKE_LOG/runtime_env.path"\n'
        '  fi; prev="$a"; done\n',
    )
    _executable(
        fake / "python",
        "#!/usr/bin/env bash\n"
        'if [[ "$1 $2 $3" == "-m mapo_verl check" ]]; then echo "pre-flight check passed (fake)"; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n',
    )
    return fake


#: the cluster's token, in the token file of the `_ray_cluster` runs below
TOKEN = "0123abcd" * 8


def _ray_cluster(tmp_path: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    """``scripts/ray_cluster.sh ARGS`` with the fake `ray` and `python`, in a shell where token authentication is as
    the script sets it by default (any RAY_AUTH_MODE of the CI's environment removed) and the token file
    ``tmp_path/token`` holds ``TOKEN`` (mode 600); HOME is ``tmp_path/home`` unless given."""
    fake = _fake_bin(tmp_path)
    log = tmp_path / "log"
    log.mkdir()
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    home = Path(extra_env.pop("HOME", tmp_path / "home"))
    home.mkdir(exist_ok=True)
    shell = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_HEAD_IP"}
    env = {**shell, **SECRETS, "RAY_AUTH_TOKEN_PATH": str(token), **extra_env, "PATH": f"{fake}:{os.environ['PATH']}",
           "FAKE_LOG": str(log), "PYTHON": str(fake / "python"), "MAPO_DATA_DIR": "/shared/data/mapo",
           "TMPDIR": str(tmp_path), "HOME": str(home)}  # fmt: skip
    return subprocess.run([str(REPO / "scripts/ray_cluster.sh"), *args], capture_output=True, text=True, timeout=60,
                          env=env)  # fmt: skip


def _submit(tmp_path: Path, **extra_env: str) -> subprocess.CompletedProcess:
    return _ray_cluster(tmp_path, "submit", "mapo_geo3k_qwen2_5_vl_7b", "trainer.nnodes=2", **extra_env)


def test_ray_submit_dry_run_shows_names_not_values(tmp_path):
    proc = _submit(tmp_path, DRY_RUN="1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    printed = proc.stdout + proc.stderr
    for name, value in SECRETS.items():
        assert value not in printed
        assert name in printed  # the user sees which credentials are forwarded
    command = proc.stdout.strip().splitlines()[-1]
    assert command.startswith("ray job submit ") and "--runtime-env " in command
    assert "--runtime-env-json" not in command
    assert command.endswith("-- bash scripts/job_entry.sh mapo_geo3k_qwen2_5_vl_7b trainer.nnodes=2")
    assert not (tmp_path / "log" / "ray.argv").exists()  # a dry run submits nothing
    assert not list(tmp_path.glob("mapo-submit.*"))  # and leaves no runtime-env file behind


def test_ray_submit_pins_the_driver_with_entrypoint_resources(tmp_path):
    proc = _submit(tmp_path, DRY_RUN="1", RAY_ENTRYPOINT_RESOURCES='{"head": 1}')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    command = proc.stdout.strip().splitlines()[-1]
    ray_args = command.split(" -- ")[0]  # ray job submit's own flags, before the entrypoint
    assert '--entrypoint-resources \\{\\"head\\":\\ 1\\}' in ray_args, command
    (tmp_path / "unset").mkdir()
    assert "--entrypoint-resources" not in _submit(tmp_path / "unset", DRY_RUN="1").stdout


def test_ray_submit_passes_credentials_in_a_private_file_only(tmp_path):
    proc = _submit(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = tmp_path / "log"
    argv = (log / "ray.argv").read_text()
    for value in [*SECRETS.values(), TOKEN]:
        assert value not in argv and value not in proc.stdout + proc.stderr
    assert argv.splitlines()[:2] == ["job", "submit"]
    # `ray job submit` reads the cluster's token from its file: the path in its environment, never the value
    assert (log / "ray.env").read_text().split() == ["RAY_AUTH_MODE=token", f"RAY_AUTH_TOKEN_PATH={tmp_path / 'token'}"]
    runtime_env = yaml.safe_load((log / "runtime_env.json").read_text())
    assert {k: runtime_env["env_vars"][k] for k in SECRETS} == SECRETS  # the job still gets them
    assert runtime_env["env_vars"]["MAPO_DATA_DIR"] == "/shared/data/mapo"
    assert runtime_env["env_vars"]["VERL_USE_EXTERNAL_MODULES"] == "mapo_verl"
    assert runtime_env["working_dir"] == str(REPO)
    assert (log / "runtime_env.mode").read_text().strip() == "600"
    assert (log / "runtime_env.dirmode").read_text().strip() == "700"
    assert not Path((log / "runtime_env.path").read_text().strip()).exists()  # removed after submission
    assert not list(tmp_path.glob("mapo-submit.*"))
    assert TOKEN not in json.dumps(runtime_env)  # the job's nodes have it from their own `ray start`


def test_the_ray_head_is_closed_by_default(tmp_path):
    """No RAY_AUTH_MODE, RAY_HEAD_IP or token file: the head listens on its own address (never every interface),
    turns token authentication on and writes a new token to Ray's default file, for this user only."""
    proc = _ray_cluster(tmp_path, "head", "--dashboard-port=8299", RAY_AUTH_TOKEN_PATH="")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    argv = (tmp_path / "log" / "ray.argv").read_text().splitlines()
    host = next(a.split("=", 1)[1] for a in argv if a.startswith("--dashboard-host="))
    assert host not in ("0.0.0.0", "::", "") and f"--node-ip-address={host}" in argv, argv
    token = tmp_path / "home" / ".ray" / "auth_token"
    assert (tmp_path / "log" / "ray.env").read_text().split() == ["RAY_AUTH_MODE=token", f"RAY_AUTH_TOKEN_PATH={token}"]
    assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text()) == 64
    assert token.read_text() not in "\n".join(argv) + proc.stdout + proc.stderr
    assert f"created the cluster's auth token at {token} (mode 600)" in proc.stderr
    before = token.read_text()
    again = tmp_path / "again"  # a second head of this user (the same HOME) keeps the token
    again.mkdir()
    proc = _ray_cluster(again, "head", RAY_AUTH_TOKEN_PATH="", RAY_HEAD_IP="10.1.2.3", HOME=str(tmp_path / "home"))
    assert proc.returncode == 0, proc.stderr
    assert token.read_text() == before and "created" not in proc.stderr
    argv = (again / "log" / "ray.argv").read_text().splitlines()
    assert "--dashboard-host=10.1.2.3" in argv and "--node-ip-address=10.1.2.3" in argv


def test_the_ray_head_is_opened_only_explicitly(tmp_path):
    proc = _ray_cluster(tmp_path, "head", RAY_AUTH_MODE="disabled", RAY_DASHBOARD_HOST="0.0.0.0",
                        RAY_AUTH_TOKEN_PATH=str(tmp_path / "none"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "--dashboard-host=0.0.0.0" in (tmp_path / "log" / "ray.argv").read_text().splitlines()
    assert (tmp_path / "log" / "ray.env").read_text().split()[0] == "RAY_AUTH_MODE=disabled"
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2 and "RAY_DASHBOARD_HOST=0.0.0.0" in warnings[0], proc.stderr
    assert "RAY_AUTH_MODE=disabled: token authentication is off" in warnings[1]
    assert not (tmp_path / "none").exists() and not (tmp_path / "home" / ".ray").exists()


@pytest.mark.parametrize(
    ("command", "token", "expected"),
    [
        (("worker", "10.0.0.1"), "absent", "no such file; the head creates it"),
        (("status",), "absent", "no such file; the head creates it"),
        (("submit", "mapo_geo3k_qwen2_5_vl_7b"), "absent", "no such file; the head creates it"),
        (("worker", "10.0.0.1"), "644", "other users can read it (mode 644): chmod 600"),
        (("head",), "644", "other users can read it (mode 644): chmod 600"),
        (("worker", "10.0.0.1"), "empty", "not a token"),
    ],
)
def test_a_missing_or_exposed_token_stops_the_script(tmp_path, command, token, expected):
    path = tmp_path / "shared_token"
    if token != "absent":
        path.write_text("" if token == "empty" else TOKEN)
        path.chmod(0o600 if token == "empty" else int(token, 8))
    proc = _ray_cluster(tmp_path, *command, RAY_AUTH_TOKEN_PATH=str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"error: RAY_AUTH_TOKEN_PATH={path}: {expected}"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "pre-flight" not in proc.stdout
    assert not (tmp_path / "log" / "ray.argv").exists()  # no Ray started, nothing submitted


def test_an_unknown_ray_auth_mode_is_refused(tmp_path):
    proc = _ray_cluster(tmp_path, "head", RAY_AUTH_MODE="off")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: RAY_AUTH_MODE=off: expected token (the default) or disabled"


def _slurm(tmp_path: Path, schedule: str, **extra_env: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Runs slurm_train.sbatch on two fake nodes; the n-th probe of the cluster reports the n-th number of
    `schedule` as the alive node count (the last one repeats)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    log = tmp_path / "log"
    log.mkdir()
    _executable(fake / "scontrol", "#!/usr/bin/env bash\nprintf 'node-a\\nnode-b\\n'\n")
    _executable(
        fake / "srun",
        '#!/usr/bin/env bash\necho "srun $*" >> "$FAKE_LOG/calls"\n'
        'if [[ " $* " == *" hostname "* ]]; then echo "${FAKE_ADDRS:-10.0.0.1 fe80::1}"; fi\n',
    )
    _executable(
        fake / "python",
        "#!/usr/bin/env bash\n"
        'if [[ "$1 $2 $3" == "-m mapo_verl check" ]]; then echo "check $*" >> "$FAKE_LOG/calls"; exit 0; fi\n'
        'if [[ "$1" == "-" ]]; then cat > /dev/null\n'
        '  n=$(( $(cat "$FAKE_LOG/probes" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$FAKE_LOG/probes"\n'
        '  read -r -a counts <<< "$FAKE_SCHEDULE"; i=$(( n <= ${#counts[@]} ? n - 1 : ${#counts[@]} - 1 ))\n'
        '  echo "probe ${counts[$i]}" >> "$FAKE_LOG/calls"; echo "${counts[$i]}"; exit 0; fi\n'
        "exit 3\n",
    )
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text(f'export PATH="{fake}:$PATH"\n')
    env = {**os.environ, "FAKE_LOG": str(log), "FAKE_SCHEDULE": schedule, "VENV": str(venv),
           "SLURM_JOB_NODELIST": "node-[a-b]", "SLURM_SUBMIT_DIR": str(REPO), "SLURM_GPUS_PER_NODE": "8",
           "SLURM_JOB_ID": "1507", "SLURM_CPUS_PER_TASK": "64",
           "RAY_POLL_INTERVAL": "0.05", **extra_env}  # fmt: skip
    proc = subprocess.run(
        ["bash", str(REPO / "scripts/slurm_train.sbatch"), "mapo_geo3k_qwen2_5_vl_7b"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    return proc, log


def test_slurm_waits_until_every_node_has_joined(tmp_path):
    proc, log = _slurm(tmp_path, "0 0 1 1 2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = (log / "calls").read_text().splitlines()
    head = next(i for i, c in enumerate(calls) if "ray start --head" in c)
    worker = next(i for i, c in enumerate(calls) if "ray start --address=10.0.0.1:6414" in c)
    train = next(i for i, c in enumerate(calls) if "verl.trainer.main_ppo" in c)
    # the head is polled until it answers, the worker starts only then, training only once both are alive
    assert [c for c in calls[head:worker] if c.startswith("probe")] == ["probe 0", "probe 0", "probe 1"], calls
    assert [c for c in calls[worker:train] if c.startswith("probe")] == ["probe 1", "probe 2"], calls
    assert "trainer.nnodes=2 trainer.n_gpus_per_node=8" in calls[train]
    assert "2/2 node(s) alive" in proc.stdout


def test_slurm_stops_with_a_clear_error_when_nodes_are_missing(tmp_path):
    proc, log = _slurm(tmp_path, "1", RAY_WAIT_TIMEOUT="1")
    assert proc.returncode != 0
    assert "only 1 of 2 node(s) joined the Ray cluster at 10.0.0.1:6414 within 1 s" in proc.stderr
    assert "main_ppo" not in (log / "calls").read_text()  # no training on a partial cluster


def _ray_starts(log: Path) -> list[str]:
    return [c for c in (log / "calls").read_text().splitlines() if " ray start " in c]


def test_slurm_ray_steps_clear_rocr_and_use_a_per_job_port_and_temp_dir(tmp_path):
    """Slurm's gres/gpu sets ROCR_VISIBLE_DEVICES in every step; verl's workers refuse it (SLURM_NOTES.md)."""
    proc, log = _slurm(tmp_path, "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    head, worker = _ray_starts(log)
    for line in (head, worker):
        assert " env -u ROCR_VISIBLE_DEVICES ray start " in line, line
        assert "--temp-dir=/tmp/ray-mapo-1507" in line and "--num-cpus=64 --num-gpus=8" in line, line
    # job 1507: port 6400 + 2 x (1507 mod 1500) = 6414, its client server the next port, no shared dashboard
    assert "--port=6414 --ray-client-server-port=6415 --include-dashboard=false" in head
    assert "--address=10.0.0.1:6414" in worker


def test_slurm_resources_and_address_are_overridable(tmp_path):
    proc, log = _slurm(tmp_path, "2", RAY_NUM_CPUS="6", RAY_NUM_GPUS="2", RAY_PORT="7100",
                       RAY_TEMP_DIR="/tmp/r7", RAY_HEAD_IP="192.168.5.5")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    head, worker = _ray_starts(log)
    assert "--node-ip-address=192.168.5.5 --port=7100" in head and "--address=192.168.5.5:7100" in worker
    assert all("--temp-dir=/tmp/r7 --num-cpus=6 --num-gpus=2" in line for line in (head, worker))
    calls = (log / "calls").read_text()
    assert "hostname" not in calls  # RAY_HEAD_IP set: no probe of the head's addresses
    assert "trainer.nnodes=2 trainer.n_gpus_per_node=2" in calls


def test_slurm_head_on_loopback_picks_the_routable_address(tmp_path):
    """`hostname --ip-address` is 127.0.0.1 where /etc/hosts maps the hostname to loopback (SLURM_NOTES.md)."""
    proc, log = _slurm(tmp_path, "2", FAKE_ADDRS="127.0.0.1 192.0.2.7 fd00::2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    head, worker = _ray_starts(log)
    assert "--node-ip-address=192.0.2.7 " in head and "--address=192.0.2.7:6414" in worker


def test_slurm_head_with_only_loopback_stops_clearly(tmp_path):
    proc, log = _slurm(tmp_path, "2", FAKE_ADDRS="127.0.1.1")
    assert proc.returncode != 0
    assert "the head node node-a has no address the other nodes can reach (only: 127.0.1.1)" in proc.stderr
    assert "Set RAY_HEAD_IP" in proc.stderr
    assert "ray start" not in (log / "calls").read_text()


def test_slurm_cpu_only_allocation_declares_zero_gpus(tmp_path):
    """No GPU in the allocation: 0 GPUs go to the pre-flight check (which then says so), never a made-up 8."""
    proc, log = _slurm(
        tmp_path, "2", SLURM_GPUS_PER_NODE="", SLURM_GPUS_ON_NODE="", SLURM_CPUS_ON_NODE="4", SLURM_CPUS_PER_TASK=""
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = (log / "calls").read_text().splitlines()
    check = next(c for c in calls if c.startswith("check "))
    assert "trainer.nnodes=2 trainer.n_gpus_per_node=0" in check
    assert all("--num-cpus=4 --num-gpus=0" in line for line in _ray_starts(log))


def _probe() -> dict:
    """Runs in an actor: a plain `import verl` registers mapo; verl's trainer imported the way TaskRunnerV1.run does
    (with a mapo config in the importing call) gets MAPO's step metrics hook."""
    import importlib

    import ray
    import verl  # noqa: F401
    from omegaconf import OmegaConf
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY

    import mapo_verl.metrics as m

    def run(config):  # as TaskRunnerV1.run(config): the trainer module is imported with the run's config in scope
        return importlib.import_module(m.TRAINER_MODULE)

    trainer = run(OmegaConf.create({"algorithm": {"adv_estimator": "mapo"}}))
    step = getattr(getattr(trainer, m.TRAINER_CLASS), m.TRAINER_METHOD)
    return {
        "node": ray.get_runtime_context().get_node_id(),
        "registered": "mapo" in ADV_ESTIMATOR_REGISTRY,
        "hooked": getattr(step, m.HOOK_MARK, False),
        "plugins": os.environ.get("VERL_USE_EXTERNAL_PLUGINS"),
    }


# pickled by value: the workers cannot import this test module (pytest's importlib mode)
_probe.__module__ = "__main__"


@pytest.fixture(scope="module")
def two_node_cluster():
    """A local Ray cluster of two nodes (one CPU each), shut down after this module's tests."""
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@pytest.mark.ray
def test_multi_node_ray_cluster_registers_mapo_on_every_node(two_node_cluster):
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    runtime_env = yaml.safe_load((REPO / "scripts/runtime_env.yaml").read_text())
    runtime_env["working_dir"] = str(REPO)
    runtime_env["excludes"] = [*runtime_env["excludes"], "tests/", "docs/", "benchmarks/"]
    # entry points off: the plugin comes from the shipped runtime env alone (working_dir + module name)
    runtime_env["env_vars"] = {**runtime_env["env_vars"], "VERL_USE_EXTERNAL_PLUGINS": "none"}

    try:
        ray.init(address=two_node_cluster.address, runtime_env=runtime_env, log_to_driver=False)
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        assert len(nodes) == 2
        probe = ray.remote(num_cpus=1)(_probe)
        results = ray.get(
            [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote() for n in nodes],
            timeout=240,
        )
        assert sorted(r["node"] for r in results) == sorted(nodes)
        for r in results:
            assert r["plugins"] == "none"
            assert r["registered"], r
            assert r["hooked"], r
    finally:
        ray.shutdown()


@pytest.mark.ray
def test_slurm_node_probe_counts_a_real_cluster(two_node_cluster, tmp_path):
    """The Slurm script's own alive_nodes / wait_for_nodes, cut from the script, against a real cluster."""
    script = (REPO / "scripts/slurm_train.sbatch").read_text()
    start = script.index("alive_nodes() {")
    functions = script[start : script.index("\nsrun ", start)]
    python_dir = str(Path(sys.executable).parent)
    address = two_node_cluster.address
    proc = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{functions}\nalive_nodes {address}\nwait_for_nodes {address} 2\n"
         f"RAY_WAIT_TIMEOUT=2 RAY_POLL_INTERVAL=1 wait_for_nodes {address} 3"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PATH": f"{python_dir}:{os.environ['PATH']}", "RAY_AUTH_MODE": "disabled"},
    )  # fmt: skip
    assert proc.stdout.splitlines()[:1] == ["2"], proc.stdout + proc.stderr
    assert f"ray cluster at {address}: 2/2 node(s) alive" in proc.stdout
    assert proc.returncode == 1
    assert f"only 2 of 3 node(s) joined the Ray cluster at {address} within 2 s" in proc.stderr


def test_slurm_request_that_no_node_fits_is_named_before_submission():
    from mapo_verl_cpu.runners import Placement
    from mapo_verl_cpu.runners.slurm import unmet

    nodes = [("n1", 8, 1), ("n2", 8, 1)]
    assert unmet(Placement(nodes=2, gpus_per_node=1, cpus_per_node=8), nodes) is None
    why = unmet(Placement(nodes=2, gpus_per_node=8, cpus_per_node=64), nodes)
    assert why and "--gpus-per-node=8 --cpus-per-task=64" in why and "only 0 node(s) fit" in why
    assert "n1 (8 CPUs, 1 GPUs)" in why
    assert "only 2 node(s) fit" in (unmet(Placement(nodes=3), nodes) or "")


def test_cluster_runs_drop_the_private_ray_and_node_counts():
    """The smoke's private Ray (address=local, num_cpus/gpus) must not reach a job that joins a launcher's Ray."""
    from mapo_verl_cpu.runners.spec import PRIVATE_RAY, for_cluster

    kept = ["data.train_batch_size=4", "trainer.total_training_steps=1"]
    assert "+ray_kwargs.ray_init.address=local" in PRIVATE_RAY
    assert for_cluster([*PRIVATE_RAY, "trainer.nnodes=1", "trainer.n_gpus_per_node=1", *kept]) == kept
