"""Response parsing shared by the reward functions: linear-time, bounded, and never raising.

Nothing here uses a backtracking regular expression on the response: all scans are ``str.rfind``/``str.find``
(C speed) plus a brace walk bounded by :data:`MAX_ANSWER_CHARS`, so a megabyte of hostile text costs a few
milliseconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from reward_fns import time_limit as limits

#: Weight of the format term. ``score = (1 - w) * acc + w * format``; verl's geo3k and EasyR1 use 0.1.
DEFAULT_FORMAT_WEIGHT = 0.1
#: The longest ``\boxed{...}`` content that counts as an answer; longer (or unclosed) boxes yield no answer.
MAX_ANSWER_CHARS = 2048
#: The key every reward result carries: 1.0 when a slow step of the scorer (sympy, mathruler, math-verify) gave
#: no verdict within the per-call time limit (:mod:`reward_fns.time_limit`) and the answer was scored as wrong.
TIMEOUT_KEY = "scorer_timeout"
#: How many trailing ``\boxed`` occurrences are inspected to find one followed by ``{``.
_MAX_BOXED_PROBES = 16

_BOXED = "\\boxed"
_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"
_BRACES = re.compile(r"[{}]")  # a character class: no backtracking
_WRAPPER = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox)\s*\{")


def as_text(value: Any) -> str:
    """Coerce a response or ground truth to ``str`` without raising (``None`` -> ``""``)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    try:
        return str(value)
    except Exception:  # a hostile __str__
        return ""


def _closing_brace(text: str, open_pos: int, limit: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``open_pos``, scanning at most ``limit`` chars; -1 if none.

    ``\\{`` and ``\\}`` are literal braces (LaTeX sets) and do not change the depth.
    """
    depth = 0
    end = min(len(text), open_pos + 1 + limit + 1)
    for match in _BRACES.finditer(text, open_pos, end):
        pos = match.start()
        if pos > 0 and text[pos - 1] == "\\" and pos != open_pos:
            continue
        depth += 1 if match.group() == "{" else -1
        if depth == 0:
            return pos
    return -1


def find_last_boxed(text: str) -> tuple[int, str] | None:
    """``(start, content)`` of the last ``\\boxed{...}`` in ``text``, or ``None``.

    The last ``\\boxed`` followed (after optional spaces) by ``{`` is the answer box; if its braces do not
    close within :data:`MAX_ANSWER_CHARS`, there is no answer (an earlier box does not stand in for it).
    """
    end = len(text)
    for _ in range(_MAX_BOXED_PROBES):
        start = text.rfind(_BOXED, 0, end)
        if start < 0:
            return None
        brace = start + len(_BOXED)
        while brace < len(text) and text[brace] in " \t":
            brace += 1
        if brace < len(text) and text[brace] == "{":
            close = _closing_brace(text, brace, MAX_ANSWER_CHARS)
            if close < 0:
                return None
            return start, text[brace + 1 : close].strip()
        end = start  # e.g. ``\boxedA`` or ``\boxed`` at the very end: look further back
    return None


def extract_last_boxed(text: Any) -> str | None:
    """Content of the last complete ``\\boxed{...}`` (nested braces allowed), stripped; ``None`` if absent."""
    found = find_last_boxed(as_text(text))
    return None if found is None else found[1]


def has_think_then_boxed(text: Any) -> bool:
    """The think-then-answer format: ``<think> reasoning </think>`` first, then a complete ``\\boxed{}``.

    Exactly one ``<think>`` (at the start, after whitespace) and one ``</think>``, non-blank reasoning
    between them, and the last ``\\boxed{...}`` after ``</think>``.
    """
    text = as_text(text)
    body = text.lstrip()
    if not body.startswith(_THINK_OPEN) or body.count(_THINK_OPEN) != 1 or body.count(_THINK_CLOSE) != 1:
        return False
    close = body.find(_THINK_CLOSE)
    if not body[len(_THINK_OPEN) : close].strip():
        return False
    found = find_last_boxed(body)
    return found is not None and found[0] > close


def unwrap_text(answer: str) -> str:
    """Strip any number of whole-answer wrappers such as ``\\text{...}``, ``\\mathrm{...}`` or ``\\boxed{...}``."""
    for _ in range(8):
        answer = answer.strip()
        match = _WRAPPER.match(answer)
        if match is None and answer.startswith(_BOXED):
            match = re.match(r"\\boxed\s*\{", answer)
        if match is None:
            return answer
        close = _closing_brace(answer, match.end() - 1, len(answer))
        if close != len(answer) - 1:
            return answer
        answer = answer[match.end() : close]
    return answer.strip()


def check_format_weight(format_weight: Any) -> float:
    """Validate ``format_weight`` (a configuration value, so this one may raise)."""
    try:
        weight = float(format_weight)
    except (TypeError, ValueError):
        raise ValueError(f"format_weight must be a number in [0, 1], got {format_weight!r}") from None
    if not (0.0 <= weight <= 1.0) or math.isnan(weight):
        raise ValueError(f"format_weight must be a number in [0, 1], got {format_weight!r}")
    return weight


def compose_score(acc: float, fmt: float, format_weight: float = DEFAULT_FORMAT_WEIGHT) -> dict[str, float]:
    """``{"score", "acc", "format"}`` with ``score = (1 - w) * acc + w * format``.

    Computed as ``acc + w * (format - acc)`` so that a correct, well-formatted answer scores exactly ``1.0``
    (a Python float) for every ``w``: MAPO's default success threshold is ``score >= 1.0``. With ``w = 0`` the
    score is ``acc`` (binary); with ``w > 0`` a correct but badly formatted answer scores ``1 - w`` and is a
    failure under that threshold, so choose ``format_weight`` and ``success_threshold`` together.
    """
    weight = check_format_weight(format_weight)
    acc = 1.0 if acc else 0.0
    fmt = 1.0 if fmt else 0.0
    return {"score": acc + weight * (fmt - acc), "acc": acc, "format": fmt}


def verl_reward(score: Callable[[Any, Any, Any], tuple[float, float]], doc: str) -> Callable[..., dict[str, float]]:
    """verl's custom-reward function over a scorer ``score(solution_str, ground_truth, extra_info) -> (acc, format)``:
    ``compute_score(data_source, solution_str, ground_truth, extra_info, format_weight, time_limit, **kwargs)``
    returning :func:`compose_score`'s ``{"score", "acc", "format"}`` plus :data:`TIMEOUT_KEY` (the scorers never
    raise). The scorer's slow steps share one :class:`reward_fns.time_limit.Deadline` of ``time_limit`` seconds
    (the kwarg, else ``$MAPO_REWARD_TIME_LIMIT``, else 2 s)."""

    def compute_score(
        data_source: Any = None,
        solution_str: Any = "",
        ground_truth: Any = "",
        extra_info: Any = None,
        format_weight: float = DEFAULT_FORMAT_WEIGHT,
        time_limit: float | None = None,
        **kwargs: Any,
    ) -> dict[str, float]:
        with limits.Deadline(time_limit) as call:
            acc, fmt = score(solution_str, ground_truth, extra_info)
        result = compose_score(acc, fmt, format_weight)
        result[TIMEOUT_KEY] = 1.0 if call.failures else 0.0
        return result

    compute_score.__doc__ = doc
    return compute_score
