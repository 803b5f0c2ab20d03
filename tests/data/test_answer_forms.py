"""The answer forms models write, one table per class: each correct form scores 1.0, each wrong one 0.

Classes (issues 10 and 17): degrees, units, a leading quantity name, percent, thousands separators, fractions
against decimals, compass bearings, true or false, option letters in their common forms and the correct option's
text, several correct letters; wrong answers that look right
(another number with the right unit, a dropped digit, only a unit) must score 0. Ground truths are written as the
real datasets write them (MathVerse's ``Area $=9.4 \\mathrm{~cm}^{2}$``, MathVision's ``\\frac{360}7``).
"""

from __future__ import annotations

import pytest

from reward_fns import math_answer
from reward_fns.answer_forms import (
    multi_letter_truth,
    option_letter,
    read_answer,
    read_bearing,
    restore_latex_escapes,
)


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
    # MathVerse writes bearings as true bearings (090° T, 053 ° T); a quadrant truth (N 53° E) needs a bearing
    "compass bearings": [
        ("090° T", "090° T", True),
        ("090° T", "90°T", True),
        ("090° T", "90^{\\circ} \\text{T}", True),
        ("090° T", "090^\\circ", True),
        ("090° T", "90 degrees", True),
        ("090° T", "N 90° E", True),  # the same bearing in quadrant form
        ("053 ° T", "53° T", True),
        ("053 ° T", "053°", True),
        ("N 53° E", "N 53° E", True),
        ("N 53° E", "N53°E", True),
        ("N 53° E", "N 53^{\\circ} E", True),
        ("N 53° E", "053° T", True),
        ("S 20° W", "200° T", True),
        ("090° T", "270° T", False),
        ("090° T", "91° T", False),
        ("090° T", "N 90° W", False),
        ("053 ° T", "35° T", False),
        ("N 53° E", "N 53° W", False),
        ("N 53° E", "S 53° E", False),
        ("N 53° E", "N 37° E", False),
        ("N 53° E", "53°", False),  # no quadrant: not the bearing
    ],
    "true or false": [
        ("False", "False", True),
        ("False", "\\text{False}", True),
        ("False", "false", True),
        ("True", "True.", True),
        ("False", "True", False),
        ("True", "False", False),
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


#: A question with several correct options (MathVerse's ``C`` newline ``D``), ground truth ``C, D`` as prepared:
#: (model-written answer, correct?) with the options above
SEVERAL = [
    ("C, D", True),
    ("D, C", True),
    ("C and D", True),
    ("D and C", True),
    ("(C) (D)", True),
    ("(C)(D)", True),
    ("C;D", True),
    ("C D", True),
    ("C. D.", True),
    ("\\text{C, D}", True),
    ("Options C and D", True),
    ("The answers are C and D", True),
    ("C", False),  # a letter missing
    ("D", False),
    ("C, D, E", False),  # a letter extra
    ("A, C, D", False),
    ("B, D", False),
    ("CD", False),  # a segment, not two options
    ("c, d", False),
    ("60°, 90°", False),
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


@pytest.mark.parametrize(("answer", "correct"), [pytest.param(a, c, id=f"{a!r} vs 'C, D'") for a, c in SEVERAL])
@pytest.mark.parametrize("options", [CHOICE_OPTIONS, None], ids=["options listed", "choices in the image"])
def test_several_correct_options(answer, correct, options):
    extra = {"options": options} if options else None
    result = math_answer.compute_score("AI4Math/MathVerse", respond(answer), "C, D", extra)
    assert result["score"] == (1.0 if correct else 0.1), result


@pytest.mark.parametrize(
    ("truth", "letters"),
    [
        *[("C, D", {"C", "D"}), ("A, C, E", {"A", "C", "E"}), ("C\nD", {"C", "D"}), ("D\nC", {"C", "D"})],
        *[("D, C", None), ("C", None), ("C,D", None), ("R, D, N", None), ("C\nC", None), ("C D", None)],
    ],
)
def test_multi_letter_truth_is_the_preparers_form_or_mathverses(truth, letters):
    assert multi_letter_truth(truth) == (None if letters is None else frozenset(letters))


@pytest.mark.parametrize(
    ("text", "truth", "angle", "kind"),
    [
        ("090° T", True, 90, "true"),
        ("053 ° T", True, 53, "true"),
        ("$090^{\\circ}$ T", True, 90, "true"),
        ("N 53° E", True, 53, "quadrant"),
        ("S 20° W", True, 200, "quadrant"),
        ("N 10° W", True, 350, "quadrant"),
        ("90", True, None, None),  # a plain number is not a bearing ground truth
        ("90", False, 90, "number"),
        ("360° T", True, None, None),
        ("N 95° E", True, None, None),
    ],
)
def test_read_bearing(text, truth, angle, kind):
    bearing = read_bearing(text, truth=truth)
    got = None if bearing is None else (bearing.angle, bearing.kind)
    assert got == (None if angle is None else (angle, kind))


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
