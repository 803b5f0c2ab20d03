"""The node watch of a Ray job's entry point: which dead actors mean a lost node, and what the watch does then.

The records below have the shape Ray 2.60's state API gives (``list_actors(detail=True)``), as seen for an actor
whose worker node was SIGKILLed; the real cluster case is ``tests/clusters/test_ray_launcher.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from mapo_verl.node_watch import (
    EXIT_NODE_LOST,
    DeadActor,
    lost_nodes,
    main,
    submission_id,
    watch,
)

NODE = "725cc76ded6318fbd791201c39f74483b4374157524ac8e80b818167"


def died_with_node(class_name: str, node: str = NODE, ip: str = "10.0.0.7") -> DeadActor:
    context = {
        "error_message": f"The actor died because its node has died. Node Id: {node}",
        "node_ip_address": ip,
        "class_name": class_name,
        "node_death_info": {"reason": "UNEXPECTED_TERMINATION",
                            "reason_message": "health check failed due to missing too many heartbeats"},
        "reason": "NODE_DIED",
    }  # fmt: skip
    return DeadActor(class_name, node, {"actor_died_error_context": context})


def ended_on_a_live_node(class_name: str, reason: str, node: str = "b" * 56) -> DeadActor:
    return DeadActor(class_name, node, {"actor_died_error_context": {"reason": reason, "node_ip_address": "10.0.0.8"}})


def test_actors_that_died_with_their_node_name_it_once_with_every_actor():
    lost = lost_nodes([died_with_node("AgentLoopWorkerTQ"), died_with_node("WorkerDict"),
                       died_with_node("WorkerDict")])  # fmt: skip
    assert len(lost) == 1
    assert (lost[0].node_id, lost[0].address) == (NODE, "10.0.0.7")
    assert lost[0].actors == ("AgentLoopWorkerTQ", "WorkerDict")
    message = lost[0].message()
    assert NODE in message and "10.0.0.7" in message and "AgentLoopWorkerTQ, WorkerDict" in message
    assert "missing too many heartbeats" in message and f"exit {EXIT_NODE_LOST}" in message
    assert "trainer.resume_mode=auto" in message


@pytest.mark.parametrize("reason", ["RAY_KILL", "OUT_OF_SCOPE", "WORKER_DIED", "USER_KILL"])
def test_actors_that_ended_on_a_live_node_do_not_count(reason):
    assert lost_nodes([ended_on_a_live_node("RewardLoopWorker", reason)]) == []


def test_actors_without_a_death_cause_do_not_count():
    assert lost_nodes([DeadActor("Probe", NODE, None), DeadActor("Probe", NODE, {})]) == []


def test_two_lost_nodes_are_two_findings():
    lost = lost_nodes([died_with_node("WorkerDict", "a" * 56, "10.0.0.1"), died_with_node("WorkerDict", NODE)])
    assert sorted(n.address for n in lost) == ["10.0.0.1", "10.0.0.7"]


def test_the_submission_comes_from_the_job_config_ray_gives_the_entry_point():
    config = {"runtime_env": {}, "metadata": {"job_submission_id": "raysubmit_abc", "job_name": "raysubmit_abc"}}
    assert submission_id({"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps(config)}) == "raysubmit_abc"
    assert submission_id({}) is None
    assert submission_id({"RAY_JOB_CONFIG_JSON_ENV_VAR": "not json"}) is None


class Cluster:
    """What the watch reads of Ray, scripted: the job's dead actors at each look (the last one repeats)."""

    def __init__(self, *looks: list[DeadActor]) -> None:
        self.looks = list(looks)
        self.count = 0

    def dead_actors(self) -> list[DeadActor]:
        self.count += 1
        if isinstance(self.looks[0], Exception):
            raise self.looks.pop(0)
        return self.looks.pop(0) if len(self.looks) > 1 else self.looks[0]


SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]


def test_a_lost_node_ends_the_command_and_says_so():
    said: list[str] = []
    start = time.monotonic()
    cluster = Cluster([ended_on_a_live_node("Probe", "RAY_KILL")], [died_with_node("WorkerDict")])
    code = watch(SLEEP, cluster, interval=0.2, grace=5, say=said.append)
    assert code == EXIT_NODE_LOST
    assert time.monotonic() - start < 30  # not the command's 120 s
    assert cluster.count == 2 and len(said) == 1 and NODE in said[0]


def test_the_commands_own_status_is_passed_on_and_a_signal_as_128_plus_n():
    quiet = Cluster([])
    assert watch([sys.executable, "-c", "raise SystemExit(3)"], quiet, interval=0.2) == 3
    kill_self = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    assert watch([sys.executable, "-c", kill_self], quiet, interval=0.2) == 128 + 15


def test_a_silent_state_api_is_said_once_and_watched_again():
    said: list[str] = []
    cluster = Cluster(TimeoutError("no answer"), TimeoutError("no answer"), [], [died_with_node("WorkerDict")])
    assert watch(SLEEP, cluster, interval=0.2, grace=5, say=said.append) == EXIT_NODE_LOST
    assert len(said) == 2 and "did not answer (no answer)" in said[0] and NODE in said[1]


def run_main(*args: str, **env: str) -> tuple[int, str, str, int]:
    """(exit status, stdout, stderr, pid) of ``main`` in a fresh interpreter."""
    code = "import sys; from mapo_verl.node_watch import main; sys.exit(main())"
    environ = {"PATH": "/usr/bin:/bin", **env}
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err, proc.pid


#: prints its own pid: the same as the watch's when the watch replaced itself with the command (no watch)
OWN_PID = "import os; print(os.getpid()); raise SystemExit(4)"
JOB_CONFIG = json.dumps({"metadata": {"job_submission_id": "raysubmit_x"}})


def test_outside_a_ray_job_the_command_runs_unwatched():
    code, out, _, pid = run_main("--", sys.executable, "-c", OWN_PID)
    assert (code, int(out)) == (4, pid)


def test_node_watch_0_runs_the_command_unwatched_inside_a_ray_job():
    code, out, _, pid = run_main("--", sys.executable, "-c", OWN_PID, RAY_JOB_CONFIG_JSON_ENV_VAR=JOB_CONFIG,
                                 MAPO_NODE_WATCH="0")  # fmt: skip
    assert (code, int(out)) == (4, pid)
    code, out, _, pid = run_main("--", sys.executable, "-c", OWN_PID, RAY_JOB_CONFIG_JSON_ENV_VAR=JOB_CONFIG,
                                 MAPO_NODE_WATCH_INTERVAL="0.2")  # fmt: skip
    assert code == 4 and int(out) != pid  # watched: the command is the watch's child


def test_a_bad_interval_is_named():
    code, _, err, _ = run_main("--", "true", RAY_JOB_CONFIG_JSON_ENV_VAR=JOB_CONFIG, MAPO_NODE_WATCH_INTERVAL="soon")
    assert code == 2 and "MAPO_NODE_WATCH_INTERVAL='soon' is not a number of seconds" in err
    code, _, err, _ = run_main("--", "true", RAY_JOB_CONFIG_JSON_ENV_VAR=JOB_CONFIG, MAPO_NODE_WATCH_INTERVAL="0")
    assert code == 2 and "must be above 0" in err


def test_no_command_is_a_usage_error(capsys):
    assert main(["--"]) == 2
    assert "usage: python -m mapo_verl.node_watch -- COMMAND" in capsys.readouterr().err
