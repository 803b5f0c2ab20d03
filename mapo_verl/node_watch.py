"""End a Ray job whose node was lost, instead of letting it wait forever: the entry point of a ``ray job submit``.

verl does not recover from a lost node, and on some placements it does not notice one either: its sync replay buffer
(``verl/trainer/ppo/v1/replay_buffer.py``) polls TransferQueue for the prompts an agent-loop worker owns and never
asks whether that worker is alive, so a job whose agent-loop worker died with its node keeps running and trains
nothing. ``scripts/job_entry.sh`` therefore runs the trainer under this watch::

    python -m mapo_verl.node_watch -- python -m verl.trainer.main_ppo ...

Every ``MAPO_NODE_WATCH_INTERVAL`` seconds (default 10) it asks Ray's state API for the job's dead actors. When Ray
has marked one dead because its node died (``NODE_DIED``: the node stopped answering Ray's health checks), it names
the node and the actors lost with it, ends the trainer and what it started (SIGTERM, SIGKILL after
``GRACE_SECONDS``; Ray then ends the job's actors) and exits with :data:`EXIT_NODE_LOST`: the job ends ``FAILED``
and can be resubmitted with ``trainer.resume_mode=auto``. Actors that ended on a live node, and nodes the job never
used (an idle node the autoscaler removes), do not count. Outside a Ray job submission, or with
``MAPO_NODE_WATCH=0``, the command runs unwatched. The command's own exit status is passed on; SIGTERM and SIGINT
(``ray job stop``) are forwarded to it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from mapo_verl.supervise import end_tree, process_tree

#: the exit status when a node of the job was lost (BSD's EX_TEMPFAIL: the same command may succeed again)
EXIT_NODE_LOST = 75
DEFAULT_INTERVAL = 10.0
#: seconds the trainer gets to exit after SIGTERM before SIGKILL
GRACE_SECONDS = 20.0
#: what Ray's job supervisor gives the entry point: the job's config, whose metadata names the submission
JOB_CONFIG_VARIABLE = "RAY_JOB_CONFIG_JSON_ENV_VAR"
PREFIX = "mapo_verl node watch:"
#: signals passed on to the command (``ray job stop`` sends SIGTERM; Ctrl-C SIGINT)
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class LostNode:
    """A node whose death took actors of the job with it."""

    node_id: str
    address: str
    actors: tuple[str, ...]
    reason: str

    def message(self) -> str:
        reason = f" ({self.reason})" if self.reason else ""
        return (
            f"{PREFIX} Ray node {self.node_id} at {self.address} was lost{reason} with this job's "
            f"{', '.join(self.actors)} on it. verl does not recover lost actors and can wait for them forever, so "
            f"the job is ended (exit {EXIT_NODE_LOST}); resubmit it with trainer.resume_mode=auto to go on from the "
            "last checkpoint."
        )


@dataclass(frozen=True)
class DeadActor:
    """One dead actor of the job as Ray's state API lists it (``death_cause`` as Ray gives it, or None)."""

    class_name: str
    node_id: str
    death_cause: Mapping | None


def lost_nodes(dead_actors: Iterable[DeadActor]) -> list[LostNode]:
    """The nodes whose death killed actors of the job: Ray marks such an actor ``DEAD`` with
    ``death_cause.actor_died_error_context.reason == "NODE_DIED"``. Actors that exited or were killed on a live
    node do not count, nor do nodes the job never used."""
    contexts: dict[str, dict] = {}  # node -> the death context of its first actor (the node's address and reason)
    names: dict[str, set[str]] = {}
    for actor in dead_actors:
        context = (actor.death_cause or {}).get("actor_died_error_context") or {}
        if context.get("reason") == "NODE_DIED" and actor.node_id:
            contexts.setdefault(actor.node_id, context)
            names.setdefault(actor.node_id, set()).add(actor.class_name)
    lost = []
    for node, context in sorted(contexts.items()):
        death = context.get("node_death_info") or {}
        reason = death.get("reason_message") or death.get("reason") or ""
        lost.append(LostNode(node, context.get("node_ip_address", "?"), tuple(sorted(names[node])), reason))
    return lost


def submission_id(environ: Mapping[str, str]) -> str | None:
    """The submission id of the Ray job this process is the entry point of, or None outside one."""
    raw = environ.get(JOB_CONFIG_VARIABLE)
    if not raw:
        return None
    try:
        return json.loads(raw).get("metadata", {}).get("job_submission_id")
    except (ValueError, AttributeError):
        return None


class RayJobView:
    """The job's dead actors from Ray's state API (whose address Ray's GCS gives, from the ``RAY_ADDRESS`` that Ray
    sets for a job's entry point)."""

    def __init__(self, submission: str, timeout: int = 20) -> None:
        self.submission = submission
        self.timeout = timeout
        self._job_id: str | None = None

    def job_id(self) -> str | None:
        """The driver's job id, once the trainer has connected to Ray (None before)."""
        if self._job_id is None:
            from ray.util.state import list_jobs

            jobs = list_jobs(filters=[("submission_id", "=", self.submission)], timeout=self.timeout,
                             raise_on_missing_output=False)  # fmt: skip
            self._job_id = next((job.job_id for job in jobs if job.job_id), None)
        return self._job_id

    def dead_actors(self) -> list[DeadActor]:
        """The job's dead actors ([] before the trainer connects)."""
        from ray.util.state import list_actors

        job = self.job_id()
        if job is None:
            return []
        actors = list_actors(filters=[("job_id", "=", job), ("state", "=", "DEAD")], detail=True, limit=10_000,
                             timeout=self.timeout, raise_on_missing_output=False)  # fmt: skip
        return [DeadActor(a.class_name, a.node_id or "", a.death_cause) for a in actors]


def _end(child: subprocess.Popen, grace: float) -> None:
    """End the command and whatever it started (the supervisor's tree ending), then reap it; nothing once it has
    exited (its pid may then belong to another process)."""
    if child.poll() is None:
        end_tree(process_tree(child.pid), grace=grace)
        child.wait()


def watch(
    command: Sequence[str],
    view: RayJobView,
    interval: float = DEFAULT_INTERVAL,
    grace: float = GRACE_SECONDS,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> int:
    """Run ``command`` and end it when a node holding the job's actors dies; its exit status, or
    :data:`EXIT_NODE_LOST`."""
    child = subprocess.Popen(command)
    forwarded = {sig: signal.signal(sig, lambda signum, _: child.send_signal(signum)) for sig in FORWARDED_SIGNALS}
    try:
        failing = False
        while True:
            try:
                code = child.wait(timeout=interval)
                return 128 - code if code < 0 else code  # killed by a signal: the shell's 128 + N
            except subprocess.TimeoutExpired:
                pass
            try:
                lost = lost_nodes(view.dead_actors())
            except Exception as err:  # the dashboard busy or restarting: look again next time
                if not failing:
                    say(f"{PREFIX} Ray's state API did not answer ({err}); trying again every {interval:g} s")
                failing = True
                continue
            failing = False
            if lost:
                for node in lost:
                    say(node.message())
                _end(child, grace)
                return EXIT_NODE_LOST
    finally:
        for sig, handler in forwarded.items():
            signal.signal(sig, handler)
        _end(child, grace)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m mapo_verl.node_watch -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    submission = submission_id(os.environ)
    if submission is None or os.environ.get("MAPO_NODE_WATCH", "1") == "0":
        os.execvp(args[0], args)
    raw = os.environ.get("MAPO_NODE_WATCH_INTERVAL", str(DEFAULT_INTERVAL))
    try:
        interval = float(raw)
    except ValueError:
        print(f"{PREFIX} MAPO_NODE_WATCH_INTERVAL={raw!r} is not a number of seconds", file=sys.stderr)
        return 2
    if interval <= 0:
        print(f"{PREFIX} MAPO_NODE_WATCH_INTERVAL={raw!r} must be above 0", file=sys.stderr)
        return 2
    return watch(args, RayJobView(submission), interval=interval)


if __name__ == "__main__":
    sys.exit(main())
