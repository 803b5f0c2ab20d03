"""Fixtures for the estimator tests: random verl-shaped batches and an independent reference."""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import pytest
import torch

LAMBDA_REFERENCE: dict[str, Callable[[float], float]] = {
    "tcr": lambda p: 1.0 - 4.0 * p * (1.0 - p),
    "linear": lambda p: abs(2.0 * p - 1.0),
    "zero": lambda p: 0.0,
    "one": lambda p: 1.0,
}


def reference_mapo(
    scores: Sequence[float],
    index: Sequence[object],
    *,
    success_threshold: float = 1.0,
    reward_min: float = 0.0,
    lambda_fn: str = "tcr",
    epsilon: float = 1e-6,
    norm_by_std: bool = True,
    lambda_assignment: str = "group",
    success: Sequence[bool] | None = None,
) -> list[float]:
    """MAPO written out from the issue's definition, one response at a time, in Python floats.

    APD_i = (s_i - mu) / (mu - reward_min + eps): the deviation as a share of the mean's height above the floor.
    ``lambda_assignment="permuted"``: each response is mixed with the lambda of the group chosen as
    docs/estimator.md describes it (:func:`reference_weight_source`).
    """
    members: dict[object, list[int]] = defaultdict(list)
    for i, uid in enumerate(index):
        members[uid].append(i)
    slack = 1e-6 * max(1.0, abs(success_threshold))
    lam = {}
    for uid, rows in members.items():
        if success is None:
            p = sum(float(scores[i]) >= success_threshold - slack for i in rows) / len(rows)
        else:  # a declared correctness signal (algorithm.mapo.success_key)
            p = sum(bool(success[i]) for i in rows) / len(rows)
        lam[uid] = LAMBDA_REFERENCE[lambda_fn](p)
    source = reference_weight_source(index) if lambda_assignment == "permuted" else list(index)
    out = [0.0] * len(scores)
    for rows in members.values():
        g = len(rows)
        if g == 1:
            continue
        vals = [float(scores[i]) for i in rows]
        mu = sum(vals) / g
        sigma = math.sqrt(sum((v - mu) ** 2 for v in vals) / (g - 1))
        for i, v in zip(rows, vals, strict=True):
            weight = lam[source[i]]
            dev = (v - mu) / (sigma + epsilon) if norm_by_std else v - mu
            apd = (v - mu) / (mu - reward_min + epsilon)
            out[i] = (1 - weight) * dev + weight * apd
    return out


def reference_weight_source(index: Sequence[object]) -> list[object]:
    """``lambda_assignment=permuted`` as docs/estimator.md states it: for each response, the label of the group
    whose lambda it receives.

    The groups sit on a cycle in the order of ``pandas.util.hash_array`` of their label as text (ties: first
    appearance); the response at offset o within its group (row order) takes the group 1 + (o mod (K - 1))
    places further on; a batch of one group keeps its own.
    """
    labels = list(dict.fromkeys(index))
    if len(labels) < 2:
        return list(index)
    hashes = [int(pd.util.hash_array(np.array([str(label)], dtype=object))[0]) for label in labels]
    cycle = [labels[k] for k in sorted(range(len(labels)), key=lambda k: (hashes[k], k))]
    place = {label: k for k, label in enumerate(cycle)}
    seen: dict[object, int] = defaultdict(int)
    out = []
    for label in index:
        offset = seen[label]
        seen[label] += 1
        out.append(cycle[(place[label] + 1 + offset % (len(labels) - 1)) % len(labels)])
    return out


def random_batch(
    rng: np.random.Generator,
    num_groups: int = 16,
    max_group: int = 9,
    response_length: int = 7,
    reward_values: Sequence[float] = (0.0, 0.1, 0.9, 1.0),
    min_group: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Uneven, shuffled groups like verl's batch after balance_batch.

    The outcome reward sits on the last valid token of each response (as verl's reward managers
    put it); returns (token_level_rewards, response_mask, uid object array).
    """
    sizes = rng.integers(min_group, max_group + 1, size=num_groups)
    uids = [str(uuid.UUID(int=int(rng.integers(0, 2**62)))) for _ in range(num_groups)]
    index = np.array([u for u, n in zip(uids, sizes, strict=True) for _ in range(n)], dtype=object)
    order = rng.permutation(len(index))
    index = index[order]
    batch = len(index)
    lengths = rng.integers(1, response_length + 1, size=batch)
    mask = (np.arange(response_length)[None, :] < lengths[:, None]).astype(np.float32)
    rewards = np.zeros((batch, response_length), dtype=np.float32)
    rewards[np.arange(batch), lengths - 1] = rng.choice(np.asarray(reward_values, dtype=np.float32), size=batch)
    return torch.from_numpy(rewards), torch.from_numpy(mask), index


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20250923)


@pytest.fixture
def reference() -> Callable[..., list[float]]:
    return reference_mapo


@pytest.fixture
def make_batch() -> Callable[..., tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
    return random_batch


@pytest.fixture
def reference_source() -> Callable[[Sequence[object]], list[object]]:
    return reference_weight_source


@pytest.fixture
def lambda_reference() -> dict[str, Callable[[float], float]]:
    return LAMBDA_REFERENCE
