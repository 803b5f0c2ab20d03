"""The Ray runner: a :class:`RunSpec` submitted through the shipped ``scripts/ray_cluster.sh submit`` to a running
Ray cluster (its dashboard at ``RAY_ADDRESS``, default ``http://127.0.0.1:8265``), followed with ``ray job logs``
under a wall-clock deadline (``ray job stop`` when it passes); the outcome carries the job's status.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace

from mapo_verl.runs.local import progress_message
from mapo_verl.runs.spec import REPO_ROOT, RunSpec
from mapo_verl.runs.supervise import Outcome, run_supervised

RAY_SCRIPT = REPO_ROOT / "scripts" / "ray_cluster.sh"
#: the CPU run's variables that the job's runtime env needs (ray_cluster.sh forwards names in MAPO_FORWARD_ENV)
FORWARD = ("VERL_PLATFORM", "VERL_FILE_LOGGER_PATH", "HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "RAY_DEDUP_LOGS")
_SUBMISSION = re.compile(r"raysubmit_\w+")


class RayLaunchError(RuntimeError):
    """Submission failed; the message names what and where."""


def run_ray(
    spec: RunSpec, nodes: int, timeout: float | None, report: Callable[[str], None]
) -> tuple[Outcome, str, str]:
    """Submit ``spec`` on ``nodes`` nodes of the running cluster; (outcome, submission id, final job status)."""
    address = os.environ.get("RAY_ADDRESS", "http://127.0.0.1:8265")
    env = {**spec.env, "RAY_ADDRESS": address, "MAPO_FORWARD_ENV": " ".join(FORWARD)}
    args = [f"trainer.nnodes={nodes}", "trainer.n_gpus_per_node=1", *spec.overrides]
    spec.out.mkdir(parents=True, exist_ok=True)
    cmd = ["bash", str(RAY_SCRIPT), "submit", spec.config_name, *args]
    (spec.out / "command.txt").write_text(" ".join(cmd) + "\n")
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    found = _SUBMISSION.search(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not found:
        output = (proc.stdout + proc.stderr)[-3000:]
        raise RayLaunchError(f"scripts/ray_cluster.sh submit to {address} failed ({proc.returncode}):\n{output}")
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
        subprocess.run(["ray", "job", "stop", "--address", address, job_id], env=env, capture_output=True)
    status = ""
    while time.monotonic() - start < (timeout or 600) + 60:
        out = subprocess.run(["ray", "job", "status", "--address", address, job_id], env=env,
                             capture_output=True, text=True).stdout  # fmt: skip
        match = re.search(r"\b(SUCCEEDED|FAILED|STOPPED|RUNNING|PENDING)\b", out)
        status = match.group(1) if match else "UNKNOWN"
        if status not in ("RUNNING", "PENDING"):
            break
        time.sleep(2)
    return replace(outcome, returncode=0 if status == "SUCCEEDED" else 1), job_id, status
