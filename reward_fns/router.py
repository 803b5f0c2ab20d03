"""One verl ``compute_score`` for runs that mix datasets: dispatch on ``data_source``.

Use it with ``reward.custom_reward_function.path=pkg://reward_fns.router`` and ``name=compute_score``;
``reward.custom_reward_function.reward_kwargs.format_weight`` sets the format weight for both task kinds, and
``...reward_kwargs.time_limit`` the seconds one call may take (:mod:`reward_fns.time_limit`, default 2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mapo_verl.data_sources import data_source_ids
from reward_fns import emotion, math_answer
from reward_fns.common import DEFAULT_FORMAT_WEIGHT

MATH_SOURCES = data_source_ids("Math")  # the registry of mapo_verl/data_sources.py
EMOTION_SOURCES = data_source_ids("Emotion")

#: ``data_source`` -> reward function. Extend it (``ROUTES["my/set"] = math_answer.compute_score``) for new sets.
ROUTES: dict[str, Callable[..., dict[str, float]]] = {
    **dict.fromkeys(MATH_SOURCES, math_answer.compute_score),
    **dict.fromkeys(EMOTION_SOURCES, emotion.compute_score),
}


def compute_score(
    data_source: Any,
    solution_str: Any,
    ground_truth: Any,
    extra_info: Any = None,
    format_weight: float = DEFAULT_FORMAT_WEIGHT,
    **kwargs: Any,
) -> dict[str, float]:
    """Score one response with the reward its ``data_source`` names; an unknown source is a ``ValueError``."""
    fn = ROUTES.get(data_source) if isinstance(data_source, str) else None
    if fn is None:
        known = ", ".join(sorted(ROUTES))
        raise ValueError(f"reward_fns.router: unknown data_source {data_source!r}; known: {known}")
    return fn(data_source, solution_str, ground_truth, extra_info, format_weight=format_weight, **kwargs)
