"""Reward for single-label image emotion classification (EmoSet, WEBEmo, Emotion6).

The prediction is the last complete ``\\boxed{...}``; it is correct when it equals the ground-truth label after
folding case, surrounding whitespace, trailing punctuation and a ``\\text{...}``-style wrapper. There are no
synonyms: ``happy`` is not ``amusement`` and ``scared`` is not ``fear``; the prompt lists the allowed labels, and
following it is part of the task. ``format`` and ``score`` follow :mod:`reward_fns.math_answer`.
"""

from __future__ import annotations

from typing import Any

from reward_fns.common import (
    as_text,
    extract_last_boxed,
    has_think_then_boxed,
    unwrap_text,
    verl_reward,
)

_TRAILING = ".,;:!?。！？'\"` \t\r\n"


def normalize_label(label: Any) -> str:
    """Fold a label for comparison: wrappers, surrounding space and quotes, trailing punctuation, case."""
    text = unwrap_text(as_text(label)).strip().strip("'\"`").rstrip(_TRAILING)
    text = unwrap_text(text)
    return " ".join(text.split()).casefold()


def score_label(solution_str: Any, ground_truth: Any) -> tuple[float, float]:
    """``(acc, format)`` for one response, each 0.0 or 1.0."""
    text = as_text(solution_str)
    fmt = 1.0 if has_think_then_boxed(text) else 0.0
    pred = extract_last_boxed(text)
    truth = normalize_label(ground_truth)
    correct = pred is not None and bool(truth) and normalize_label(pred) == truth
    return (1.0 if correct else 0.0), fmt


compute_score = verl_reward(
    lambda solution_str, ground_truth, extra_info: score_label(solution_str, ground_truth),
    'verl custom reward for the emotion sets: ``{"score", "acc", "format"}``; never raises.',
)
