"""The MAPO authors' scorer, reproduced exactly, as a verl custom reward (``pkg://reward_fns.paper_compat``).

The authors' code (github WenkeHuang/MAPO, an EasyR1 fork; read in the mirror ARGROB2023/MAPO at commit
``ccea871``) scores two ways, both with mathruler:

* **Evaluation** (``code/eval/utils/processing.py:evaluate_prediction``, every math and emotion set)::

      paper_acc = 1.0 if grade_answer(extract_boxed_content(response.strip()), answer) else 0.0

* **Training reward** (``code/examples/reward_function/math.py``): the response is first normalised with
  ``re.sub(r"\\s*(<|>|/)\\s*", r"\\1", response)``, then::

      format = 1.0 if re.fullmatch(r"<think>.*</think>.*\\boxed\\{.*\\}.*", response, re.DOTALL) else 0.0
      acc    = 1.0 if grade_answer(extract_boxed_content(response), answer) else 0.0
      score  = (1 - w) * acc + w * format        (w = format_weight = 0.1)

  and a rollout succeeds for MAPO when ``score == 1.0`` (``code/verl/trainer/ray_trainer.py``, ``grpomixpro``).

``compute_score(..., scorer=...)`` (a ``reward.custom_reward_function.reward_kwargs`` entry):

* ``"both"`` (default): our reward (:mod:`reward_fns.router`) decides ``score``/``acc``/``format``; the
  authors' evaluation accuracy is added as ``paper_acc`` and their training reward as ``paper_score``. verl
  logs them as ``val-aux/<data_source>/paper_acc/mean@N`` next to ``val-core/<data_source>/acc/mean@N``.
* ``"paper"``: the authors' training reward is ``score`` and their evaluation accuracy is ``acc`` (so
  ``val-core/.../acc`` is the paper-comparable number); ``paper_acc``/``paper_score`` are logged too.

Every result also carries ``mathverse_version``: the index of ``extra_info["problem_version"]`` in
:data:`MATHVERSE_VERSIONS` (``-1`` when absent), so that verl's validation dumps can be split per MathVerse
problem version by :mod:`mapo_verl.report`. Nothing here raises on any input: a failure of either scorer counts
as a wrong answer (``scorer_error`` = 1.0 records it). mathruler has no timeout of its own, and its
``should_allow_eval`` guard, kept as the authors ran it, lets ``\\boxed{1e999999}`` run for a minute; so
``grade_answer`` runs in a reward worker process under the per-call time limit (:mod:`reward_fns.time_limit`,
the ``time_limit`` kwarg, default 2 s, shared with our reward in ``"both"``): a grade that overruns it is a
wrong answer, with ``scorer_timeout`` = 1.0. Every answer graded within the limit gets the authors' verdict.
"""

from __future__ import annotations

import re
from typing import Any

from mathruler.grader import extract_boxed_content, grade_answer

from mapo_verl.data_sources import MATHVERSE_VERSIONS
from reward_fns import time_limit as limits
from reward_fns.common import DEFAULT_FORMAT_WEIGHT, TIMEOUT_KEY

_TAG_SPACES = re.compile(r"\s*(<|>|/)\s*")
_FORMAT = re.compile(r"<think>.*</think>.*\\boxed\{.*\}.*", re.DOTALL)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _boxed(text: str) -> str | None:
    try:
        return extract_boxed_content(text)
    except Exception:  # grade_answer(None, ...) is False: an ungradable answer is wrong
        return None


def _grades(givens: tuple[str | None, ...], answer: str) -> tuple[float, ...]:
    """mathruler's ``grade_answer(given, answer)`` for each given answer, 1.0 or 0.0 (run in a reward worker)."""
    graded: dict[str | None, float] = {}
    for given in givens:
        if given not in graded:
            try:
                graded[given] = 1.0 if grade_answer(given, answer) else 0.0
            except Exception:  # a scorer that never raises: an ungradable answer is wrong
                graded[given] = 0.0
    return tuple(graded[given] for given in givens)


def _bounded_grades(givens: tuple[str | None, ...], answer: str) -> tuple[float, ...]:
    """:func:`_grades` within the reward call's time limit; all 0.0 when it overruns (and recorded)."""
    outcome = limits.call_bounded(_grades, givens, answer)
    return (0.0,) * len(givens) if outcome.timed_out else outcome.value


def _training_format(response: Any) -> tuple[str, float]:
    text = _TAG_SPACES.sub(r"\1", _text(response))
    return text, 1.0 if _FORMAT.fullmatch(text) else 0.0


def paper_accuracy(response: Any, answer: Any) -> float:
    """The authors' evaluation accuracy: mathruler's grade of the last boxed content (``code/eval``)."""
    return _bounded_grades((_boxed(_text(response).strip()),), _text(answer))[0]


def paper_training_reward(response: Any, answer: Any, format_weight: float = DEFAULT_FORMAT_WEIGHT) -> dict[str, float]:
    """The authors' training reward ``{"score", "acc", "format"}`` (``examples/reward_function/math.py``)."""
    text, fmt = _training_format(response)
    (acc,) = _bounded_grades((_boxed(text),), _text(answer))
    return {"score": (1 - format_weight) * acc + format_weight * fmt, "acc": acc, "format": fmt}


def mathverse_version_index(extra_info: Any) -> float:
    """Index of ``extra_info["problem_version"]`` in :data:`MATHVERSE_VERSIONS`, ``-1.0`` when absent/unknown."""
    version = extra_info.get("problem_version") if isinstance(extra_info, dict) else None
    try:
        return float(MATHVERSE_VERSIONS.index(str(version).strip()))
    except ValueError:
        return -1.0


def _ours(
    data_source: Any, solution_str: Any, ground_truth: Any, extra_info: Any, format_weight: float, limit: float, kwargs
):
    from reward_fns import router  # imported here: B's router pulls in math-verify; the paper path needs none

    result = router.compute_score(
        data_source, solution_str, ground_truth, extra_info, format_weight=format_weight, time_limit=limit, **kwargs
    )
    return {k: float(v) for k, v in result.items()}


def compute_score(
    data_source: Any,
    solution_str: Any,
    ground_truth: Any,
    extra_info: Any = None,
    scorer: str = "both",
    format_weight: float = DEFAULT_FORMAT_WEIGHT,
    time_limit: float | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """verl's custom reward: our reward plus the authors' accuracy (``both``), or the authors' alone (``paper``).

    Both scorers together get ``time_limit`` seconds (:func:`reward_fns.time_limit.time_limit`)."""
    limit = limits.time_limit(time_limit)
    with limits.Deadline(limit) as call:
        text, fmt = _training_format(solution_str)
        answer = _text(ground_truth)
        paper_acc, train_acc = _bounded_grades((_boxed(_text(solution_str).strip()), _boxed(text)), answer)
        paper = {"score": (1 - format_weight) * train_acc + format_weight * fmt, "format": fmt}
        extras = {
            "paper_acc": paper_acc,
            "paper_score": paper["score"],
            "mathverse_version": mathverse_version_index(extra_info),
            "scorer_error": 0.0,
        }
        if scorer == "both":
            try:
                ours = _ours(data_source, solution_str, ground_truth, extra_info, format_weight, limit, kwargs)
            except Exception:  # e.g. an unknown data_source: wrong, flagged, never a crash
                ours = {"score": 0.0, "acc": 0.0, "format": 0.0}
                extras["scorer_error"] = 1.0
    extras[TIMEOUT_KEY] = 1.0 if call.failures else 0.0
    if scorer == "both":
        return {**ours, **extras}
    if scorer != "paper":
        # An unknown mode must not crash a reward worker mid-run: score with the paper's rule and flag it.
        extras["scorer_error"] = 1.0
    return {"score": paper["score"], "acc": paper_acc, "format": paper["format"], **extras}
