"""Advantage-estimator speed on the paper's batch: 512 prompts x 12 rollouts x 2048 tokens.

Times verl's ``grpo`` (a Python loop over responses), ``grpo_vectorized``, our ``mapo``, and the
floor that any outcome estimator must pay (one reduction and one broadcast multiply:
``s = rewards.sum(-1); s[:, None] * mask``), all on the same batch with shuffled uids, and
prints median times and ratios from one run (candidates timed round-robin).

    python benchmarks/bench_advantage.py [--device cuda] [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm import tqdm
from verl.trainer.ppo.core_algos import get_adv_estimator_fn


def make_batch(prompts: int, rollouts: int, tokens: int, device: str, seed: int = 0):
    """Binary outcome rewards on the last valid token, random lengths, shuffled uid object array."""
    gen = torch.Generator().manual_seed(seed)
    batch = prompts * rollouts
    lengths = torch.randint(1, tokens + 1, (batch,), generator=gen)
    mask = (torch.arange(tokens)[None, :] < lengths[:, None]).float()
    rewards = torch.zeros(batch, tokens)
    rewards[torch.arange(batch), lengths - 1] = (torch.rand(batch, generator=gen) < 0.6).float()
    uids = np.array([str(uuid.UUID(int=i + 1)) for i in range(prompts)], dtype=object)
    index = np.repeat(uids, rollouts)[np.random.default_rng(seed).permutation(batch)]
    return rewards.to(device), mask.to(device), index


def interleaved_medians(candidates: dict[str, tuple[Callable[[], object], int]], device: str) -> dict[str, float]:
    """Median seconds per candidate, timed round-robin so that machine drift hits all of them alike.

    Each round runs every candidate that still has repeats left once; all are warmed up first.
    """
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for fn, _ in candidates.values():
        fn()
    rounds = max(n for _, n in candidates.values())
    for _ in tqdm(range(rounds), desc="rounds", leave=False):
        for name, (fn, repeats) in candidates.items():
            if len(times[name]) >= repeats:
                continue
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--rollouts", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--loop-repeats", type=int, default=5, help="repeats for verl's looped grpo (slow)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    rewards, mask, index = make_batch(args.prompts, args.rollouts, args.tokens, args.device)
    config = OmegaConf.create({"norm_adv_by_std_in_grpo": True, "mapo": {"lambda_fn": "tcr"}})
    mapo, grpo_vec, grpo = (get_adv_estimator_fn(n) for n in ("mapo", "grpo_vectorized", "grpo"))

    def floor() -> torch.Tensor:
        return rewards.sum(-1)[:, None] * mask

    candidates: dict[str, tuple[Callable[[], object], int]] = {
        "floor": (floor, args.repeats),
        "mapo": (
            lambda: mapo(token_level_rewards=rewards, response_mask=mask, index=index, config=config),
            args.repeats,
        ),
        "grpo_vectorized": (
            lambda: grpo_vec(token_level_rewards=rewards, response_mask=mask, index=index, config=config),
            args.repeats,
        ),
        "grpo": (lambda: grpo(token_level_rewards=rewards, response_mask=mask, index=index), args.loop_repeats),
    }
    medians = interleaved_medians(candidates, args.device)

    print(
        f"batch {args.prompts} prompts x {args.rollouts} rollouts x {args.tokens} tokens, shuffled uids, "
        f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{'estimator':>16} {'median ms':>10} {'x floor':>8} {'x grpo_vec':>10}")
    for name, sec in medians.items():
        print(f"{name:>16} {sec * 1e3:>10.2f} {sec / medians['floor']:>8.2f} {sec / medians['grpo_vectorized']:>10.2f}")
    ok_vec = medians["mapo"] <= medians["grpo_vectorized"]
    ok_floor = medians["mapo"] <= 1.5 * medians["floor"]
    verdict = {True: "met", False: "NOT met"}
    print(f"goal mapo <= 1.0x grpo_vectorized: {verdict[ok_vec]}; goal mapo <= 1.5x floor: {verdict[ok_floor]}")


if __name__ == "__main__":
    main()
