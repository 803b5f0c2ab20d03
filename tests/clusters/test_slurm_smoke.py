"""`make smoke-slurm`'s path on a real, throwaway two-node Slurm (Debian's slurm-wlm; fake GPU gres), next to
another Ray cluster that must neither be joined nor disturbed.

One two-node job serves several assertions (it completed; FSDP workers ran under both Slurm nodes; a step logged
`mapo/*`; no Ray process left; the neighbour Ray alive). Then a failing job (a bad config key) and a `scancel`
mid-run. Needs root and Debian's packages (installed with apt when missing, as in CI); skips with the reason
elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mapo_verl_cpu.fixtures import slurm_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _environ(pid: str) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def ray_processes_of(conf: Path) -> dict[str, tuple[str, str]]:
    """pid -> (Slurm node, command line) of every Ray process started under the Slurm configured by ``conf``."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        env = _environ(pid)
        if env.get("SLURM_CONF") != str(conf):
            continue
        cmd = _cmdline(pid)
        if "ray" in cmd:
            found[pid] = (env.get("SLURMD_NODENAME", "?"), cmd)
    return found


@pytest.fixture(scope="module")
def slurm():
    try:
        slurm_cluster.ensure_installed()
    except slurm_cluster.SlurmClusterError as err:
        pytest.skip(str(err))
    with slurm_cluster.running(nodes=2) as cluster:  # its own folder under /tmp, removed after
        yield cluster


def _smoke(cluster, out: Path, *extra: str, neighbour=None) -> subprocess.Popen:
    env = {**cluster.env(), "RAY_AUTH_MODE": "disabled"}
    if neighbour:
        neighbour.own_pointer()
        env["RAY_ADDRESS"] = neighbour.address  # the smoke must not attach to it
    cmd = [sys.executable, "-m", "mapo_verl", "smoke", "--launcher", "slurm", "--nodes", "2", "--steps", "1",
           "--out", str(out), "--timeout", "600", *extra]  # fmt: skip
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def two_node_job(slurm, neighbour, tmp_path_factory, memory_claim):
    """One 2-node smoke job; while it runs, which Slurm node each Ray process runs under."""
    out = tmp_path_factory.mktemp("smoke-slurm")
    seen: dict[str, tuple[str, str]] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen.update(ray_processes_of(slurm.conf))
            time.sleep(1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with memory_claim("slurm", "smoke --launcher slurm"):
        proc = _smoke(slurm, out, neighbour=neighbour)
        output, _ = proc.communicate(timeout=900)
    stop.set()
    sampler.join(timeout=10)
    return proc.returncode, output, out, seen


def test_two_node_job_completes_with_mapo_metrics(two_node_job):
    code, output, out, _ = two_node_job
    assert code == 0, output[-4000:]
    assert "COMPLETED (ExitCode=0:0) on nodes n[1-2]" in output, output[-4000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    step = [r for r in records if r.get("step") == 1 and any(k.startswith("mapo/") for k in r.get("data", {}))]
    assert step, f"no step 1 with mapo/* metrics in {out / 'metrics.jsonl'}"
    log = (out / "main_ppo.log").read_text()
    assert "2/2 node(s) alive" in log


def test_fsdp_workers_ran_under_both_slurm_nodes(two_node_job):
    seen = two_node_job[3]
    workers = {node for node, cmd in seen.values() if "WorkerDict" in cmd}
    assert workers == {"n1", "n2"}, sorted(set(seen.values()))[:20]


def test_no_ray_process_left_and_the_neighbour_is_alive(two_node_job, slurm, neighbour):
    deadline = time.monotonic() + 60
    while ray_processes_of(slurm.conf) and time.monotonic() < deadline:
        time.sleep(1)
    assert not ray_processes_of(slurm.conf)
    assert neighbour.is_alive()


def test_bad_config_key_fails_with_the_key_named(two_node_job, slurm, tmp_path, memory_claim):
    with memory_claim("slurm", "smoke --launcher slurm (bad key)"):
        proc = _smoke(slurm, tmp_path / "out", "trainer.no_such_key_xyz=1")
        output, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0
    assert "FAILED (ExitCode=1:0)" in output, output[-3000:]
    assert "no_such_key_xyz" in output


def test_scancel_mid_run_leaves_nothing(two_node_job, slurm, tmp_path, memory_claim):
    with memory_claim("slurm", "smoke --launcher slurm (scancel)"):
        _cancel_mid_run(slurm, tmp_path)


def _cancel_mid_run(slurm, tmp_path: Path) -> None:
    proc = _smoke(slurm, tmp_path / "out")
    env = slurm.env()
    deadline = time.monotonic() + 300
    job = ""
    while time.monotonic() < deadline and not job:  # cancel once Ray runs under the job
        if ray_processes_of(slurm.conf):
            job = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True).stdout.strip()
        time.sleep(0.5)
    assert job, "the job never started Ray"
    subprocess.run(["scancel", job], env=env, check=True)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert f"slurm job {job}: CANCELLED" in output, output[-3000:]
    deadline = time.monotonic() + 60
    while ray_processes_of(slurm.conf) and time.monotonic() < deadline:
        time.sleep(1)
    assert not ray_processes_of(slurm.conf)
