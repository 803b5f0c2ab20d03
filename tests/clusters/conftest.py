"""Fixtures of the cluster tests: Ray nodes started by `ray start` (this test's pids, own ports and temp dirs), and
a neighbour, someone else's Ray on this machine that a smoke must neither join nor disturb."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

RAY = str(Path(sys.executable).parent / "ray")
POINTER = Path("/tmp/ray/ray_current_cluster")


def free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def alive_nodes(address: str) -> int:
    """How many nodes the Ray cluster at ``address`` (GCS host:port) reports alive; 0 when unreachable."""
    code = (
        "import ray,sys; ray.init(address=sys.argv[1], log_to_driver=False); "
        "print(sum(1 for n in ray.nodes() if n['Alive']))"
    )
    try:
        proc = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "RAY_AUTH_MODE": "disabled"})  # fmt: skip
    except subprocess.TimeoutExpired:
        return 0
    lines = proc.stdout.strip().splitlines()
    return int(lines[-1]) if proc.returncode == 0 and lines and lines[-1].isdigit() else 0


def wait_for_nodes(address: str, count: int, procs: Sequence[subprocess.Popen], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while alive_nodes(address) != count:
        dead = [p.args for p in procs if p.poll() is not None]
        assert not dead and time.monotonic() < deadline, f"Ray at {address}: {count} node(s) not alive; ended: {dead}"
        time.sleep(1)


def stop(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of one Ray node this test started (its `ray start`, raylet, GCS, workers): at once,
    where SIGTERM would have Ray drain the node for 30 s first."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def forget_pointer(address: str) -> None:
    """Leave no /tmp/ray/ray_current_cluster naming a cluster this test started and stopped."""
    try:
        if POINTER.read_text().strip().endswith(":" + address.rsplit(":", 1)[1]):
            POINTER.unlink()
    except OSError:
        pass


StartNode = Callable[..., subprocess.Popen]


@pytest.fixture(scope="session")
def start_ray_node() -> Iterator[StartNode]:
    """``start(*args, env=None, log=None, command=("ray", "start"))``: one ``command *args --block`` (a Ray node)
    in its own process group; every node started is stopped at the end of the session, by its pid."""
    started: list[subprocess.Popen] = []

    def start(
        *args: str, env: dict[str, str] | None = None, log: Path | None = None, command: Sequence[str] = ()
    ) -> subprocess.Popen:
        out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115  (closed with the process)
        proc = subprocess.Popen(
            [*(command or (RAY, "start")), *args, "--block", "--disable-usage-stats"],
            env={**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        stop(proc)


@dataclass
class Neighbour:
    proc: subprocess.Popen
    address: str

    def is_alive(self) -> bool:
        return self.proc.poll() is None and alive_nodes(self.address) == 1

    def own_pointer(self) -> None:
        """Make /tmp/ray/ray_current_cluster name this neighbour again (as its `ray start` left it), should a later
        Ray have replaced or removed it."""
        if not POINTER.is_file() or not POINTER.read_text().strip().endswith(":" + self.address.rsplit(":", 1)[1]):
            POINTER.parent.mkdir(parents=True, exist_ok=True)
            POINTER.write_text(self.address)


@pytest.fixture(scope="module")
def neighbour(start_ray_node) -> Iterator[Neighbour]:
    """Someone else's Ray on this machine: a head on its own port and temp dir. `ray start` writes Ray's pointer
    /tmp/ray/ray_current_cluster, which a smoke must not follow either."""
    port = free_port()
    temp = f"--temp-dir=/tmp/ray-nb-{os.getpid()}"
    proc = start_ray_node("--head", "--node-ip-address=127.0.0.1", f"--port={port}", temp, "--num-cpus=1",
                          "--include-dashboard=false", f"--dashboard-agent-listen-port={free_port()}",
                          f"--ray-client-server-port={free_port()}")  # fmt: skip
    address = f"127.0.0.1:{port}"
    wait_for_nodes(address, 1, [proc])
    yield Neighbour(proc, address)
    stop(proc)
    forget_pointer(address)
    shutil.rmtree(temp.split("=", 1)[1], ignore_errors=True)


@dataclass
class RayCluster:
    """A two-node Ray cluster started with the shipped ``scripts/ray_cluster.sh head`` / ``worker``."""

    gcs: str
    dashboard: str
    head: subprocess.Popen
    worker: subprocess.Popen
    start_worker: Callable[[], subprocess.Popen]
    #: the custom resources only the head / only the worker node has
    head_resource: str = "mapo_test_head"
    worker_resource: str = "mapo_test_worker"

    def alive_nodes(self) -> int:
        return alive_nodes(self.gcs)

    def lose_worker(self) -> None:
        """SIGKILL every process of the worker node (its `ray start`, raylet, workers): a node lost."""
        stop(self.worker)

    def restart_worker(self) -> None:
        self.worker = self.start_worker()
        wait_for_nodes(self.gcs, 2, [self.head, self.worker])


#: each node's custom resources: a job can pin its driver to the head and an actor (TQ's storage) to the worker
HEAD_RESOURCES = json.dumps({RayCluster.head_resource: 1})
WORKER_RESOURCES = json.dumps({RayCluster.worker_resource: 1})


@pytest.fixture(scope="module")
def ray_cluster(start_ray_node, tmp_path_factory) -> Iterator[RayCluster]:
    """Head and one worker on this machine, each with 8 logical CPUs and one logical GPU (what the trainer's
    resource pool asks per node), own GCS and dashboard ports and temp dir; `ray` from this interpreter. The head
    has one unit of ``RayCluster.head_resource``, the worker of ``RayCluster.worker_resource``."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "ray_cluster.sh"
    logs = tmp_path_factory.mktemp("ray-cluster")
    port, dashboard = free_port(), free_port()
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "RAY_PORT": str(port),
        "RAY_TEMP_DIR": f"/tmp/ray-ci-{os.getpid()}",
        "RAY_NUM_CPUS": "8",
        "RAY_NUM_GPUS": "1",
        "RAY_HEAD_IP": "127.0.0.1",
    }
    command = ("bash", str(script))
    # Every port of its own: Ray's fixed defaults (dashboard agent 52365, Ray client 10001) are taken by any other
    # Ray head on this host, and a head without its agent takes no job ("No available agent to submit job").
    head = start_ray_node("head", f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={free_port()}",
                          f"--ray-client-server-port={free_port()}", f"--resources={HEAD_RESOURCES}", env=env,
                          command=command, log=logs / "head.log")  # fmt: skip
    gcs = f"127.0.0.1:{port}"
    wait_for_nodes(gcs, 1, [head])
    count = iter(range(1, 100))

    def start_worker() -> subprocess.Popen:
        log = logs / f"worker-{next(count)}.log"
        return start_ray_node(
            "worker",
            "127.0.0.1",
            "--node-ip-address=127.0.0.1",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--resources={WORKER_RESOURCES}",
            env=env,
            command=command,
            log=log,
        )

    cluster = RayCluster(gcs, f"http://127.0.0.1:{dashboard}", head, start_worker(), start_worker)
    wait_for_nodes(gcs, 2, [head, cluster.worker])
    yield cluster
    stop(cluster.worker)
    stop(head)
    forget_pointer(gcs)
    shutil.rmtree(env["RAY_TEMP_DIR"], ignore_errors=True)
