"""The answer forms models write, one table per class: each correct form scores 1.0, each wrong one 0.

Classes (issue 10): degrees, units, a leading quantity name, percent, thousands separators, fractions against
decimals, option letters in their common forms and the correct option's text; wrong answers that look right
(another number with the right unit, a dropped digit, only a unit) must score 0. Ground truths are written as the
real datasets write them (MathVerse's ``Area $=9.4 \\mathrm{~cm}^{2}$``, MathVision's ``\\frac{360}7``).
"""

from __future__ import annotations

import pytest

from reward_fns import math_answer
from reward_fns.answer_forms import option_letter, read_answer, restore_latex_escapes


def respond(answer: str) -> str:
    return f"<think>Measure the figure.</think> So the answer is \\boxed{{{answer}}}."


#: class -> [(ground truth, model-written answer, correct?)]
FREE_FORM = {
    "degrees": [
        ("30", "30^\\circ", True),
        ("30", "30^{\\circ}", True),
        ("30", "30°", True),
        ("30", "30 degrees", True),
        ("30", "30\\text{ degrees}", True),
        ("$30^{\\circ}$", "30", True),
        ("30", "60^\\circ", False),
        ("30", "3^\\circ", False),
        ("30", "^\\circ", False),
    ],
    "units": [
        ("12", "12 cm", True),
        ("12", "12\\text{ cm}", True),
        ("12", "12 \\mathrm{~cm}", True),
        ("9.4", "9.4 \\mathrm{~cm}^{2}", True),
        ("25", "25 m^2", True),
        ("25", "25 \\text{ square units}", True),
        ("$9.4 \\mathrm{~cm}^{2}$", "9.4 cm^2", True),
        ("9.4 cm^2", "9.5 cm^2", False),  # another number with the right unit
        ("9.4 cm^2", "9.4 m^2", False),  # another unit
        ("12", "\\mathrm{cm}", False),  # only a unit
        ("12", "cm", False),
    ],
    "quantity name": [
        ("Area $=9.4 \\mathrm{~cm}^{2}$", "9.4", True),
        ("Area $=9.4 \\mathrm{~cm}^{2}$", "9.4 \\mathrm{~cm}^{2}", True),
        ("Area $=9.4 \\mathrm{~cm}^{2}$", "Area = 9.4 cm^2", True),
        ("Circumference $=50.27 \\mathrm{~cm}$", "50.27", True),
        ("5", "x = 5", True),
        ("x=5", "5", True),
        ("5", "m \\angle ABC = 5", True),
        ("30", "\\angle ABC = 30^\\circ", True),
        ("12", "\\overline{AB} = 12", True),
        ("6", "2x = 12", False),  # an equation, not a named value
        ("Area $=9.4 \\mathrm{~cm}^{2}$", "94", False),  # a dropped decimal point
        ("Area $=9.4 \\mathrm{~cm}^{2}$", "9.45", False),
        ("x = 5", "y = 5", False),
        ("5", "x = 6", False),
    ],
    "percent": [
        ("25", "25\\%", True),
        ("25", "25%", True),
        ("25\\%", "25", True),
        ("25", "35\\%", False),
    ],
    "thousands separators": [
        ("34426", "34,426", True),
        ("1000", "1{,}000", True),
        ("1000", "1\\,000", True),
        ("2400", "2,400", True),
        ("34426", "3,426", False),  # a dropped digit
        ("1000", "100", False),
    ],
    "fractions and decimals": [
        ("0.5", "\\frac{1}{2}", True),
        ("\\frac{1}{2}", "0.5", True),
        ("\\frac{360}7", "\\frac{360}{7}", True),
        ("\\frac{36}{13}", "2.77", True),
        ("\\frac{1}{3}", "0.333", True),
        ("2.67", "\\frac{8}{3}", True),
        ("\\frac{4}{5}", "0.8", True),
        ("\\frac{4}{5}", "4/5", True),
        ("1.2", "1.20", True),
        ("\\frac{1}{3}", "0.3", False),  # one decimal is not the value
        ("\\frac{36}{13}", "2.76", False),
        ("1.25", "1.2", False),  # a dropped digit
        ("\\frac{4}{5}", "0.08", False),
    ],
}

CHOICE_OPTIONS = ["60°", "30°", "45°", "90°"]
#: (ground truth letter, model-written answer, correct?) with the options above
CHOICE = [
    ("B", "B", True),
    ("B", "(B)", True),
    ("B", "B.", True),
    ("B", "B)", True),
    ("B", "Option B", True),
    ("B", "option (B)", True),
    ("B", "Answer: B", True),
    ("B", "The answer is B", True),
    ("B", "(B) 30°", True),
    ("B", "B: 30°", True),
    ("B", "\\text{B}", True),
    ("B", "\\textbf{(B)}", True),
    ("B", "30°", True),  # the correct option's text
    ("B", "30^{\\circ}", True),
    ("B", "$30^\\circ$", True),
    ("B", "C", False),
    ("B", "(C) 45°", False),
    ("B", "Option C", False),
    ("B", "45°", False),  # another option's text
    ("B", "30 cm", False),
    ("B", "b", False),  # lower case is not a letter answer
]


@pytest.mark.parametrize(
    ("truth", "answer", "correct"),
    [pytest.param(t, a, c, id=f"{kind}: {a!r} vs {t!r}") for kind, rows in FREE_FORM.items() for t, a, c in rows],
)
def test_free_form_answer_forms(truth, answer, correct):
    result = math_answer.compute_score("AI4Math/MathVerse", respond(answer), truth)
    assert result["score"] == (1.0 if correct else 0.1), result


@pytest.mark.parametrize(
    ("truth", "answer", "correct"), [pytest.param(t, a, c, id=f"{a!r} vs {t}") for t, a, c in CHOICE]
)
def test_choice_answer_forms(truth, answer, correct):
    result = math_answer.compute_score("AI4Math/MathVista", respond(answer), truth, {"options": CHOICE_OPTIONS})
    assert result["score"] == (1.0 if correct else 0.1), result


def test_letter_options_are_letters():
    """MathVision's choice options are often the letters themselves (the choices are drawn in the image)."""
    extra = {"options": ["A", "B", "C", "D", "E"]}
    assert math_answer.compute_score("MathLLMs/MathVision", respond("C"), "C", extra)["score"] == 1.0
    assert math_answer.compute_score("MathLLMs/MathVision", respond("(D)"), "C", extra)["score"] == 0.1


def test_option_text_starting_with_a_capital_is_text_beyond_the_options():
    extra = {"options": ["I am here", "You are there"]}
    assert math_answer.compute_score("x", respond("You are there"), "B", extra)["acc"] == 1.0
    assert math_answer.compute_score("x", respond("I am here"), "B", extra)["acc"] == 0.0


@pytest.mark.parametrize(
    ("damaged", "restored", "repairs"),
    [
        ("\x0crac{36}{13}", "\\frac{36}{13}", 1),
        ("\x08eta + \x07lpha", "\\beta + \\alpha", 2),
        ("\times \theta", "\\times \\theta", 2),  # in Python source "\t" is a tab: tab + "imes"
        ("\x0bec{v}", "\\vec{v}", 1),
        ("\rho", "\\rho", 1),
        ("have\tequal\tperimeters", "have\tequal\tperimeters", 0),  # tabs between words are tabs
        ("plain \\frac{1}{2}", "plain \\frac{1}{2}", 0),
    ],
)
def test_restore_latex_escapes(damaged, restored, repairs):
    assert restore_latex_escapes(damaged) == (restored, repairs)


def test_restore_in_math_only_leaves_prose():
    text = "Find\tx.\n$\x0crac{1}{2}$ and\nnu"
    assert restore_latex_escapes(text, math_only=True) == ("Find\tx.\n$\\frac{1}{2}$ and\nnu", 1)


def test_damaged_ground_truth_still_scores():
    """A parquet written before the preparers repaired escapes still scores a correct \\frac."""
    assert math_answer.compute_score("x", respond("\\frac{36}{13}"), "\x0crac{36}{13}")["score"] == 1.0


@pytest.mark.parametrize(
    ("text", "core", "unit", "name"),
    [
        ("Area $=9.4 \\mathrm{~cm}^{2}$", "9.4", "cm^2", "Area"),
        ("30^{\\circ}", "30", "deg", ""),
        ("x = 5", "5", "", "x"),
        ("34,426", "34426", "", ""),
        ("25\\%", "25", "%", ""),
        ("2m", "2m", "", ""),  # a one-letter unit needs a space: 2m may be a variable
    ],
)
def test_read_answer(text, core, unit, name):
    reading = read_answer(text)
    assert (reading.core, reading.unit, reading.name) == (core, unit, name)


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        *[("B", "B"), ("(B)", "B"), ("B.", "B"), ("Option B", "B"), ("Answer: B", "B"), ("(B) text", "B")],
        *[("C. 145°", "C"), ("B) 12", "B"), ("12", None)],
        # a bare capital followed by words is a word, not an option named
        *[("C and more", None), ("A triangle", None), ("I have", None)],
    ],
)
def test_option_letter(answer, letter):
    assert option_letter(answer) == letter


@pytest.mark.parametrize("options", [[], ["12", "15", "18", "20"]])
def test_letter_followed_by_words_is_not_that_letter(options):
    # the scorer-agreement benchmark found `\boxed{C and more}` accepted for a ground truth `C`
    extra = {"options": options} if options else None
    assert math_answer.score_answer(respond("C and more"), "C", extra)[0] == 0.0
    assert math_answer.score_answer(respond("C. 18"), "C", extra)[0] == 1.0
