"""A throwaway Slurm on this machine: ``slurmctld`` and N ``slurmd`` (fake nodes ``n1..nN``), each with a fake GPU.

``python -m mapo_verl.runs.local_slurm [smoke options]`` (``make smoke-slurm``) starts it, runs
``python -m mapo_verl smoke --launcher slurm --nodes N`` against it (``SLURM_CONF`` points the clients at it), and
stops every daemon it started, by pid. Everything lives in a temporary folder: its own ``munged`` (own socket),
config, state, spools, logs and ports, so it touches neither /etc/slurm nor another Slurm or munge on the host.
Needs Debian's ``slurm-wlm`` and ``munge``: installed with apt when missing and running as root, otherwise it stops
with the reason. The fake GPU is a character device (``mknod c 1 3``, i.e. /dev/null) named by gres.conf
(docs/training.md, "A throwaway Slurm").
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("slurmctld", "slurmd", "munged")
SBIN = Path("/usr/sbin")
MUNGE_KEY = Path("/etc/munge/munge.key")


class LocalSlurmError(RuntimeError):
    """The throwaway cluster cannot be set up here; the message says why."""


def _which(name: str) -> str | None:
    return shutil.which(name) or (str(SBIN / name) if (SBIN / name).exists() else None)


def missing_reason() -> str | None:
    """Why the throwaway cluster cannot run here without installing anything, or None."""
    missing = [d for d in (*DAEMONS, "sbatch") if _which(d) is None]
    if missing:
        return f"{', '.join(missing)} not found (Debian packages {' '.join(PACKAGES)})"
    if os.geteuid() != 0:
        return "the slurmd daemons run jobs as any user and must start as root"
    if not MUNGE_KEY.is_file():
        return f"{MUNGE_KEY} missing (reinstall munge)"
    return None


def ensure_installed(report: Callable[[str], None] = print) -> None:
    """Install slurm-wlm and munge with apt when missing; a :class:`LocalSlurmError` where that cannot be done."""
    reason = missing_reason()
    if reason is None:
        return
    if os.geteuid() != 0:
        raise LocalSlurmError(f"a local Slurm needs root: {reason}")
    if shutil.which("apt-get") is None:
        raise LocalSlurmError(f"{reason}; no apt-get here to install {' '.join(PACKAGES)}")
    report(f"installing {' '.join(PACKAGES)} from Debian's packages ({reason}) ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]
    for cmd in (["apt-get", "update", "-qq"], install):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise LocalSlurmError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    reason = missing_reason()
    if reason:
        raise LocalSlurmError(f"after installing {' '.join(PACKAGES)}: {reason}")


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that are free now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def slurm_conf(root: Path, host: str, ports: Sequence[int], nodes: int, cpus: int, memory_mb: int) -> str:
    """slurm.conf for ``nodes`` fake nodes on this host, every path under ``root``."""
    node_lines = [
        f"NodeName=n{i} NodeHostname={host} NodeAddr=127.0.0.1 Port={ports[i]} CPUs={cpus} "
        f"RealMemory={memory_mb} Gres=gpu:1 State=UNKNOWN"
        for i in range(1, nodes + 1)
    ]
    return "\n".join(
        [
            "ClusterName=mapo-local",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={ports[0]}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={root / 'munge' / 'munge.socket'}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}/%n",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root}/slurmd-%n.pid",
            f"SlurmctldLogFile={root / 'slurmctld.log'}",
            f"SlurmdLogFile={root}/slurmd-%n.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SlurmdParameters=config_overrides",
            "GresTypes=gpu",
            "ReturnToService=2",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "KillWait=10",
            "MinJobAge=600",
            "InactiveLimit=0",
            *node_lines,
            f"PartitionName=local Nodes=n[1-{nodes}] Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


@dataclass
class LocalSlurm:
    """A running throwaway cluster: its folder, config and the pid files of the daemons it started."""

    root: Path
    nodes: int
    pid_files: list[Path] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def env(self) -> dict[str, str]:
        """The environment for Slurm's clients (sbatch, squeue, scontrol) to reach this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def pids(self) -> list[int]:
        """The daemons' pids, from their pid files (those still readable)."""
        out = []
        for path in self.pid_files:
            with contextlib.suppress(OSError, ValueError):
                out.append(int(path.read_text().split()[0]))
        return out

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM each daemon this cluster started (by pid), SIGKILL those alive after ``grace`` seconds."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for pid in pids:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _run(cmd: Sequence[str], env: dict[str, str] | None = None) -> None:
    """Run a daemon's start command; a :class:`LocalSlurmError` with its output when it fails."""
    proc = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()[-1500:]
        raise LocalSlurmError(f"{' '.join(str(c) for c in cmd)} exited with {proc.returncode}: {out}")


def _wait_for(what: str, test: Callable[[], bool], timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-1500:] if log and log.exists() else ""
            raise LocalSlurmError(f"{what} within {timeout:.0f} s" + (f"; end of {log}:\n{tail}" if tail else ""))
        time.sleep(0.2)


def start(root: Path, nodes: int = 2, cpus: int = 8, memory_mb: int = 8000, timeout: float = 60.0) -> LocalSlurm:
    """Start munged, slurmctld and ``nodes`` slurmd under ``root``; return once every node is idle."""
    reason = missing_reason()
    if reason:
        raise LocalSlurmError(f"cannot start a local Slurm: {reason}")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # munged runs as the munge user and must reach its socket folder
    cluster = LocalSlurm(root=root, nodes=nodes)
    try:
        munge_dir = root / "munge"
        munge_dir.mkdir(mode=0o755)
        shutil.chown(munge_dir, "munge", "munge")
        sock = munge_dir / "munge.socket"
        cluster.pid_files.append(munge_dir / "munged.pid")
        _run(["runuser", "-u", "munge", "--", _which("munged"), f"--socket={sock}",
              f"--pid-file={munge_dir / 'munged.pid'}", f"--log-file={munge_dir / 'munged.log'}",
              f"--seed-file={munge_dir / 'munged.seed'}"])  # fmt: skip
        _wait_for("munged did not open its socket", sock.exists, 10, munge_dir / "munged.log")

        for sub in ("state", *(f"spool/n{i}" for i in range(1, nodes + 1))):
            (root / sub).mkdir(parents=True)
        gpu = root / "fake-gpu0"
        os.mknod(gpu, 0o666 | 0o020000, os.makedev(1, 3))  # a character device (/dev/null's numbers)
        host = socket.gethostname()
        cluster.conf.write_text(slurm_conf(root, host, free_ports(nodes + 1), nodes, cpus, memory_mb))
        (root / "gres.conf").write_text(f"NodeName=n[1-{nodes}] Name=gpu File={gpu}\n")
        env = cluster.env()
        cluster.pid_files.append(root / "slurmctld.pid")
        _run([_which("slurmctld"), "-f", cluster.conf], env)
        for i in range(1, nodes + 1):
            cluster.pid_files.append(root / f"slurmd-n{i}.pid")
            _run([_which("slurmd"), "-f", cluster.conf, "-N", f"n{i}"], env)

        def all_idle() -> bool:
            proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=env, capture_output=True, text=True)
            states = [line.split()[1] for line in proc.stdout.splitlines() if line.strip()]
            return len(states) == nodes and all(s == "idle" for s in states)

        _wait_for(f"the {nodes} node(s) were not idle", all_idle, timeout, root / "slurmctld.log")
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def running(nodes: int = 2, cpus: int = 8, root: Path | None = None) -> Iterator[LocalSlurm]:
    """A throwaway cluster for the ``with`` block; its daemons are stopped and its folder removed after."""
    own = root is None
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="mapo-slurm-"))
        root.chmod(0o755)  # munged (the munge user) must reach its socket below
    cluster = start(root / "cluster" if own else root, nodes=nodes, cpus=cpus)
    try:
        yield cluster
    finally:
        cluster.stop()
        if own:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``make smoke-slurm``: a local N-node Slurm, the smoke through the shipped sbatch script, everything stopped."""
    args = list(sys.argv[1:] if argv is None else argv)
    nodes = 2
    if "--nodes" in args:
        nodes = int(args[args.index("--nodes") + 1])
    else:
        args = ["--nodes", str(nodes), *args]
    start_s = time.monotonic()
    try:
        ensure_installed(lambda m: print(f"[smoke-slurm] {m}", flush=True))
        with running(nodes=nodes) as cluster:
            print(f"[smoke-slurm] local Slurm of {nodes} node(s) up in {time.monotonic() - start_s:.0f} s "
                  f"(SLURM_CONF={cluster.conf})", flush=True)  # fmt: skip
            cmd = [sys.executable, "-m", "mapo_verl", "smoke", "--launcher", "slurm", *args]
            code = subprocess.run(cmd, env=cluster.env()).returncode
    except LocalSlurmError as err:
        print(f"[smoke-slurm] error: {err}", file=sys.stderr)
        return 2
    print(f"[smoke-slurm] daemons stopped; {time.monotonic() - start_s:.0f} s in all", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
