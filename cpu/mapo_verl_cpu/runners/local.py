"""The local runner: ``main_ppo`` as a supervised subprocess on this machine, with a private Ray instance."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from mapo_verl_cpu.runners.spec import REPO_ROOT, RunSpec

if TYPE_CHECKING:
    from mapo_verl_cpu.runners import Placement

from mapo_verl.supervise import Outcome, run_supervised

_RAY_PREFIX = re.compile(r"^(?:\x1b\[[0-9;]*m)?\(\w+ pid=\d+(?:, ip=[^)]*)?\)(?:\x1b\[[0-9;]*m)?\s*")
_STEP_LINE = re.compile(r"^step:(\d+) - ")
#: (text in a trainer output line, progress message), for every backend
COMMON_MARKERS = (
    ("Creating file logger", "trainer ready: validating before training"),
    ("Final validation metrics", "final validation done; saving the checkpoint"),
)


def progress_message(line: str, steps: int, markers: tuple[tuple[str, str], ...] = ()) -> str | None:
    """The console progress line for one line of trainer output (Ray's ``(Actor pid=...)`` prefix stripped)."""
    text = _RAY_PREFIX.sub("", line)
    match = _STEP_LINE.match(text)
    if match and int(match.group(1)) >= 1:
        return f"step {match.group(1)}/{steps} done"
    for marker, message in (*markers, *COMMON_MARKERS):
        if marker in text:
            return message
    return None


def run(spec: RunSpec, placement: Placement, timeout: float | None, report: Callable[[str], None]) -> Outcome:
    """Run ``spec`` here (one node: ``placement`` is not used); its output goes to ``OUT/main_ppo.log`` and its
    command line to ``OUT/command.txt``."""
    spec.out.mkdir(parents=True, exist_ok=True)
    (spec.out / "command.txt").write_text(spec.command_line() + "\n")
    outcome = run_supervised(
        spec.command(),
        log_path=spec.log_path,
        env=spec.env,
        cwd=REPO_ROOT,
        timeout=timeout,
        progress=lambda line: progress_message(line, spec.steps, spec.markers),
        report=report,
    )
    if outcome.returncode != 0 and not outcome.timed_out:
        report(f"main_ppo exited with status {outcome.returncode}; last lines of {spec.log_path}:")
        print("\n".join(outcome.tail), flush=True)
    return outcome
