"""``python -m mapo_verl smoke --launcher ray`` on a local two-node Ray cluster started with the shipped
``scripts/ray_cluster.sh head`` / ``worker`` (this test's pids, own ports and temp dir, one logical GPU a node),
submitted through ``scripts/ray_cluster.sh submit`` to verl's real trainer, with a worker node lost mid-run.

Job 1 (2 steps, a checkpoint every step, no validation, ``trainer.resume_mode=auto``) loses its worker node
(SIGKILL to the node's processes) once step 1 is checkpointed and logged, while step 2 runs. It is the worst case:
TransferQueue's storage unit is pinned to the worker (``required_node_resource``), so the step's data is lost with
the node and verl's requests to it wait out TransferQueue's time limit (``TQ_SIMPLE_STORAGE_SEND_RECV_TIMEOUT``,
20 s here, forwarded with ``MAPO_FORWARD_ENV``); and one of two agent-loop workers is on the worker (verl places them
round-robin over the nodes), whose prompts verl's replay buffer would wait for forever. The job must end FAILED, not
hang: verl's own error or ``scripts/job_entry.sh``'s node watch ends it. The worker is started again and the same
command resubmitted: job 2 resumes from ``global_step_1``, trains step 2 with ``mapo/*`` logged, SUCCEEDED, with its
two FSDP ranks on the two nodes. The last test shows the node watch alone: of two jobs waiting on an actor of a lost
node, the watched one fails and the unwatched one keeps running.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mapo_verl.verl_log import read_records, training_steps
from mapo_verl_cpu.runners.ray_job import FINAL

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.slow, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "ray_cluster.sh"
ARGS = ("--launcher", "ray", "--nodes", "2", "--steps", "2", "trainer.save_freq=1", "trainer.test_freq=-1",
        "trainer.val_before_train=False", "trainer.resume_mode=auto",
        "actor_rollout_ref.rollout.agent.num_workers=2")  # fmt: skip


#: seconds TransferQueue waits for one answer of a storage unit (3 tries); its default is 200
TQ_TIMEOUT_S = 20


def _smoke(cluster, out: Path, timeout: int) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": cluster.dashboard,
           "TQ_SIMPLE_STORAGE_SEND_RECV_TIMEOUT": str(TQ_TIMEOUT_S),
           "MAPO_FORWARD_ENV": "TQ_SIMPLE_STORAGE_SEND_RECV_TIMEOUT",
           "RAY_ENTRYPOINT_RESOURCES": json.dumps({cluster.head_resource: 1})}  # fmt: skip
    storage_on_the_worker = f"+transfer_queue.backend.SimpleStorage.required_node_resource={cluster.worker_resource}"
    cmd = [sys.executable, "-m", "mapo_verl", "smoke", "--out", str(out), "--timeout", str(timeout), *ARGS,
           storage_on_the_worker]  # fmt: skip
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


#: verl's console line for a finished step 1 (printed after its checkpoint is saved)
STEP_1_LOGGED = "step:1 - "


def _job_id(output: str) -> tuple[str, str]:
    found = re.search(r"ray job (raysubmit_\w+): (\w+)", output)
    assert found, output[-4000:]
    return found.group(1), found.group(2)


def _job_actors(dashboard: str, submission_id: str) -> list[tuple[str, str]]:
    """(class name, Ray node id) of each actor of the job."""
    from ray.job_submission import JobSubmissionClient
    from ray.util.state import list_actors

    job = JobSubmissionClient(dashboard).get_job_info(submission_id).job_id
    actors = list_actors(address=dashboard, filters=[("job_id", "=", job)], detail=True, limit=1000)
    return [(a.class_name, a.node_id) for a in actors]


def _worker_nodes(dashboard: str, submission_id: str) -> set[str]:
    """The Ray node ids of the job's FSDP workers (verl's WorkerDict actors)."""
    return {node for name, node in _job_actors(dashboard, submission_id) if "WorkerDict" in name}


def _node_with(dashboard: str, resource: str) -> str:
    from ray.util.state import list_nodes

    nodes = list_nodes(address=dashboard, detail=True, limit=100)
    return next(n.node_id for n in nodes if n.state == "ALIVE" and (n.resources_total or {}).get(resource))


@pytest.fixture(scope="module")
def jobs(ray_cluster, tmp_path_factory, memory_claim):
    """Job 1 with its worker node lost after the step-1 checkpoint, then job 2 (the same command) to the end."""
    with memory_claim("ray-cluster", "smoke --launcher ray (a node lost, then resubmitted)"):
        return _lose_a_node_then_resubmit(ray_cluster, tmp_path_factory.mktemp("smoke-ray"))


def _lose_a_node_then_resubmit(ray_cluster, out: Path) -> tuple:
    tracker, log = out / "checkpoints" / "latest_checkpointed_iteration.txt", out / "main_ppo.log"
    # the node's loss must end it (FAILED) well within this limit, even with another worker's job on the cores
    proc = _smoke(ray_cluster, out, timeout=400)
    deadline = time.monotonic() + 600
    while not (tracker.is_file() and tracker.read_text() == "1" and STEP_1_LOGGED in log.read_text()):
        assert proc.poll() is None, f"job 1 ended before checkpointing step 1:\n{proc.stdout.read()[-4000:]}"
        assert time.monotonic() < deadline, "job 1 never checkpointed and logged step 1"
        time.sleep(0.2)
    submission = re.search(r"raysubmit_\w+", log.read_text()).group(0)
    worker = _node_with(ray_cluster.dashboard, ray_cluster.worker_resource)
    lost = sorted(name for name, node in _job_actors(ray_cluster.dashboard, submission) if node == worker)
    ray_cluster.lose_worker()
    lost_at = time.monotonic()
    first = proc.communicate(timeout=900)[0]
    first_log = log.read_text()
    watch = "the node watch" if "mapo_verl node watch: Ray node" in first_log else "verl"
    print(f"job 1 ended {time.monotonic() - lost_at:.0f} s after its worker node was lost with {', '.join(lost)} "
          f"({watch} ended it)")  # fmt: skip
    (out / "main_ppo.job1.log").write_text(first_log)  # job 2 writes main_ppo.log anew
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


def test_the_users_forwarded_variables_reach_the_job(jobs, ray_cluster):
    """``MAPO_FORWARD_ENV`` names (TransferQueue's time limit here) join the smoke's own in the job's runtime env."""
    from ray.job_submission import JobSubmissionClient

    submission, _ = _job_id(jobs[3])
    env_vars = JobSubmissionClient(ray_cluster.dashboard).get_job_info(submission).runtime_env["env_vars"]
    assert env_vars["TQ_SIMPLE_STORAGE_SEND_RECV_TIMEOUT"] == str(TQ_TIMEOUT_S)
    assert env_vars["VERL_PLATFORM"] == "cpu"  # the smoke's own FORWARD still there


#: a driver that puts an actor on the worker node, then waits as verl's replay buffer does: without ever asking it
ACTOR_ON_THE_WORKER = (
    "import time, ray\n"
    "ray.init()\n"
    "@ray.remote(num_cpus=0, resources={{'{worker}': 0.01}})\n"
    "class OnTheWorker:\n"
    "    def node(self):\n"
    "        return ray.get_runtime_context().get_node_id()\n"
    "actor = OnTheWorker.remote()  # held: an actor without a handle ends (OUT_OF_SCOPE)\n"
    "print('READY', 'on node', ray.get(actor.node.remote()), flush=True)\n"
    "time.sleep(900)\n"
)
#: the driver's line once its actor runs (Ray's log repeats the entry point, so the words are apart in the source)
READY = re.compile(r"READY on node [0-9a-f]{56}")


def test_the_node_watch_ends_a_job_that_lost_a_node_and_only_that(ray_cluster):
    """Two jobs wait forever on an actor on the worker node, one under ``scripts/job_entry.sh``'s node watch: when
    the node is lost, the watched job ends FAILED (exit 75) naming the node and the actor; the unwatched one, which
    nothing tells, is still running."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(ray_cluster.dashboard)
    driver = shlex.quote(ACTOR_ON_THE_WORKER.format(worker=ray_cluster.worker_resource))
    options = {"entrypoint_resources": {ray_cluster.head_resource: 0.01},
               "runtime_env": {"env_vars": {"MAPO_NODE_WATCH_INTERVAL": "2", "RAY_AUTH_MODE": "disabled"}}}  # fmt: skip
    watched = client.submit_job(entrypoint=f"{sys.executable} -m mapo_verl.node_watch -- {sys.executable} -c "
                                f"{driver}", **options)  # fmt: skip
    unwatched = client.submit_job(entrypoint=f"{sys.executable} -c {driver}", **options)
    deadline = time.monotonic() + 180
    while not all(READY.search(client.get_job_logs(job)) for job in (watched, unwatched)):
        assert time.monotonic() < deadline, [client.get_job_logs(job)[-2000:] for job in (watched, unwatched)]
        assert client.get_job_status(watched).value in ("PENDING", "RUNNING"), client.get_job_logs(watched)
        time.sleep(1)
    worker = _node_with(ray_cluster.dashboard, ray_cluster.worker_resource)
    try:
        ray_cluster.lose_worker()
        lost_at = time.monotonic()
        while client.get_job_status(watched).value not in FINAL and time.monotonic() < lost_at + 180:
            time.sleep(1)
        print(f"the watched job ended {time.monotonic() - lost_at:.0f} s after the node was lost")
        info, logs = client.get_job_info(watched), client.get_job_logs(watched)
        assert info.status.value == "FAILED", logs[-3000:]
        assert "exit code 75" in info.message, info.message
        assert f"mapo_verl node watch: Ray node {worker} at " in logs, logs[-3000:]
        assert "with this job's OnTheWorker on it" in logs
        assert client.get_job_status(unwatched).value == "RUNNING"
    finally:
        for job in (watched, unwatched):  # an entry point outlives its cluster (Ray starts it in its own session)
            client.stop_job(job)
        ray_cluster.restart_worker()
