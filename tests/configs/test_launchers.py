"""Launchers: syntax, the one-node dry run, and `mapo` registered in actors on every node of a Ray cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
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


def _probe() -> dict:
    """Runs in an actor: a plain `import verl` must register mapo and hook the trainer's metrics."""
    import ray
    import verl  # noqa: F401
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY

    import mapo_verl.metrics as m

    return {
        "node": ray.get_runtime_context().get_node_id(),
        "registered": "mapo" in ADV_ESTIMATOR_REGISTRY,
        "hooked": m.is_installed(),
        "plugins": os.environ.get("VERL_USE_EXTERNAL_PLUGINS"),
    }


# pickled by value: the workers cannot import this test module (pytest's importlib mode)
_probe.__module__ = "__main__"


@pytest.mark.ray
def test_multi_node_ray_cluster_registers_mapo_on_every_node():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    runtime_env = yaml.safe_load((REPO / "scripts/runtime_env.yaml").read_text())
    runtime_env["working_dir"] = str(REPO)
    runtime_env["excludes"] = [*runtime_env["excludes"], "tests/", "docs/", "benchmarks/"]
    # entry points off: the plugin comes from the shipped runtime env alone (working_dir + module name)
    runtime_env["env_vars"] = {**runtime_env["env_vars"], "VERL_USE_EXTERNAL_PLUGINS": "none"}

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, runtime_env=runtime_env, log_to_driver=False)
        cluster.wait_for_nodes()
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
        cluster.shutdown()
