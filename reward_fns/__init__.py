"""Rule-based reward functions for MAPO on vision-language tasks, in verl's custom reward signature.

* :mod:`reward_fns.math_answer` -- boxed math answers and option letters (Geo3K, MathVista, MathVision, MathVerse).
* :mod:`reward_fns.emotion` -- one emotion label in ``\\boxed{}`` (EmoSet, WEBEmo, Emotion6).
* :mod:`reward_fns.router` -- one ``compute_score`` that dispatches on ``data_source``; point verl at
  ``reward.custom_reward_function.path=pkg://reward_fns.router`` and ``name=compute_score``.

Every ``compute_score`` returns ``{"score", "acc", "format", "scorer_timeout"}`` and never raises on any response
string; its slow steps are bounded by a per-call time limit (:mod:`reward_fns.time_limit`).
"""

from reward_fns.common import DEFAULT_FORMAT_WEIGHT, compose_score, extract_last_boxed, has_think_then_boxed

__all__ = ["DEFAULT_FORMAT_WEIGHT", "compose_score", "extract_last_boxed", "has_think_then_boxed"]
