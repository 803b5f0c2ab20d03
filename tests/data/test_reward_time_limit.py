"""Every reward call ends within its time limit, in any thread: the guard refuses the sympy traps, and a scorer
step that still overruns (the guard bypassed here, or the authors' unguarded mathruler) is killed in its worker
process and scored as wrong with ``scorer_timeout`` = 1.0, while the answers scored beside it get their right
scores. The bounds below are the limit plus a generous slack for two busy cores; before the limit, these calls
ran for 8 s to over 100 s (``\\Gamma(9999999)``), in verl's executor threads where no signal can stop them.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from reward_fns import emotion, math_answer, paper_compat, router, time_limit

TRAPS = json.loads(Path(__file__).with_name("sympy_traps.json").read_text())["traps"]
#: Seconds a call may take beyond its limit here: killing a worker, and a shared 2-core machine.
SLACK_S = 10.0
GEO = "hiyouga/geometry3k"
ORDINARY = [
    # (answer, ground truth, acc): symbolic (through a worker), forms, string, wrong
    ("\\sqrt{12}", "2\\sqrt{3}", 1.0),
    ("\\frac{6}{2}", "3", 1.0),
    ("30^\\circ", "30", 1.0),
    ("2\\sqrt{5}", "2\\sqrt{3}", 0.0),
]
#: The issue's measured stalls: 65 s, over 25 s, over 100 s and over 8 s inside one reward call.
STALLS = ["1e999999", "1e999999999", "\\Gamma(9999999)", "\\dbinom{9999999}{4999999}"]


def wrap(answer: str) -> str:
    return f"<think>r</think> The answer is \\boxed{{{answer}}}."


def timed(fn, *args, **kwargs) -> tuple[dict, float]:
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - start


def in_pool_of_four(calls: list) -> list[tuple[dict, float]]:
    """Run ``(fn, args, kwargs)`` calls on four threads, as verl's reward executor does; each call's own time."""
    pool = ThreadPoolExecutor(4)
    try:
        futures = [pool.submit(timed, fn, *args, **kwargs) for fn, args, kwargs in calls]
        return [future.result(timeout=len(calls) * 10 + 60) for future in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture(scope="module", autouse=True)
def warm_worker():
    """One reward worker started, and the ordinary answers' verdicts known, before timing (a worker's start-up,
    about a second, is not part of any limit)."""
    for answer, truth, acc in ORDINARY:
        assert math_answer.compute_score(GEO, wrap(answer), truth, time_limit=60)["acc"] == acc


# ------------------------------------------------------------------------------------------------------- knob


def test_limit_comes_from_kwarg_then_environment_then_default(monkeypatch):
    monkeypatch.delenv(time_limit.LIMIT_ENV, raising=False)
    assert time_limit.time_limit() == time_limit.DEFAULT_TIME_LIMIT_S == 2.0
    monkeypatch.setenv(time_limit.LIMIT_ENV, "0.75")
    assert time_limit.time_limit() == 0.75
    assert time_limit.time_limit(3) == 3.0


@pytest.mark.parametrize("value", [0, -1, "soon", float("nan"), float("inf")])
def test_bad_limit_is_a_config_error_naming_the_knob(value, monkeypatch):
    with pytest.raises(ValueError, match="time_limit"):
        math_answer.compute_score(GEO, wrap("3"), "3", time_limit=value)
    monkeypatch.setenv(time_limit.LIMIT_ENV, str(value))  # read when a call first needs its limit
    with pytest.raises(ValueError, match=time_limit.LIMIT_ENV):
        router.compute_score(GEO, wrap("\\sqrt{75}"), "5\\sqrt{3}")


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_bad_worker_count_is_a_config_error_naming_the_knob(value, monkeypatch):
    monkeypatch.setenv(time_limit.WORKERS_ENV, value)
    with pytest.raises(ValueError, match=time_limit.WORKERS_ENV):
        math_answer.compute_score(GEO, wrap("\\sqrt{108}"), "6\\sqrt{3}")


def test_every_result_carries_the_timeout_key():
    """verl stacks each reward-extra key over the batch from the first sample's keys: all tasks must share them."""
    for fn, source, truth in ((math_answer.compute_score, GEO, "3"), (emotion.compute_score, "emoset", "fear")):
        assert fn(source, wrap("3"), truth)["scorer_timeout"] == 0.0
    assert paper_compat.compute_score(GEO, wrap("3"), "3")["scorer_timeout"] == 0.0


# ------------------------------------------------------------------------------------------- the guard first


def test_traps_in_a_pool_of_four_beside_ordinary_answers():
    """All the traps against three ground truths, interleaved with ordinary answers, on four threads: the guard
    refuses every trap before sympy sees it (``scorer_timeout`` stays 0)."""
    limit = 1.0
    calls, expected = [], []
    for i, trap in enumerate(TRAPS):
        for truth in ("2\\sqrt{3}", "5", "x+1"):
            calls.append((router.compute_score, (GEO, wrap(trap), truth), {"time_limit": limit}))
            expected.append((0.0, 0.0))
        answer, truth, acc = ORDINARY[i % len(ORDINARY)]
        calls.append((router.compute_score, (GEO, wrap(answer), truth), {"time_limit": limit}))
        expected.append((acc, 0.0))
    results = in_pool_of_four(calls)
    assert [(r["acc"], r["scorer_timeout"]) for r, _ in results] == expected
    assert max(seconds for _, seconds in results) < limit + SLACK_S


# ------------------------------------------------------------------------------------ the hard limit as backstop


@pytest.fixture
def no_guard(monkeypatch):
    """Let every answer reach sympy, as an answer the guard misses would."""
    monkeypatch.setattr(math_answer, "_symbolic_safe", lambda answer: True)


def test_overrun_scores_as_wrong_with_a_reason(no_guard):
    limit = 0.5
    [(result, seconds)] = in_pool_of_four(
        [(math_answer.compute_score, (GEO, wrap("\\dbinom{9999999}{4999999}"), "5"), {"time_limit": limit})]
    )
    assert result == {"score": pytest.approx(0.1), "acc": 0.0, "format": 1.0, "scorer_timeout": 1.0}
    assert seconds < limit + SLACK_S
    assert ("\\dbinom{9999999}{4999999}", "5") not in math_answer._VERDICTS  # an overrun is not remembered
    # the next call gets a fresh worker and its right score
    assert math_answer.compute_score(GEO, wrap("\\sqrt{12}"), "2\\sqrt{3}")["acc"] == 1.0


def test_the_authors_scorer_is_bounded_too():
    """paper_compat keeps mathruler's own guard, which lets ``1e999999`` through: the limit stops it."""
    limit = 0.5
    [(stalled, seconds)] = in_pool_of_four(
        [(paper_compat.compute_score, (GEO, wrap("1e999999"), "2\\sqrt{3}"), {"time_limit": limit})]
    )
    assert stalled["paper_acc"] == stalled["acc"] == 0.0 and stalled["scorer_timeout"] == 1.0
    assert seconds < limit + SLACK_S
    ordinary = paper_compat.compute_score(GEO, wrap("\\sqrt{12}"), "2\\sqrt{3}", time_limit=60)
    assert ordinary["paper_acc"] == ordinary["acc"] == 1.0 and ordinary["scorer_timeout"] == 0.0


@pytest.mark.slow
def test_overrunning_stalls_in_a_pool_of_four_beside_ordinary_answers(no_guard, monkeypatch):
    """Each of the issue's stalls reaches sympy and is killed at its limit; the answers beside it, each with a
    limit that a busy machine cannot reach, wait at most for a free worker and score right."""
    limit = 1.0
    monkeypatch.setattr(math_answer, "_VERDICTS", {})  # every ordinary answer through a worker again
    calls, expected = [], []
    for trap in STALLS:
        calls.append((router.compute_score, (GEO, wrap(trap), "2\\sqrt{3}"), {"time_limit": limit}))
        expected.append((0.0, 1.0))
        for answer, truth, acc in ORDINARY:
            calls.append((router.compute_score, (GEO, wrap(answer), truth), {"time_limit": 60}))
            expected.append((acc, 0.0))
    results = in_pool_of_four(calls)
    assert [(r["acc"], r["scorer_timeout"]) for r, _ in results] == expected
    assert max(seconds for (r, seconds) in results if r["scorer_timeout"]) < limit + SLACK_S


def test_a_forked_child_never_uses_the_parent_workers():
    parent_pool = time_limit._pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its pool is new and empty, and it scores with workers of its own
        ok = time_limit._pool is not parent_pool and not time_limit._pool.alive
        ok = ok and math_answer._bounded_symbolic_equal("\\sqrt{48}", "4\\sqrt{3}")
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    for _ in range(600):
        if os.waitpid(pid, os.WNOHANG)[0]:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    os.close(read)


@pytest.mark.slow
def test_bounded_in_a_process_pool():
    """verl's legacy ``prime`` reward manager scores in a ``ProcessPoolExecutor``: the limit holds there too."""
    from concurrent.futures import ProcessPoolExecutor

    calls = [(GEO, wrap("1e999999"), "2\\sqrt{3}"), (GEO, wrap("\\sqrt{12}"), "2\\sqrt{3}")]
    with ProcessPoolExecutor(2) as pool:
        futures = [pool.submit(timed, paper_compat.compute_score, *args, time_limit=0.5) for args in calls]
        (stalled, seconds), (ordinary, _) = [future.result(timeout=120) for future in futures]
    assert stalled["paper_acc"] == 0.0 and stalled["scorer_timeout"] == 1.0
    assert seconds < 0.5 + SLACK_S
    assert ordinary["paper_acc"] == ordinary["acc"] == 1.0


# ------------------------------------------------------------------------------------ through verl's own loop


def test_traps_through_verl_reward_loop_worker(qwen_processor):
    """verl 0.9.1's ``RewardLoopWorker`` scores each sample in its event loop's executor threads."""
    from omegaconf import OmegaConf
    from verl import DataProto
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    rows = [(GEO, wrap(trap), "5", 0.1) for trap in STALLS]
    rows += [(GEO, wrap(answer), truth, 0.9 * acc + 0.1) for answer, truth, acc in ORDINARY]
    rows.append(("emoset", wrap("awe"), "awe", 1.0))
    config = OmegaConf.create(
        {
            "actor_rollout_ref": {"model": {"path": qwen_processor.tokenizer_dir, "tokenizer_path": None}},
            "reward": {
                "reward_manager": {"source": "register", "name": "naive", "module": None},
                "custom_reward_function": {"path": "pkg://reward_fns.router", "name": "compute_score"},
                "reward_model": {"enable": False},
                "sandbox_fusion": None,
            },
        }
    )
    worker = RewardLoopWorker(config)
    tokenizer = worker.input_tokenizer
    prompt = tokenizer.encode("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n")
    responses = [tokenizer.encode(text + "<|im_end|>", add_special_tokens=False) for _, text, _, _ in rows]
    width, pad = max(map(len, responses)), tokenizer.pad_token_id
    prompt_ids = torch.tensor([prompt] * len(rows))
    response_ids = torch.tensor([r + [pad] * (width - len(r)) for r in responses])
    response_mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in responses])
    data = DataProto.from_dict(
        tensors={
            "prompts": prompt_ids,
            "responses": response_ids,
            "input_ids": torch.cat([prompt_ids, response_ids], dim=1),
            "attention_mask": torch.cat([torch.ones_like(prompt_ids), response_mask], dim=1),
        },
        non_tensors={
            "data_source": np.array([row[0] for row in rows], dtype=object),
            "reward_model": np.array([{"ground_truth": row[2]} for row in rows], dtype=object),
            "extra_info": np.array([{} for _ in rows], dtype=object),
        },
    )
    outputs = worker.loop.run_until_complete(worker.compute_score_batch(data))
    assert [out["reward_score"] for out in outputs] == pytest.approx([row[3] for row in rows])
    assert all(out["reward_extra_info"]["scorer_timeout"] == 0.0 for out in outputs)
