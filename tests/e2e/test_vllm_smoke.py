"""``python -m mapo_verl smoke --rollout vllm``: verl's own vLLM rollout (vLLM's CPU build, ``.venv-vllm``) trains
MAPO, and only verl's weight sync gives the server (started on dummy weights) the actor's weights.

Three jobs run in ``.venv-vllm`` as subprocesses (about 8 minutes together on 2 cores): 2 steps at lr 1e-3 with a
checkpoint, one resumed step, and a run whose sync first does nothing (the negative control: step 1 on the
server's dummy weights) and then never returns (a silent hang the smoke's time limit must end; tests/e2e/conftest.py).
"""

from __future__ import annotations

import contextlib

import psutil
import pytest

from mapo_verl.supervise import processes_with_env
from mapo_verl.verl_log import latest_checkpoint

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: the rollout's and the actor's probabilities of the sampled tokens differ by at most this much once the server
#: has the actor's weights (measured 0.01-0.02 with vLLM's CPU build; random dummy weights give far more)
MAX_ROLLOUT_PROBS_DIFF = 0.05
DIFF_KEY = "training/rollout_probs_diff_max"
MAPO_KEYS = (
    "mapo/lambda_mean",
    "mapo/p_mean",
    "mapo/num_groups",
    "mapo/groups_p0_frac",
    "mapo/groups_p1_frac",
)


def missing_mapo_keys(data: dict) -> list[str]:
    """The MAPO metrics a step lacks: the always-present ones, and the success/failure means where the step had
    successful/failed responses (a step of sampled answers may have none that succeed)."""
    expected = [*MAPO_KEYS, "actor/pg_loss", "actor/grad_norm"]
    if data.get("mapo/p_mean", 0) > 0:
        expected.append("mapo/adv_success_mean")
    if data.get("mapo/p_mean", 1) < 1:
        expected.append("mapo/adv_failure_mean")
    return [k for k in expected if k not in data]


def processes_of(run) -> list[str]:
    """Live processes of one smoke run: every process it starts (trainer, Ray, vLLM's engine) inherits its
    ``VERL_FILE_LOGGER_PATH``."""
    found = []
    for proc in processes_with_env("VERL_FILE_LOGGER_PATH", str(run.out / "metrics.jsonl")):
        with contextlib.suppress(psutil.Error):
            found.append(f"{proc.pid} {proc.name()} {' '.join(proc.cmdline())[:120]}")
    return found


def sync_violations(steps: dict[int, dict]) -> list[str]:
    """The training steps whose rollout log-probs do not match the actor's (a sync that delivered nothing)."""
    if not steps:
        return ["no training step was logged"]
    bad = []
    for step, data in sorted(steps.items()):
        diff = data.get(DIFF_KEY)
        if diff is None or not diff <= MAX_ROLLOUT_PROBS_DIFF:
            bad.append(f"step {step}: {DIFF_KEY}={diff}")
    return bad


# the broken-sync run first: its wait for the time limit leaves the cores to the other pytest worker early on
def test_the_sync_check_catches_a_server_left_on_dummy_weights(smoke_vllm_broken_sync):
    """Negative control: the same check fails when verl's weight sync into vLLM does nothing (the server keeps its
    dummy weights): at step 1 of the broken-sync run, logged before its sync hangs."""
    assert "weight sync into vLLM is off" in (smoke_vllm_broken_sync.out / "main_ppo.log").read_text()
    steps = smoke_vllm_broken_sync.training_steps()
    assert sorted(steps) == [1], f"the broken-sync run logged steps {sorted(steps)}; expected step 1 before the hang"
    assert sync_violations(steps) == [f"step 1: training/rollout_probs_diff_max={steps[1].get(DIFF_KEY)}"]


def test_a_silent_hang_times_out_and_ends_the_whole_tree(smoke_vllm_broken_sync):
    """The sync after step 2's update never returns and the trainer prints nothing more: the smoke's --timeout still
    fires, says what was last seen, and leaves no process of that run (trainer, Ray, vLLM's engine) behind."""
    run = smoke_vllm_broken_sync
    assert run.returncode == 124, run.console[-3000:]
    assert "[smoke] TIMED OUT; last progress seen:" in run.console
    log = (run.out / "main_ppo.log").read_text()
    assert "vLLMHttpServer" in log, "vLLM never started"
    assert "negative control: verl's weight sync into vLLM is hung" in log
    left = processes_of(run)
    assert left == [], f"processes of the timed-out run are still alive: {left}"


def test_verls_vllm_server_served_the_rollout_on_dummy_weights(smoke_vllm):
    command = (smoke_vllm.out / "command.txt").read_text()
    assert "actor_rollout_ref.rollout.name=vllm" in command
    assert "actor_rollout_ref.rollout.load_format=dummy" in command
    assert "workers and the vllm rollout server are up" in smoke_vllm.console
    log = (smoke_vllm.out / "main_ppo.log").read_text()
    assert "vLLMHttpServer" in log, "verl's vLLM server actor did not start"


def test_every_step_logs_mapo_metrics_and_the_policy_moves(smoke_vllm):
    steps = smoke_vllm.training_steps()
    assert sorted(steps) == [1, 2]
    for step, data in steps.items():
        assert not missing_mapo_keys(data), (step, missing_mapo_keys(data))
    assert steps[2]["actor/kl_loss"] > 0, "step 1's update did not move the policy"


def test_rollout_log_probs_match_the_actor_at_every_step(smoke_vllm):
    """After each update verl syncs the weights into vLLM; the server's log-probs then match the actor's."""
    assert sync_violations(smoke_vllm.training_steps()) == []


def test_checkpoint_and_a_resumed_step(smoke_vllm, smoke_vllm_resumed):
    checkpoints = smoke_vllm.out / "checkpoints"
    assert (checkpoints / "global_step_2" / "actor").is_dir()
    resumed = smoke_vllm_resumed.training_steps()
    assert sorted(resumed) == [3], "verl did not resume from global_step_2"
    assert sync_violations(resumed) == []
    assert latest_checkpoint(checkpoints) == checkpoints / "global_step_3"


def test_no_vllm_process_outlives_the_runs(smoke_vllm, smoke_vllm_resumed, smoke_vllm_broken_sync):
    """The supervisor ends each run's whole tree: no trainer, Ray or vLLM engine process of these runs is left
    (found by their environment, so that a .venv-vllm Python of another test or user is not counted)."""
    leftovers = [p for run in (smoke_vllm, smoke_vllm_resumed, smoke_vllm_broken_sync) for p in processes_of(run)]
    assert leftovers == []
