"""The Ray runner: a :class:`RunSpec` submitted through the shipped ``scripts/ray_cluster.sh submit`` to a running
Ray cluster (its dashboard at ``RAY_ADDRESS``, default ``http://127.0.0.1:8265``), followed with ``ray job logs``
under a wall-clock deadline (``ray job stop`` when it passes); the outcome carries the job's status.

Before submitting, the cluster is asked (Ray's state API, through the dashboard) for its alive nodes: a run on N
nodes with one GPU each needs N alive nodes with a ``GPU`` resource, and otherwise stops with an error naming the
address and what it found, instead of a job waiting forever for its placement group.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace

from mapo_verl.supervise import Outcome, run_supervised
from mapo_verl_cpu.runners import Placement, RunnerError
from mapo_verl_cpu.runners.local import progress_message
from mapo_verl_cpu.runners.spec import REPO_ROOT, RunSpec

RAY_SCRIPT = REPO_ROOT / "scripts" / "ray_cluster.sh"
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
#: the CPU run's variables that the job's runtime env needs (ray_cluster.sh forwards names in MAPO_FORWARD_ENV)
FORWARD = ("VERL_PLATFORM", "VERL_FILE_LOGGER_PATH", "HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "RAY_DEDUP_LOGS")
_SUBMISSION = re.compile(r"raysubmit_\w+")
FINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class RayJobError(RunnerError):
    """The cluster cannot take the run, or submission failed; the message names what and where."""


def gpu_nodes(address: str) -> tuple[int, int]:
    """(alive nodes, alive nodes with at least one ``GPU``) of the cluster whose dashboard is at ``address``."""
    from ray.util.state import list_nodes

    try:
        nodes = list_nodes(address=address, detail=True, limit=10_000, timeout=30)
    except Exception as err:  # connection refused, wrong port, not a dashboard
        raise RayJobError(f"no Ray dashboard answers at {address} (RAY_ADDRESS): {err}") from err
    alive = [n for n in nodes if n.state == "ALIVE"]
    return len(alive), sum(1 for n in alive if (n.resources_total or {}).get("GPU", 0) >= 1)


def preflight(address: str, nodes: int) -> str:
    """A line on the cluster when it can take a run on ``nodes`` nodes of one GPU; else :class:`RayJobError`."""
    alive, with_gpu = gpu_nodes(address)
    if with_gpu < nodes:
        raise RayJobError(
            f"the Ray cluster at {address} has {alive} alive node(s), {with_gpu} with a GPU; the run asks for "
            f"{nodes} node(s) x 1 GPU (start more workers: scripts/ray_cluster.sh worker HEAD_IP, or pass --nodes)"
        )
    return f"Ray cluster at {address}: {alive} alive node(s), {with_gpu} with a GPU"


def job_status(address: str, job_id: str) -> str:
    """The job's status (``SUCCEEDED``, ``FAILED``, ``STOPPED``, ``RUNNING``, ``PENDING``) from Ray's job API; the
    ``ray job status`` command prints no status word for a failed job, only "Job '...' failed"."""
    from ray.job_submission import JobSubmissionClient

    try:
        return str(JobSubmissionClient(address).get_job_status(job_id).value)
    except Exception:  # the dashboard went away (the cluster stopped)
        return "UNKNOWN"


def run(spec: RunSpec, placement: Placement, timeout: float | None, report: Callable[[str], None]) -> Outcome:
    """Submit ``spec`` on ``placement.nodes`` nodes of the running cluster; ``Outcome.job`` names the submission and
    its final status."""
    nodes = placement.nodes
    address = os.environ.get("RAY_ADDRESS", DEFAULT_ADDRESS)
    report(preflight(address, nodes))
    bindir = os.path.dirname(spec.python)  # `ray`, the pre-flight check and the job's `python`: this interpreter's
    env = {
        **spec.env,
        "RAY_ADDRESS": address,
        # the user's own names too (TransferQueue's timeouts, a tracker's settings): see scripts/ray_cluster.sh
        "MAPO_FORWARD_ENV": " ".join(dict.fromkeys((*FORWARD, *spec.env.get("MAPO_FORWARD_ENV", "").split()))),
        "PYTHON": spec.python,
        "PATH": os.pathsep.join([bindir, spec.env.get("PATH", os.environ.get("PATH", ""))]),
    }
    args = [f"trainer.nnodes={nodes}", "trainer.n_gpus_per_node=1", *spec.overrides]
    spec.out.mkdir(parents=True, exist_ok=True)
    cmd = ["bash", str(RAY_SCRIPT), "submit", spec.config_name, *args]
    (spec.out / "command.txt").write_text(" ".join(cmd) + "\n")
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    found = _SUBMISSION.search(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not found:
        output = (proc.stdout + proc.stderr)[-3000:]
        raise RayJobError(f"scripts/ray_cluster.sh submit to {address} failed ({proc.returncode}):\n{output}")
    job_id = found.group(0)
    report(f"ray job {job_id} submitted to {address}; following its logs")
    start = time.monotonic()
    outcome = run_supervised(
        ["ray", "job", "logs", "--address", address, "--follow", job_id],
        log_path=spec.log_path,
        env=env,
        cwd=REPO_ROOT,
        timeout=timeout,
        progress=lambda line: progress_message(line, spec.steps, spec.markers),
        report=report,
    )
    if outcome.timed_out:
        subprocess.run(["ray", "job", "stop", "--address", address, job_id], env=env, capture_output=True, timeout=120)
    status = job_status(address, job_id)
    while status not in FINAL and time.monotonic() - start < (timeout or 600) + 60:
        time.sleep(2)
        status = job_status(address, job_id)
    return replace(outcome, returncode=0 if status == "SUCCEEDED" else 1, job=f"ray job {job_id}: {status}")
