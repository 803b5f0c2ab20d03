"""``python -m mapo_verl smoke --launcher ray`` on a local two-node Ray cluster started with the shipped
``scripts/ray_cluster.sh head`` / ``worker`` (this test's pids, own ports and temp dir, one logical GPU a node),
submitted through ``scripts/ray_cluster.sh submit`` to verl's real trainer, with a worker node lost mid-run.

Job 1 (2 steps, a checkpoint every step, no validation, ``trainer.resume_mode=auto``) loses its worker node
(SIGKILL to the node's processes) once step 1 is checkpointed: the job must end FAILED, not hang. The worker is
started again and the same command resubmitted: job 2 resumes from ``global_step_1``, trains step 2 with
``mapo/*`` logged, SUCCEEDED, with its two FSDP ranks on the two nodes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mapo_verl.verl_log import read_records, training_steps

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.slow, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "ray_cluster.sh"
ARGS = ("--launcher", "ray", "--nodes", "2", "--steps", "2", "trainer.save_freq=1", "trainer.test_freq=-1",
        "trainer.val_before_train=False", "trainer.resume_mode=auto")  # fmt: skip


def _smoke(cluster, out: Path, timeout: int) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": cluster.dashboard}
    cmd = [sys.executable, "-m", "mapo_verl", "smoke", "--out", str(out), "--timeout", str(timeout), *ARGS]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _job_id(output: str) -> tuple[str, str]:
    found = re.search(r"ray job (raysubmit_\w+): (\w+)", output)
    assert found, output[-4000:]
    return found.group(1), found.group(2)


def _worker_nodes(dashboard: str, submission_id: str) -> set[str]:
    """The Ray node ids of the job's FSDP workers (verl's WorkerDict actors)."""
    from ray.job_submission import JobSubmissionClient
    from ray.util.state import list_actors

    job = JobSubmissionClient(dashboard).get_job_info(submission_id).job_id
    actors = list_actors(address=dashboard, filters=[("job_id", "=", job)], detail=True, limit=1000)
    return {a.node_id for a in actors if "WorkerDict" in a.class_name}


@pytest.fixture(scope="module")
def jobs(ray_cluster, tmp_path_factory, memory_claim):
    """Job 1 with its worker node lost after the step-1 checkpoint, then job 2 (the same command) to the end."""
    with memory_claim("ray-cluster", "smoke --launcher ray (a node lost, then resubmitted)"):
        return _lose_a_node_then_resubmit(ray_cluster, tmp_path_factory.mktemp("smoke-ray"))


def _lose_a_node_then_resubmit(ray_cluster, out: Path) -> tuple:
    tracker = out / "checkpoints" / "latest_checkpointed_iteration.txt"
    # the node's loss must end it (FAILED) well within this limit, even with another worker's job on the cores
    proc = _smoke(ray_cluster, out, timeout=300)
    deadline = time.monotonic() + 600
    while not (tracker.is_file() and tracker.read_text() == "1"):
        assert proc.poll() is None, f"job 1 ended before checkpointing step 1:\n{proc.stdout.read()[-4000:]}"
        assert time.monotonic() < deadline, "job 1 never checkpointed step 1"
        time.sleep(0.2)
    ray_cluster.lose_worker()
    first = proc.communicate(timeout=900)[0]
    first_log = (out / "main_ppo.log").read_text()
    ray_cluster.restart_worker()
    proc = _smoke(ray_cluster, out, timeout=600)
    second = proc.communicate(timeout=900)[0]
    return first, first_log, proc.returncode, second, out


def test_losing_a_worker_node_fails_the_job(jobs):
    first, first_log, *_ = jobs
    _, status = _job_id(first)
    assert status == "FAILED", first[-4000:] + "\n--- log ---\n" + first_log[-3000:]


def test_the_resubmitted_job_resumes_and_succeeds_with_mapo_metrics(jobs):
    _, _, code, second, out = jobs
    log = (out / "main_ppo.log").read_text()
    assert code == 0, second[-4000:] + "\n--- log ---\n" + log[-4000:]
    assert _job_id(second)[1] == "SUCCEEDED"
    steps = training_steps(read_records(out / "metrics.jsonl"))
    assert sorted(steps) == [2], f"job 2 trained steps {sorted(steps)}; expected step 2 only (resumed from 1)"
    assert any(k.startswith("mapo/") for k in steps[2])
    assert (out / "checkpoints" / "latest_checkpointed_iteration.txt").read_text() == "2"


def test_fsdp_ranks_ran_on_both_nodes(jobs, ray_cluster):
    submission, _ = _job_id(jobs[3])
    nodes = _worker_nodes(ray_cluster.dashboard, submission)
    assert len(nodes) == 2, nodes


def test_too_few_gpu_nodes_stop_before_submitting(ray_cluster, tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ray_cluster.dashboard}
    cmd = [sys.executable, "-m", "mapo_verl", "smoke", "--out", str(tmp_path), "--launcher", "ray", "--nodes", "3"]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert f"the Ray cluster at {ray_cluster.dashboard} has 2 alive node(s), 2 with a GPU" in proc.stderr, proc.stderr
    assert not (tmp_path / "command.txt").exists(), "submitted anyway"
