"""A run whose Ray node did not start in time (four runs starting at once on 2 cores, seen in the arms study) is
started again once; any other failure is not, and a failed attempt is named in the run's record."""

from __future__ import annotations

from pathlib import Path

from mapo_verl.supervise import Outcome
from mapo_verl_cpu.experiments import compare

#: the last lines of main_ppo.log of grpo seed 8 in the study (7 Dec 2026), as verl 0.9.1 and Ray printed them
RAY_DID_NOT_START = [
    "2026-12-07 16:08:27,200\tINFO node.py:438 -- Failed to get node info b'RPC error: Deadline Exceeded'",
    '  File "/work/main/.venv/lib/python3.11/site-packages/ray/_private/node.py", line 440, in __init__',
    "    raise Exception(",
    "Exception: The current node timed out during startup. This could happen because some of the raylet failed to "
    "startup or the GCS has become overloaded.",
    "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.",
]


def _outcome(returncode: int, tail: list[str], progress: str | None = None, timed_out: bool = False) -> Outcome:
    return Outcome(returncode=returncode, seconds=124.4, timed_out=timed_out, tail=tail, last_progress=progress)


def test_only_a_ray_start_timeout_before_any_progress_counts_as_a_failed_start() -> None:
    assert compare.failed_to_start(_outcome(1, RAY_DID_NOT_START))
    assert not compare.failed_to_start(_outcome(0, RAY_DID_NOT_START))
    assert not compare.failed_to_start(_outcome(1, ["KeyError: 'algorithm.mapo.lambda_fn'"]))
    # once the trainer was up, a failure is the run's own
    assert not compare.failed_to_start(_outcome(1, RAY_DID_NOT_START, progress="trainer ready"))
    assert not compare.failed_to_start(_outcome(124, RAY_DID_NOT_START, timed_out=True))


def _attempts(outcomes: list[Outcome], log: Path) -> tuple[Outcome, list[dict], list[str], int]:
    """run_until_started over ``outcomes`` in turn: its outcome, failed attempts, reports, and attempts made."""
    said: list[str] = []
    pending = list(outcomes)

    def attempt() -> Outcome:
        log.write_text(f"attempt {len(outcomes) - len(pending) + 1}\n")
        return pending.pop(0)

    outcome, failed = compare.run_until_started(attempt, log, said.append)
    return outcome, failed, said, len(outcomes) - len(pending)


def test_a_failed_start_runs_again_once_and_its_log_is_kept(tmp_path: Path) -> None:
    log = tmp_path / "main_ppo.log"
    ok = _outcome(0, ["done"], progress="final validation done")
    outcome, failed, said, made = _attempts([_outcome(1, RAY_DID_NOT_START), ok], log)
    assert made == 2 and outcome is ok
    assert failed == [{"status": "failed (exit 1): Ray did not start", "seconds": 124.4, "commit": None}]
    assert (tmp_path / "main_ppo.attempt1.log").read_text() == "attempt 1\n"
    assert log.read_text() == "attempt 2\n" and "starting again" in said[0]


def test_a_second_failed_start_or_another_failure_is_the_outcome(tmp_path: Path) -> None:
    log = tmp_path / "main_ppo.log"
    twice = [_outcome(1, RAY_DID_NOT_START), _outcome(1, RAY_DID_NOT_START), _outcome(0, [])]
    outcome, failed, _, made = _attempts(twice, log)
    assert made == compare.START_ATTEMPTS == 2 and outcome is twice[1] and len(failed) == 1
    other = _outcome(1, ["ValueError: bad override"])
    outcome, failed, said, made = _attempts([other, _outcome(0, [])], log)
    assert made == 1 and outcome is other and failed == [] and said == []
