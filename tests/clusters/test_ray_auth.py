"""The Ray head of ``scripts/ray_cluster.sh`` is closed by default: a real head (this test's pid, own ports, temp dir
and token file; any other Ray left alone) takes a job only with the cluster's token, its dashboard listens on the
head's address and not on every interface, a worker joins with the token from the shared file, and the token is on no
command line and in no log."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from .conftest import forget_pointer, free_port, stop

pytestmark = [pytest.mark.cluster, pytest.mark.ray]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ray_cluster.sh"
RAY = str(Path(sys.executable).parent / "ray")
#: the script as a user's shell runs it: no RAY_AUTH_MODE (the node fixture sets it to disabled), so its default holds
SCRIPT_WITH_ITS_DEFAULTS = ("env", "-u", "RAY_AUTH_MODE", "bash", str(SCRIPT))


@dataclass
class SecuredHead:
    dashboard: str
    dashboard_port: int
    gcs: str
    token_path: Path
    env: dict[str, str]
    log: Path


def _request(url: str, *, token: str | None = None, body: dict | None = None) -> tuple[int, str]:
    """(HTTP status, body) of a GET, or a POST of ``body`` as JSON; ``token`` as a bearer token."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _client_env(head: SecuredHead, **extra: str) -> dict[str, str]:
    """A shell of this user without the cluster's token settings (none inherited from CI's environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    return {**env, "PATH": head.env["PATH"], **extra}


@pytest.fixture(scope="module")
def secured_head(start_ray_node, tmp_path_factory) -> Iterator[SecuredHead]:
    """``scripts/ray_cluster.sh head`` with the script's defaults for authentication (no ``RAY_AUTH_MODE``; the
    token file created by the head) on 127.0.0.1 (``RAY_HEAD_IP``, as the nodes of one host reach it)."""
    shared = tmp_path_factory.mktemp("shared")
    token_path = shared / "ray" / "auth_token"  # absent: the head creates it
    port, dashboard_port = free_port(), free_port()
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHON": sys.executable,
        "RAY_PORT": str(port),
        "RAY_TEMP_DIR": f"/tmp/ray-auth-{os.getpid()}",
        "RAY_NUM_CPUS": "2",
        "RAY_NUM_GPUS": "0",
        "RAY_HEAD_IP": "127.0.0.1",
        "RAY_AUTH_TOKEN_PATH": str(token_path),  # the shared file (the default, ~/.ray/auth_token, left alone)
    }
    log = shared / "head.log"
    head = start_ray_node("head", f"--dashboard-port={dashboard_port}", f"--dashboard-agent-listen-port={free_port()}",
                          f"--ray-client-server-port={free_port()}", env=env, command=SCRIPT_WITH_ITS_DEFAULTS,
                          log=log)  # fmt: skip
    gcs = f"127.0.0.1:{port}"
    cluster = SecuredHead(f"http://127.0.0.1:{dashboard_port}", dashboard_port, gcs, token_path, env, log)
    deadline = time.monotonic() + 120
    while True:  # up when the job API answers at all (200, or 401 without the token)
        assert head.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"the head's dashboard did not come up:\n{log.read_text()[-3000:]}"
        try:
            _request(f"{cluster.dashboard}/api/jobs/")
            break
        except OSError:
            time.sleep(1)
    yield cluster
    stop(head)
    forget_pointer(gcs)
    shutil.rmtree(env["RAY_TEMP_DIR"], ignore_errors=True)


def _token(head: SecuredHead) -> str:
    return head.token_path.read_text().strip()


#: the job: a driver that joins the cluster from inside it, runs a task there and asks Ray's state API for the nodes
#: (as mapo_verl's node watch does in the job): each needs the token too
JOB = (
    "import ray; from ray.util.state import list_nodes; ray.init(); "
    "print('mapo-auth-job', ray.get(ray.remote(lambda: 6 * 7).remote()), 'nodes', len(list_nodes()))"
)


def _submit(head: SecuredHead, env: dict[str, str], submission: str) -> subprocess.CompletedProcess:
    """``ray job submit`` of ``JOB``, as a user's shell runs it; retried while the fresh head's job agent is not up
    yet."""
    cmd = [RAY, "job", "submit", "--address", head.dashboard, "--submission-id", submission, "--no-wait", "--",
           sys.executable, "-c", JOB]  # fmt: skip
    for _ in range(24):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        if "No available agent to submit job" not in proc.stdout + proc.stderr:
            return proc
        time.sleep(5)
    return proc


def test_the_head_writes_its_token_for_this_user_only(secured_head):
    assert secured_head.token_path.stat().st_mode & 0o777 == 0o600
    assert len(_token(secured_head)) >= 32


def test_a_job_without_the_token_is_refused(secured_head):
    url = f"{secured_head.dashboard}/api/jobs/"
    job = {"entrypoint": shlex.join([sys.executable, "-c", JOB])}
    assert _request(url, body=job)[0] == 401
    assert _request(url, token="not-the-token", body=job)[0] == 403
    proc = _submit(secured_head, _client_env(secured_head), "mapo-auth-refused")  # a shell without the token
    assert proc.returncode != 0, proc.stdout
    assert "401" in proc.stdout + proc.stderr or "Authentication" in proc.stdout + proc.stderr, proc.stderr[-2000:]
    status, body = _request(url, token=_token(secured_head))
    assert status == 200 and json.loads(body) == [], "a job was accepted without the token"


def test_a_job_with_the_token_runs(secured_head):
    env = _client_env(secured_head, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(secured_head.token_path))
    submission = "mapo-auth-accepted"
    proc = _submit(secured_head, env, submission)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    deadline = time.monotonic() + 120
    while True:
        status, body = _request(f"{secured_head.dashboard}/api/jobs/{submission}", token=_token(secured_head))
        assert status == 200, body
        state = json.loads(body)["status"]
        if state in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        assert time.monotonic() < deadline, f"job {submission} still {state}"
        time.sleep(1)
    assert state == "SUCCEEDED", body
    status, logs = _request(f"{secured_head.dashboard}/api/jobs/{submission}/logs", token=_token(secured_head))
    assert status == 200 and "mapo-auth-job 42 nodes 1" in logs, logs


def test_the_dashboard_listens_on_the_heads_address_only(secured_head):
    listening = {c.laddr.ip for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == secured_head.dashboard_port}  # fmt: skip
    assert listening == {"127.0.0.1"}, listening


def test_a_worker_joins_with_the_shared_token_and_not_without(secured_head, start_ray_node, tmp_path):
    missing = _client_env(secured_head, **{**secured_head.env, "RAY_AUTH_TOKEN_PATH": str(tmp_path / "no_token")})
    proc = subprocess.run(["bash", str(SCRIPT), "worker", "127.0.0.1", "--block"], env=missing, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.startswith("error: RAY_AUTH_TOKEN_PATH="), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    worker = start_ray_node("worker", "127.0.0.1", "--node-ip-address=127.0.0.1",
                            f"--dashboard-agent-listen-port={free_port()}", env=secured_head.env,
                            command=SCRIPT_WITH_ITS_DEFAULTS, log=tmp_path / "worker.log")  # fmt: skip
    try:
        code = "import ray,sys; ray.init(address=sys.argv[1]); print(sum(n['Alive'] for n in ray.nodes()))"
        env = _client_env(secured_head, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(secured_head.token_path))
        deadline = time.monotonic() + 120
        while True:
            alive = subprocess.run([sys.executable, "-c", code, secured_head.gcs], env=env, capture_output=True,
                                   text=True, timeout=120)  # fmt: skip
            if alive.returncode == 0 and alive.stdout.strip().splitlines()[-1] == "2":
                break
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, alive.stdout + alive.stderr[-2000:]
            time.sleep(2)
    finally:
        stop(worker)


def test_the_token_is_on_no_command_line_and_in_no_log(secured_head):
    token = _token(secured_head)
    for proc in psutil.process_iter(["cmdline"]):
        assert token not in " ".join(proc.info["cmdline"] or []), proc.info["cmdline"]
    assert token not in secured_head.log.read_text()
    for path in Path(secured_head.env["RAY_TEMP_DIR"]).rglob("*"):
        if path.is_file() and path.suffix in (".log", ".out", ".err"):
            assert token not in path.read_text(errors="replace"), path
