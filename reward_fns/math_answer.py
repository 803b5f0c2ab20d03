"""Reward for math answers in ``\\boxed{}`` (Geo3K, MathVista, MathVision, MathVerse).

Rules:

* The answer is the content of the last complete ``\\boxed{...}`` (nested braces allowed).
* Choice tasks (ground truth a single capital letter, options optionally in ``extra_info["options"]``):
  ``B``, ``(B)``, ``B.``, ``B)``, ``\\text{B}``, ``Option B``, ``Answer: B``, ``(B) 12`` all read as ``B``; a box
  holding the correct option's text (up to spacing, ``$``, degree signs and units) also counts, one naming
  another option's text does not.
* Several correct options (ground truth ``C, D``: distinct capitals in order, as the preparers write a question
  with several correct letters): the box must name exactly those letters, in any order and with any separator
  (``D and C``, ``(C) (D)``, ``C;D``); a missing or an extra letter is wrong.
* Otherwise the answer forms models write are read first (:mod:`reward_fns.answer_forms`: degrees, units, a
  leading quantity name, percent, thousands separators, exact numbers and fractions against decimals, compass
  bearings such as ``090° T`` or ``N 53° E``); when that reading cannot decide, mathruler's ``grade_answer`` and
  then math-verify compare the values (``\\sqrt{12}`` == ``2\\sqrt{3}``). Symbolic checks only run on short
  answers with no power towers, huge exponents, factorials, binomials or Gamma (:func:`_symbolic_safe`), and
  then in a worker process under the per-call time limit (:mod:`reward_fns.time_limit`, default 2 s): an answer
  whose check overruns it scores as wrong, with ``scorer_timeout`` = 1.0.
* ``format`` is the think-then-boxed structure (:func:`reward_fns.common.has_think_then_boxed`).
* ``score = (1 - w) * acc + w * format`` with ``format_weight`` ``w`` (default 0.1): exactly ``1.0`` means correct
  and well formatted, MAPO's default success threshold.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Sequence
from typing import Any

from reward_fns.answer_forms import (
    forms_match,
    letters_match,
    multi_letter_truth,
    option_key,
    option_letter,
    restore_latex_escapes,
    symbolic_operands,
)
from reward_fns.common import (
    as_text,
    extract_last_boxed,
    has_think_then_boxed,
    unwrap_text,
    verl_reward,
)
from reward_fns.time_limit import call_bounded

#: Answers longer than this are compared as strings only (no sympy).
MAX_SYMBOLIC_CHARS = 64

_GT_LETTER = re.compile(r"\(?([A-Z])\)?\.?")
# (x+y+z+1)^{50}, 9^{9^{9}}, \tan^{99}(x), 1000!, 1e999999, 2**999999999, \Gamma(9999999) or \dbinom{9999999}{4999999}
# take sympy seconds to minutes: symbolic checks only run for exponents that are one digit or one letter (digits
# summing to at most 9, at most two powers), at most two distinct variables and two subscripts, and no
# factorials, binomials, Gamma or zeta, integrals, sums, products or limits. The worker's time limit is the
# backstop for what this misses (tests/data/sympy_traps.json lists what it must catch).
_UNSAFE = re.compile(
    r"\^\s*\{(?!\s*[-+]?[0-9a-zA-Z]\s*\})"  # a braced exponent that is not one (signed) digit or letter
    r"|\^\s*[-+]?\d{2}"  # a bare exponent of two or more digits
    r"|\^\s*\\"  # an exponent that is a command (\frac, \sqrt...)
    r"|\*\s*\*"  # Python's power operator, which sympy's parser reads
    r"|\d\s*[eE]\s*[-+]?\s*\d{3}"  # scientific notation with an exponent of three or more digits
    r"|!|\\(?:[oi]*int|sum|prod|lim|[dt]?binom|choose|(?:var)?Gamma|zeta|psi|operatorname|mathop)"
)
_COMMAND = re.compile(r"\\[a-zA-Z]+")
_EXPONENT_DIGIT = re.compile(r"\^\s*\{?\s*[-+]?(\d)")
_SPACES = re.compile(r"\s+")


def _options(extra_info: Any) -> list[str]:
    """The options list from ``extra_info`` (list, tuple or numpy array after a parquet round trip)."""
    if not isinstance(extra_info, dict):
        return []
    options = extra_info.get("options")
    if options is None or isinstance(options, str | bytes) or not hasattr(options, "__iter__"):
        return []
    try:
        return [as_text(option) for option in options]
    except Exception:
        return []


def _plain(answer: str) -> str:
    """Cheap normalisation for string equality: wrappers, spaces, ``$``, a trailing full stop."""
    answer = unwrap_text(answer).replace("$", "")
    answer = _SPACES.sub("", answer)
    return answer.rstrip(".").lower()


def _symbolic_safe(answer: str) -> bool:
    """Whether sympy may see ``answer``: short, tame powers, at most two variables (see ``_UNSAFE``)."""
    if not 0 < len(answer) <= MAX_SYMBOLIC_CHARS or answer.count("^") > 2 or answer.count("_") > 2:
        return False
    if _UNSAFE.search(answer) or sum(int(d) for d in _EXPONENT_DIGIT.findall(answer)) > 9:
        return False
    letters = {c for c in _COMMAND.sub("", answer) if c.isascii() and c.isalpha()}
    return len(letters) <= 2


def _mathruler_equal(pred: str, truth: str) -> bool:
    try:
        from mathruler.grader import grade_answer

        return bool(grade_answer(pred, truth))
    except Exception:
        return False


@functools.lru_cache(maxsize=1 << 14)
def _mv_parse(text: str, timeout: int | None) -> tuple:
    from math_verify import parse

    return tuple(parse(f"${text}$", parsing_timeout=timeout))


def _far_apart(gold: tuple, guess: tuple) -> bool:
    """Both closed-form numbers more than 5% apart: certainly different, without sympy's slow ``verify``."""
    try:
        import sympy

        a, b = gold[0], guess[0]
        if not (isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr)) or a.free_symbols or b.free_symbols:
            return False
        x, y = complex(a.evalf(15)), complex(b.evalf(15))
        return abs(x - y) > 0.05 * max(abs(x), abs(y))
    except Exception:
        return False


def _math_verify_equal(pred: str, truth: str) -> bool:
    try:
        from math_verify import verify
    except ImportError:  # pragma: no cover - math-verify is a dependency; degrade to mathruler only
        return False
    # math-verify's timeouts use signal.alarm, which only works on the main thread (a reward worker's, where the
    # worker's kill at the reward call's time limit comes sooner anyway).
    on_main = threading.current_thread() is threading.main_thread()
    timeout = 5 if on_main else None
    try:
        gold = _mv_parse(truth, timeout)
        guess = _mv_parse(pred, timeout)
        if not gold or not guess or _far_apart(gold, guess):
            return False
        return bool(verify(list(gold), list(guess), timeout_seconds=timeout))
    except BaseException as exc:  # math-verify may raise its own TimeoutException (a BaseException subclass)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return False


def _symbolic_equal(pred: str, truth: str) -> bool:
    """mathruler, then math-verify: run in a reward worker process (:func:`_bounded_symbolic_equal`)."""
    return _mathruler_equal(pred, truth) or _math_verify_equal(pred, truth)


def warm_up() -> None:
    """Import and exercise the symbolic checkers once (a new reward worker runs this before its first call)."""
    _symbolic_equal("\\frac{6}{2}", "3")
    _symbolic_equal("\\sqrt{12}", "2\\sqrt{3}")


#: Finished symbolic verdicts, ``(pred, truth) -> equal``: the n rollouts of one prompt share its ground truth and
#: often box the same answer. Overruns are not kept (a busy machine may slow a check that fits the limit).
_VERDICTS: dict[tuple[str, str], bool] = {}
_MAX_VERDICTS = 1 << 16


def _bounded_symbolic_equal(pred: str, truth: str) -> bool:
    """:func:`_symbolic_equal` within the reward call's time limit; an overrun is ``False`` (and recorded)."""
    key = (pred, truth)
    verdict = _VERDICTS.get(key)
    if verdict is None:
        outcome = call_bounded(_symbolic_equal, pred, truth)
        if outcome.timed_out:
            return False
        verdict = bool(outcome.value)
        if len(_VERDICTS) >= _MAX_VERDICTS:
            _VERDICTS.clear()
        _VERDICTS[key] = verdict
    return verdict


def answers_match(pred: str, truth: str) -> bool:
    """Whether a boxed prediction equals a free-form ground truth."""
    if not pred or not truth:
        return False
    if _plain(pred) == _plain(truth):
        return True
    decided = forms_match(pred, truth)
    if decided is not None:
        return decided
    pred, truth = symbolic_operands(pred, truth)
    if not (_symbolic_safe(pred) and _symbolic_safe(truth)):
        return False
    return _bounded_symbolic_equal(pred, truth)


def choice_match(pred: str, truth_letter: str, options: Sequence[str]) -> bool:
    """Whether a boxed prediction picks option ``truth_letter``: by its letter, or by the option's text.

    A letter beyond the options (``I have`` among two options) is read as text. Text picks the option whose
    text it equals after folding spacing, ``$``, degree signs and case; failing that, the one option whose
    value it matches (``30^\\circ`` for ``30°``, ``9.4`` for ``9.4 cm``, ``53° T`` for ``053 ^\\circ T``);
    matching several different options picks none, while options that repeat the correct one verbatim (MathVista
    781: ``18``, ``18``) are that one answer.
    """
    index = ord(truth_letter) - ord("A")
    letter = option_letter(pred)
    if letter is not None and (not options or ord(letter) - ord("A") < len(options)):
        if letter == truth_letter:
            return True
        # an option that repeats the correct option's text verbatim is the same answer (MathVista 781: 18, 18)
        picked = ord(letter) - ord("A")
        return 0 <= index < len(options) and options[picked].strip() == options[index].strip() != ""
    if not 0 <= index < len(options):
        return False
    correct = options[index].strip()
    key = option_key(pred)
    exact = [i for i, option in enumerate(options) if option.strip() and option_key(option) == key]
    if exact:
        return index in exact and all(options[i].strip() == correct for i in exact)
    by_value = [i for i, option in enumerate(options) if option.strip() and forms_match(pred, option)]
    return index in by_value and all(options[i].strip() == correct for i in by_value)


def score_answer(solution_str: Any, ground_truth: Any, extra_info: Any = None) -> tuple[float, float]:
    """``(acc, format)`` for one response, each 0.0 or 1.0."""
    text = as_text(solution_str)
    fmt = 1.0 if has_think_then_boxed(text) else 0.0
    pred = extract_last_boxed(text)
    truth = unwrap_text(restore_latex_escapes(as_text(ground_truth))[0])
    if pred is None or not truth:
        return 0.0, fmt
    several = multi_letter_truth(truth)
    if several is not None:
        return (1.0 if letters_match(pred, several) else 0.0), fmt
    letter = _GT_LETTER.fullmatch(truth)
    options = _options(extra_info)
    if letter is not None and (options or len(truth) <= 3):
        correct = choice_match(pred, letter.group(1), options)
    else:
        correct = answers_match(pred, truth)
    return (1.0 if correct else 0.0), fmt


compute_score = verl_reward(
    score_answer, 'verl custom reward for the math sets: ``{"score", "acc", "format"}``; never raises.'
)
