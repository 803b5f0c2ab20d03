"""MAPO through verl's real trainer on CPU with an agent loop that returns two outputs in some sessions (registered
through verl's agent-loop config path): the step trains, and the logged p is counted over sessions (each session's
final output), as verl counts GRPO's, not over rows."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.ray]

EXTRAS = Path(__file__).parent / "trainer_extras"
#: a well-formatted answer counts as a success (the router scores 0, 0.1, 0.9, 1): the warm-started tiny model formats
#: most answers, so prompts mix successes and failures and counting rows would give another p than sessions
THRESHOLD = 0.1


@pytest.fixture(scope="module")
def two_output_run(tmp_path_factory, model_cache, memory_claim, smoke_runner):
    out = tmp_path_factory.mktemp("sessions") / "run"
    out.mkdir(parents=True)
    loops = out / "agent_loops.yaml"
    loops.write_text("- name: two_outputs\n  _target_: mapo_two_outputs.TwoOutputAgentLoop\n")
    path = [str(EXTRAS), *filter(None, [os.environ.get("PYTHONPATH")])]
    args = [
        "--steps", "1",
        f"actor_rollout_ref.rollout.agent.agent_loop_config_path={loops}",
        "actor_rollout_ref.rollout.agent.default_agent_loop=two_outputs",
        "trainer.val_before_train=False",
        f"algorithm.mapo.success_threshold={THRESHOLD}",
        f"trainer.rollout_data_dir={out / 'rollouts'}",
    ]  # fmt: skip
    claim = memory_claim("hf", "smoke (mapo, two outputs per session)")
    return smoke_runner(out, model_cache, *args, extra_env={"PYTHONPATH": os.pathsep.join(path)}, memory=claim)


def test_p_counts_sessions_not_rows(two_output_run):
    steps = two_output_run.training_steps()
    assert sorted(steps) == [1]
    logged = steps[1]
    dump = [json.loads(line) for line in (two_output_run.out / "rollouts" / "1.jsonl").read_text().splitlines()]
    outputs: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for row in dump:
        uid, session, index = row["uid"].rsplit("_", 2)
        outputs[(uid, session)].append((int(index), row["score"]))
    assert any(len(v) == 2 for v in outputs.values()) and any(len(v) == 1 for v in outputs.values()), outputs
    per_prompt_sessions: dict[str, list[bool]] = defaultdict(list)
    per_prompt_rows: dict[str, list[bool]] = defaultdict(list)
    for (uid, _), rows in outputs.items():
        per_prompt_sessions[uid].append(max(rows)[1] >= THRESHOLD - 1e-6)  # the final output (highest index)
        per_prompt_rows[uid].extend(score >= THRESHOLD - 1e-6 for _, score in rows)

    def mean_p(groups: dict[str, list[bool]]) -> float:
        return sum(sum(v) / len(v) for v in groups.values()) / len(groups)

    assert logged["mapo/num_groups"] == len(per_prompt_sessions)
    assert logged["mapo/p_mean"] == pytest.approx(mean_p(per_prompt_sessions), abs=1e-6)
    # where some prompt mixes successes and failures, counting rows gives another p (0.750 over sessions against
    # 0.767 over rows in a run here): the logged one is the sessions'
    if abs(mean_p(per_prompt_rows) - mean_p(per_prompt_sessions)) > 1e-6:
        assert logged["mapo/p_mean"] != pytest.approx(mean_p(per_prompt_rows), abs=1e-6)
    print(f"p over sessions {mean_p(per_prompt_sessions):.4f}, over rows {mean_p(per_prompt_rows):.4f}")
