"""Advantage-estimator speed on the paper's batch: 512 prompts x 12 rollouts x 2048 tokens.

Times verl's ``grpo`` (a Python loop over responses), ``grpo_vectorized``, our ``mapo``, and the
floor that any outcome estimator must pay (one reduction and one broadcast multiply:
``s = rewards.sum(-1); s[:, None] * mask``), all on the same batch with shuffled uids, and
prints median times and ratios from one run (candidates timed round-robin).

On CUDA each call is timed with CUDA events (device time between two events recorded on the
stream, after a warm-up), and the host synchronisations inside one call of each estimator are
counted with ``torch.cuda.set_sync_debug_mode("warn")``; ``mapo+metrics`` is mapo inside a
``mapo_verl.metrics.collect()`` block, as during training.

    python benchmarks/bench_advantage.py [--device cpu|cuda] [--repeats 31]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
import warnings
from collections.abc import Callable

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm import tqdm
from verl.trainer.ppo.core_algos import get_adv_estimator_fn

from mapo_verl import metrics


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


def _time_once(fn: Callable[[], object], cuda: bool) -> float:
    """Seconds for one call: CUDA events on the current stream, else the host clock."""
    if not cuda:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    begin.record()
    fn()
    end.record()
    end.synchronize()
    return begin.elapsed_time(end) / 1e3


def interleaved_medians(candidates: dict[str, tuple[Callable[[], object], int]], cuda: bool) -> dict[str, float]:
    """Median seconds per candidate, timed round-robin so that machine drift hits all of them alike.

    Each round runs every candidate that still has repeats left once; all are warmed up first.
    """
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for fn, _ in candidates.values():
        fn()
    rounds = max(n for _, n in candidates.values())
    for _ in tqdm(range(rounds), desc="rounds", leave=False):
        for name, (fn, repeats) in candidates.items():
            if len(times[name]) < repeats:
                times[name].append(_time_once(fn, cuda))
    return {name: statistics.median(ts) for name, ts in times.items()}


def count_host_syncs(fn: Callable[[], object]) -> int:
    """Host synchronisations inside one call, as reported by ``torch.cuda.set_sync_debug_mode``."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return sum("synchroniz" in str(w.message) for w in caught)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--rollouts", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--loop-repeats", type=int, default=5, help="repeats for verl's looped grpo (slow)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")

    rewards, mask, index = make_batch(args.prompts, args.rollouts, args.tokens, args.device)
    config = OmegaConf.create({"norm_adv_by_std_in_grpo": True, "mapo": {"lambda_fn": "tcr"}})
    mapo, grpo_vec, grpo = (get_adv_estimator_fn(n) for n in ("mapo", "grpo_vectorized", "grpo"))

    def floor() -> torch.Tensor:
        return rewards.sum(-1)[:, None] * mask

    def run_mapo() -> object:
        return mapo(token_level_rewards=rewards, response_mask=mask, index=index, config=config)

    def run_mapo_with_metrics() -> object:
        with metrics.collect() as block:
            out = run_mapo()
        return out, block

    candidates: dict[str, tuple[Callable[[], object], int]] = {
        "floor": (floor, args.repeats),
        "mapo": (run_mapo, args.repeats),
        "mapo+metrics": (run_mapo_with_metrics, args.repeats),
        "grpo_vectorized": (
            lambda: grpo_vec(token_level_rewards=rewards, response_mask=mask, index=index, config=config),
            args.repeats,
        ),
        "grpo": (lambda: grpo(token_level_rewards=rewards, response_mask=mask, index=index), args.loop_repeats),
    }
    medians = interleaved_medians(candidates, cuda)
    syncs = {name: count_host_syncs(fn) for name, (fn, _) in candidates.items() if name != "grpo"} if cuda else {}

    where = torch.cuda.get_device_name() if cuda else f"{torch.get_num_threads()} CPU threads"
    clock = "CUDA events" if cuda else "host clock"
    print(
        f"batch {args.prompts} prompts x {args.rollouts} rollouts x {args.tokens} tokens, shuffled uids, "
        f"device {args.device} ({where}), torch {torch.__version__}, timed with the {clock}"
    )
    header = f"{'estimator':>16} {'median ms':>10} {'x floor':>8} {'x grpo_vec':>10}"
    print(header + (f" {'host syncs':>10}" if cuda else ""))
    for name, sec in medians.items():
        row = f"{name:>16} {sec * 1e3:>10.2f} {sec / medians['floor']:>8.2f} {sec / medians['grpo_vectorized']:>10.2f}"
        if cuda:
            row += f" {syncs.get(name, 'n/a')!s:>10}"
        print(row)
    ok_vec = medians["mapo"] <= medians["grpo_vectorized"]
    ok_floor = medians["mapo"] <= 1.5 * medians["floor"]
    verdict = {True: "met", False: "NOT met"}
    print(f"goal mapo <= 1.0x grpo_vectorized: {verdict[ok_vec]}; goal mapo <= 1.5x floor: {verdict[ok_floor]}")


if __name__ == "__main__":
    main()
