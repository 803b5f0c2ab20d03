"""The Slurm runner: a :class:`RunSpec` submitted through the shipped, unmodified ``scripts/slurm_train.sbatch``.

``sbatch`` reaches whichever Slurm its environment names (``SLURM_CONF`` honoured; ``SBATCH_PARTITION``,
``SBATCH_ACCOUNT`` and the like add to the request). The request is sized from the command line (nodes, GPUs and
CPUs per node), checked against the partition's nodes (``sinfo``) before submission, and a job that Slurm says
can never start (``Reason=PartitionConfig`` and the like) is cancelled at once with the reason instead of pending
forever. The job is polled with ``scontrol`` under a wall-clock deadline (``scancel`` when it passes); its output
goes to ``OUT/main_ppo.log``. The outcome carries the job's exit status.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mapo_verl.supervise import TAIL_LINES, Outcome
from mapo_verl_cpu.runners import Placement, RunnerError
from mapo_verl_cpu.runners.local import progress_message
from mapo_verl_cpu.runners.spec import REPO_ROOT, RunSpec

SBATCH_SCRIPT = REPO_ROOT / "scripts" / "slurm_train.sbatch"
TERMINAL = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}
)
#: pending reasons that no amount of waiting resolves
NEVER_STARTS = frozenset(
    {"PartitionConfig", "PartitionNodeLimit", "BadConstraints", "PartitionTimeLimit", "AccountNotAllowed",
     "QOSNotAllowed", "InvalidAccount", "InvalidQOS", "ReqNodeNotAvail, UnavailableNodes"}
)  # fmt: skip


class SlurmError(RunnerError):
    """Submission or polling failed; the message names what and where."""


def sbatch_args(placement: Placement) -> list[str]:
    """The ``sbatch`` options that ask for ``placement`` (per node: its GPUs, and its CPUs for the one task)."""
    per_node = [f"--gpus-per-node={placement.gpus_per_node}", f"--cpus-per-task={placement.cpus_per_node}"]
    return [f"--nodes={placement.nodes}", *per_node]


@dataclass
class JobResult:
    """How a Slurm job ended, from ``scontrol show job``."""

    job_id: str
    state: str
    nodes: str
    exit_code: str
    reason: str = ""

    @property
    def returncode(self) -> int:
        status = int(self.exit_code.split(":")[0]) if self.exit_code.split(":")[0].isdigit() else 1
        return 0 if self.state == "COMPLETED" and status == 0 else (status or 1)


def _slurm(cmd: list[str], env: Mapping[str, str]) -> str:
    if shutil.which(cmd[0], path=env.get("PATH")) is None:
        raise SlurmError(f"{cmd[0]} not found on PATH: install Slurm's clients or run on a login node")
    proc = subprocess.run(cmd, env=dict(env), capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise SlurmError(f"{' '.join(cmd)} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def job_fields(job_id: str, env: Mapping[str, str]) -> dict[str, str]:
    """``scontrol show job -o JOB`` as a dict (JobState, Reason, NodeList, ExitCode, ...); {} once forgotten."""
    proc = subprocess.run(["scontrol", "show", "job", "-o", job_id], env=dict(env), capture_output=True, text=True)
    if proc.returncode != 0:
        return {}
    return dict(re.findall(r"(\w+)=(\S*)", proc.stdout))


def partition_nodes(env: Mapping[str, str]) -> list[tuple[str, int, int]]:
    """(node, CPUs, GPUs) of each node ``sbatch`` would use (``sinfo -N``; ``SBATCH_PARTITION`` honoured)."""
    cmd = ["sinfo", "-h", "-N", "-o", "%N %c %G"]
    if env.get("SBATCH_PARTITION"):
        cmd += ["-p", env["SBATCH_PARTITION"]]
    nodes = []
    for line in _slurm(cmd, env).splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        gpus = sum(int(m.group(1)) for m in re.finditer(r"gpu(?::[\w.-]+)*?:(\d+)", parts[2]))
        nodes.append((parts[0], int(parts[1].rstrip("+")), gpus))
    return sorted(set(nodes))


def unmet(placement: Placement, nodes: list[tuple[str, int, int]]) -> str | None:
    """Why ``placement`` can never be met on ``nodes``, or None."""
    fit = [n for n, cpus, gpus in nodes if cpus >= placement.cpus_per_node and gpus >= placement.gpus_per_node]
    if len(fit) >= placement.nodes:
        return None
    shown = ", ".join(f"{n} ({c} CPUs, {g} GPUs)" for n, c, g in nodes) or "none"
    return (
        f"{placement.nodes} node(s) with {placement.gpus_per_node} GPU(s) and {placement.cpus_per_node} CPUs each "
        f"are asked for ({' '.join(sbatch_args(placement))}); only {len(fit)} node(s) fit. Nodes: {shown}"
    )


def submit(spec: RunSpec, placement: Placement, env: Mapping[str, str]) -> str:
    """``sbatch`` the shipped script for ``spec``; its job id."""
    problem = unmet(placement, partition_nodes(env))
    if problem:
        raise SlurmError(f"this Slurm cannot run the job: {problem}")
    cmd = ["sbatch", "--parsable", *sbatch_args(placement), "--job-name=mapo-smoke", f"--output={spec.log_path}",
           str(SBATCH_SCRIPT), spec.config_name, *spec.overrides]  # fmt: skip
    spec.out.mkdir(parents=True, exist_ok=True)
    (spec.out / "command.txt").write_text(" ".join(cmd) + "\n")
    # the script finds the checkout as SLURM_SUBMIT_DIR: submit from the repository root
    proc = subprocess.run(cmd, env=dict(env), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise SlurmError(f"sbatch failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout.strip().split(";")[0]


def run(spec: RunSpec, placement: Placement, timeout: float | None, report: Callable[[str], None]) -> Outcome:
    """Submit ``spec``, follow its output, wait for the end (``scancel`` past ``timeout``); ``Outcome.job`` names
    the job, its state, exit code and nodes."""
    env = {**spec.env, "VENV": os.environ.get("VIRTUAL_ENV") or str(REPO_ROOT / ".venv")}
    start = time.monotonic()
    spec.log_path.unlink(missing_ok=True)
    job_id = submit(spec, placement, env)
    report(f"slurm job {job_id} submitted ({' '.join(sbatch_args(placement))}); output {spec.log_path}")
    timed_out, seen, last, fields = False, 0, None, {}
    tail: list[str] = []
    try:
        while True:
            fields = job_fields(job_id, env) or fields
            state = fields.get("JobState", "UNKNOWN")
            if spec.log_path.exists():
                lines = spec.log_path.read_text(errors="replace").splitlines()
                for line in lines[seen:]:
                    message = progress_message(line, spec.steps, spec.markers)
                    if message:
                        last = message
                        report(f"{message} ({time.monotonic() - start:.0f} s)")
                seen, tail = len(lines), lines[-TAIL_LINES:]
            if state in TERMINAL:
                break
            reason = fields.get("Reason", "")
            if state == "PENDING" and reason in NEVER_STARTS:
                subprocess.run(["scancel", job_id], env=env, capture_output=True)
                raise SlurmError(
                    f"slurm job {job_id} can never start (Reason={reason}): {' '.join(sbatch_args(placement))} does "
                    "not fit this partition's nodes (sinfo -N -o '%N %c %G'); cancelled"
                )
            if timeout is not None and time.monotonic() - start > timeout:
                timed_out = True
                report(f"timed out after {timeout:.0f} s; scancel {job_id}")
                subprocess.run(["scancel", job_id], env=env, capture_output=True)
                timeout = None  # now wait for Slurm to end it
            time.sleep(1.0)
    except KeyboardInterrupt:
        subprocess.run(["scancel", job_id], env=env, capture_output=True)
        raise
    job = JobResult(
        job_id=job_id,
        state=fields.get("JobState", "UNKNOWN"),
        nodes=fields.get("NodeList", "?"),
        exit_code=fields.get("ExitCode", "?"),
        reason=fields.get("Reason", ""),
    )
    return Outcome(
        returncode=job.returncode,
        seconds=time.monotonic() - start,
        timed_out=timed_out,
        tail=tail,
        last_progress=last,
        job=f"slurm job {job.job_id}: {job.state} (ExitCode={job.exit_code}) on nodes {job.nodes}",
    )
