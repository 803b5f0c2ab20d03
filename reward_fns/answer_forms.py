"""The forms in which models (and datasets) write one answer, reduced to a comparable reading.

A boxed answer such as ``Area $= 9.4 \\mathrm{~cm}^{2}$`` is read as ``name`` ``Area``, ``core`` ``9.4`` and
``unit`` ``cm^2``; ``30^{\\circ}``, ``30°`` and ``30 degrees`` all read as core ``30`` with unit ``deg``;
``1{,}000`` and ``1,000`` read as ``1000``; ``25\\%`` as ``25`` with unit ``%``. Two answers match when their cores
are equal (as strings, or as exact numbers: ``\\frac{1}{2}`` = ``0.5``) and their units do not conflict (one may
omit the unit; ``cm`` against ``m`` is a mismatch). A core that is empty (only a unit) never matches.

Compass bearings (:func:`read_bearing`): a ground truth written as a true bearing (``090° T``, ``053 ° T``) or
a quadrant bearing (``N 53° E``) is compared as an angle clockwise from north, so ``90°T``, ``090^{\\circ}`` and
``N 90° E`` all match ``090° T``; a quadrant truth needs a bearing (``53°`` alone has no quadrant).

Option letters (``B``, ``(B)``, ``B.``, ``Option B``, ``Answer: B``, ``(B) text``) are read by
:func:`option_letter`; several letters (``C, D``, ``D and C``, ``(C) (D)``) by :func:`option_letters`, for
ground truths that name several options (:func:`multi_letter_truth`: ``C, D``, as the preparers write them).
Everything here is linear in the input: regular expressions are used only on strings of at most
:data:`MAX_FORM_CHARS` characters and have no nested quantifiers.

LaTeX escapes damaged into control characters (``\\x0c`` + ``rac{1}{2}`` for ``\\frac{1}{2}``, a JSON escape that
ate the backslash) are restored by :func:`restore_latex_escapes` where the letters that follow spell a LaTeX
command; the preparers use it on source records, the reward on ground truths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction

#: Answers longer than this are compared as whitespace-folded strings only.
MAX_FORM_CHARS = 256

# ------------------------------------------------------------------------------------- damaged LaTeX escapes

#: The control character a JSON/C escape turns ``\f``, ``\b``, ``\t``, ``\r``, ``\v``, ``\a``, ``\n`` into.
CONTROL_ESCAPES = {"\f": "f", "\b": "b", "\t": "t", "\r": "r", "\v": "v", "\a": "a", "\n": "n"}
#: LaTeX commands whose first letter is one of those escapes (the word after the control character must be one).
LATEX_COMMANDS = frozenset(
    """frac dfrac tfrac forall flat beta bar binom bf big bigg boxed bot bullet because backslash text textbf
    textit textrm tan tanh tau theta times to top triangle tilde therefore rho right rightarrow rm rangle rceil
    rfloor vec varphi vartheta varepsilon varpi vee vert vdots vdash alpha angle approx arc arcsin arccos arctan
    ast aleph neq nu nabla not ne ni neg nexists notin""".split()  # noqa: SIM905 - a word list reads best so
)
_CONTROL_WORD = re.compile(r"([\f\b\t\r\v\a\n])([A-Za-z]+)")


def restore_latex_escapes(text: str, *, math_only: bool = False) -> tuple[str, int]:
    """``text`` with each control character that stands for an eaten LaTeX backslash restored, and the count.

    A control character counts as damage only when it is directly followed by letters that, with the escape's
    letter in front, spell a LaTeX command (``\\x0c`` + ``rac`` -> ``\\frac``); a tab between two words stays a
    tab. ``math_only`` restricts repairs to ``$...$`` spans (for question texts, where newlines are prose); a
    newline is only ever restored there or when ``math_only`` is false and it spells a command.
    """
    if not any(ch in text for ch in CONTROL_ESCAPES):
        return text, 0
    repairs = 0

    def fix(match: re.Match) -> str:
        nonlocal repairs
        word = CONTROL_ESCAPES[match.group(1)] + match.group(2)
        if word in LATEX_COMMANDS:
            repairs += 1
            return "\\" + word
        return match.group(0)

    if not math_only:
        return _CONTROL_WORD.sub(fix, text), repairs
    parts = text.split("$")
    for i in range(1, len(parts), 2):  # odd parts are inside $...$ (and $$...$$ leaves an empty part between)
        if i < len(parts) - 1:  # an unclosed trailing $ is not math
            parts[i] = _CONTROL_WORD.sub(fix, parts[i])
    return "$".join(parts), repairs


# --------------------------------------------------------------------------------------------------- reading

_WRAPPED = re.compile(r"\\(?:text|textrm|textbf|textit|mathrm|mathbf|mathit|rm|mbox|operatorname)\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\[,;:! ]|~|\\quad|\\qquad|\\displaystyle|\\left(?![a-zA-Z])|\\right(?![a-zA-Z])")
_DEGREE = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree|°|º")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:[, ]\d{3})+(?:\.\d+)?")
#: A name before ``=``: words, variables, subscripts, \angle / \overline{AB} / \triangle; no operators.
_NAME = re.compile(r"(?:[A-Za-z]|\\[A-Za-z])[A-Za-z0-9_{}\\ '()]{0,39}")
_ANSWER_PREFIX = re.compile(r"(?i)(?:the\s+)?(?:final\s+|correct\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:：]?\s*")
_FREE_PREFIX = re.compile(r"(?i)(?:the\s+)?(?:final\s+)?answer\s*(?:is\s*:?|[:：])\s*")
_LETTER = re.compile(r"\(?\s*([A-Z])\s*\)?(?:[.:)：]|\s|$)")

#: unit spelling -> canonical unit ('' = a generic unit that conflicts with nothing)
_UNITS: dict[str, str] = {
    "degrees": "deg",
    "degree": "deg",
    "deg": "deg",
    "percent": "%",
    "%": "%",
    "units": "",
    "unit": "",
    "square units": "",
    "sq units": "",
    "sq. units": "",
    "cubic units": "",
    "mm": "mm",
    "cm": "cm",
    "km": "km",
    "m": "m",
    "meters": "m",
    "metres": "m",
    "meter": "m",
    "centimeters": "cm",
    "centimetres": "cm",
    "millimeters": "mm",
    "kilometers": "km",
    "in": "in",
    "inches": "in",
    "inch": "in",
    "ft": "ft",
    "feet": "ft",
    "foot": "ft",
    "yd": "yd",
    "yards": "yd",
    "miles": "mi",
    "mi": "mi",
    "kg": "kg",
    "g": "g",
    "grams": "g",
    "mg": "mg",
    "lb": "lb",
    "lbs": "lb",
    "pounds": "lb",
    "s": "s",
    "sec": "s",
    "seconds": "s",
    "min": "min",
    "minutes": "min",
    "h": "h",
    "hours": "h",
    "hr": "h",
    "days": "day",
    "years": "year",
    "year": "year",
    "dollars": "$",
    "dollar": "$",
    "cents": "cent",
    "ml": "ml",
    "l": "l",
    "liters": "l",
    "litres": "l",
    "n": "N",
    "j": "J",
    "w": "W",
    "v": "V",
    "pa": "Pa",
}
#: Units of one letter are only read as units when separated from the number (``5 m``, not ``5m``: a variable).
_SPELLINGS = sorted(_UNITS, key=len, reverse=True)
_UNIT_AT_END = re.compile(
    r"(?<![A-Za-z\\])(" + "|".join(re.escape(u) for u in _SPELLINGS) + r")"
    r"\s*(?:\^\s*\{?\s*([23])\s*\}?|([²³]))?\s*$",
    re.IGNORECASE,
)
_SUPERSCRIPT = {"²": "2", "³": "3"}


@dataclass(frozen=True)
class Reading:
    """One answer read: its value text ``core`` (whitespace folded), canonical ``unit`` and leading ``name``."""

    core: str
    unit: str = ""
    name: str = ""

    @property
    def key(self) -> str:
        """The core without any whitespace, for string equality."""
        return "".join(self.core.split())


def _unwrap_all(text: str) -> str:
    """Replace ``\\text{...}``-style groups (no nested braces) by their content, innermost first."""
    for _ in range(4):
        new = _WRAPPED.sub(lambda m: f" {m.group(1)} ", text)
        if new == text:
            break
        text = new
    return text


def _split_name(text: str) -> tuple[str, str]:
    """``("Area", "9.4")`` for ``Area = 9.4``; the name must look like one (no operators or numbers alone)."""
    cut = max(text.rfind("="), text.rfind("\\approx"))
    if cut <= 0:
        return "", text
    left = text[:cut].rstrip("<>!:")
    if left != text[:cut]:  # <=, >=, != are relations, not names
        return "", text
    right = text[cut + (len("\\approx") if text.startswith("\\approx", cut) else 1) :].strip()
    left = left.strip()
    if not right or "=" in left or not _NAME.fullmatch(left):
        return "", text
    return " ".join(left.split()), right


def read_answer(text: str) -> Reading:
    """Read one answer (a boxed prediction or a ground truth) into a :class:`Reading`."""
    if len(text) > 4 * MAX_FORM_CHARS:
        return Reading(" ".join(text.split()))
    text, _ = restore_latex_escapes(text)  # before folding whitespace: a form feed may be an eaten \f
    text = " ".join(text.split())
    if len(text) > MAX_FORM_CHARS:
        return Reading(text)
    text = text.replace("\\$", " dollars ").replace("$", "").replace("−", "-").replace("{,}", ",")
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\%", "%")
    text = _SPACING.sub(" ", text)
    text = _DEGREE.sub(" degrees ", text)
    text = _unwrap_all(text)
    text = " ".join(text.split()).rstrip(".").strip()
    prefix = _FREE_PREFIX.match(text)
    if prefix is not None:
        text = text[prefix.end() :]
    name, text = _split_name(text)
    unit = ""
    match = _UNIT_AT_END.search(text)
    if match is not None:
        spelling = match.group(1).lower()
        core = text[: match.start()].rstrip()
        separated = match.start() > 0 and text[match.start() - 1] == " "
        if core and core[-1] in "0123456789})." and (len(spelling) > 1 or separated or not spelling.isalpha()):
            power = match.group(2) or _SUPERSCRIPT.get(match.group(3) or "", "")
            unit = _UNITS[spelling] + (f"^{power}" if power and _UNITS[spelling] else "")
            text = core
        elif not core and spelling not in ("%",) and len(spelling) > 1 and text.lower() == match.group(0).lower():
            text = ""  # only a unit
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "").replace(" ", "")
    if text.endswith("%"):
        text, unit = text[:-1].rstrip(), unit or "%"
    return Reading(text, unit, name)


# --------------------------------------------------------------------------------------------------- numbers

_INT_OR_DECIMAL = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_SLASH_FRACTION = re.compile(r"([-+]?)(\d+)/(\d+)")
_TEX_FRACTION = re.compile(r"([-+]?)\\frac(?:\{\s*([-+]?\d+)\s*\}|(\d))(?:\{\s*(\d+)\s*\}|(\d))")


@dataclass(frozen=True)
class Number:
    """An exact number and, when written as a decimal, its count of decimal places."""

    value: Fraction
    decimals: int | None  # None: written as an integer fraction (not a decimal literal)


def parse_number(key: str) -> Number | None:
    """An integer, decimal, ``a/b`` or ``\\frac{a}{b}`` (whitespace already removed), else ``None``."""
    if len(key) > 40:
        return None
    if _INT_OR_DECIMAL.fullmatch(key):
        try:
            value = Decimal(key)
        except InvalidOperation:
            return None
        decimals = len(key.split(".", 1)[1]) if "." in key else 0
        return Number(Fraction(value), decimals)
    match = _SLASH_FRACTION.fullmatch(key)
    if match is not None:
        sign, num, den = match.groups()
        return None if int(den) == 0 else Number(Fraction(int(sign + num), int(den)), None)
    match = _TEX_FRACTION.fullmatch(key)
    if match is not None:
        sign, num_braced, num_digit, den_braced, den_digit = match.groups()
        num, den = int(num_braced or num_digit), int(den_braced or den_digit)
        if den == 0:
            return None
        return Number(Fraction(-num if sign == "-" else num, den), None)
    return None


def _rounded(value: Fraction, places: int) -> Fraction:
    quantum = Decimal(1).scaleb(-places)
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return Fraction(exact.quantize(quantum, rounding=ROUND_HALF_UP))


def numbers_equal(pred: Number, truth: Number) -> bool:
    """Exact equality, plus the two honest roundings between fractions and decimals.

    * a decimal prediction with at least two decimals for a fraction that has no finite decimal form
      (``0.33`` for ``\\frac{1}{3}``, ``2.77`` for ``\\frac{36}{13}``): equal to the truth rounded to its places;
    * a fraction for a decimal ground truth with decimals (MathVista's rounded answers: ``\\frac{8}{3}`` for
      ``2.67``): the fraction rounded to the truth's places equals it.

    A decimal against a decimal is exact: ``9.4`` is not ``94`` nor ``9.45``, ``1.2`` is not ``1.25``.
    """
    if pred.value == truth.value:
        return True
    if pred.decimals is not None and truth.decimals is None:
        terminating = _only_2_and_5(truth.value.denominator)
        return not terminating and pred.decimals >= 2 and _rounded(truth.value, pred.decimals) == pred.value
    if pred.decimals is None and truth.decimals is not None and truth.decimals >= 1:
        return _rounded(pred.value, truth.decimals) == truth.value
    return False


def _only_2_and_5(n: int) -> bool:
    for p in (2, 5):
        while n % p == 0:
            n //= p
    return n == 1


# -------------------------------------------------------------------------------------------------- matching


def forms_match(pred: str, truth: str) -> bool | None:
    """``True`` / ``False`` when the reading decides, ``None`` when only a symbolic check could tell."""
    try:
        return _forms_match(pred, truth)
    except (ArithmeticError, ValueError):  # e.g. decimal.InvalidOperation on a 40-digit number
        return None


def _forms_match(pred: str, truth: str) -> bool | None:
    bearing = bearings_match(pred, truth)
    if bearing is not None:
        return bearing
    p, t = read_answer(pred), read_answer(truth)
    if not p.key or not t.key:
        return False
    if p.unit and t.unit and p.unit != t.unit:
        return False
    if p.name and t.name and len(p.name) == 1 and len(t.name) == 1 and p.name != t.name:
        return False  # x = 5 is not y = 5
    if p.key == t.key:
        return True
    p_num, t_num = parse_number(p.key), parse_number(t.key)
    if p_num is not None and t_num is not None:
        return numbers_equal(p_num, t_num)
    return None


# -------------------------------------------------------------------------------------------------- bearings

_BEARING_DEGREE = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree|º|(?i:\s*degrees?\b)")
_TRUE_BEARING = re.compile(r"(?i)(\d{1,3}(?:\.\d+)?)\s*(°)?\s*(T|true|true\s+north)?")
_QUADRANT_BEARING = re.compile(r"(?i)([NS])\s*(\d{1,2}(?:\.\d+)?)\s*°?\s*([EW])")


@dataclass(frozen=True)
class Bearing:
    """A bearing as an angle clockwise from north in [0, 360), and how it was written."""

    angle: Fraction
    kind: str  # "true" (090° T), "quadrant" (N 53° E) or "number" (90, 90°: a prediction only)


def read_bearing(text: str, *, truth: bool = False) -> Bearing | None:
    """A compass bearing: ``090° T``, ``53°T``, ``N 53° E``, ``S 20° W``; for a prediction also ``90``, ``90°``.

    A ground truth (``truth=True``) is a bearing only when written as one: a three-figure value with ``T`` (true
    north) or a quadrant form; a plain number stays a number.
    """
    if len(text) > MAX_FORM_CHARS:
        return None
    text = _unwrap_all(text.replace("$", "").replace("~", " ").replace("\\,", " ").replace("\\ ", " "))
    text = _BEARING_DEGREE.sub("°", text)
    text = " ".join(text.split()).rstrip(".").strip()
    match = _QUADRANT_BEARING.fullmatch(text)
    if match is not None:
        first, value, second = match.group(1).upper(), Fraction(Decimal(match.group(2))), match.group(3).upper()
        if value > 90:
            return None
        angle = {("N", "E"): value, ("S", "E"): 180 - value, ("S", "W"): 180 + value, ("N", "W"): 360 - value}
        return Bearing(angle[first, second] % 360, "quadrant")
    match = _TRUE_BEARING.fullmatch(text)
    if match is None or (truth and not match.group(3)):
        return None
    value = Fraction(Decimal(match.group(1)))
    if value >= 360:
        return None
    return Bearing(value, "true" if match.group(3) else "number")


def bearings_match(pred: str, truth: str) -> bool | None:
    """``None`` when ``truth`` is not a bearing; else whether ``pred`` names the same bearing (a quadrant truth
    needs a bearing, not a bare angle)."""
    expected = read_bearing(truth, truth=True)
    if expected is None:
        return None
    got = read_bearing(pred)
    if got is None or (expected.kind == "quadrant" and got.kind == "number"):
        return False
    return got.angle == expected.angle


# ------------------------------------------------------------------------------------------ several letters

_MULTI_TRUTH = re.compile(r"[A-Z](?:, [A-Z])+")
_MULTI_LINES = re.compile(r"[A-Z](?:\n[A-Z])+")
_LETTER_ITEM = re.compile(r"\(\s*([A-Z])\s*\)|([A-Z])[.:)]?")
_LETTER_GAP = re.compile(r"(?i)\s*(?:,|;|/|&|\band\b|\s)\s*|")
_LETTERS_PREFIX = re.compile(
    r"(?i)(?:the\s+)?(?:final\s+|correct\s+)?(?:answers?|options?|choices?)(?:\s+(?:are|is))?\s*[:：]?\s*"
)


def multi_letter_truth(truth: str) -> frozenset[str] | None:
    """The letters of a ground truth naming several options: ``C, D`` as the preparers write it (distinct capitals
    in alphabetical order), or MathVerse's raw ``C`` newline ``D`` (what ``--prompt-style paper`` keeps)."""
    text = truth.strip()
    if _MULTI_LINES.fullmatch(text):
        letters = text.split("\n")
        return frozenset(letters) if len(set(letters)) == len(letters) else None
    if not _MULTI_TRUTH.fullmatch(text):
        return None
    letters = text.split(", ")
    return frozenset(letters) if letters == sorted(set(letters)) else None


def option_letters(answer: str) -> list[str] | None:
    """Every option letter an answer lists, in order: ``C, D``, ``D and C``, ``C;D``, ``(C) (D)``, ``(C)(D)``,
    ``Options C and D``; ``None`` unless the answer is letters and separators only (``CD`` may be a segment)."""
    text = " ".join(answer.split())
    if len(text) > MAX_FORM_CHARS:
        return None
    text = _unwrap_all(text.replace("$", "")).replace("**", "").strip().rstrip(".").strip()
    prefix = _LETTERS_PREFIX.match(text)
    if prefix is not None and prefix.end() < len(text):
        text = text[prefix.end() :]
    letters: list[str] = []
    pos = 0
    while pos < len(text):
        if letters:
            gap = _LETTER_GAP.match(text, pos)
            if gap.end() == pos and text[pos - 1] != ")" and text[pos] != "(":
                return None  # two letters with nothing between them: CD is a segment, not C and D
            pos = gap.end()
        item = _LETTER_ITEM.match(text, pos)
        if item is None:
            return None
        letters.append(item.group(1) or item.group(2))
        pos = item.end()
    return letters or None


def letters_match(pred: str, truth_letters: frozenset[str]) -> bool:
    """Whether ``pred`` names exactly the options of ``truth_letters`` (any order and separator)."""
    letters = option_letters(pred)
    return letters is not None and frozenset(letters) == truth_letters


def symbolic_operands(pred: str, truth: str) -> tuple[str, str]:
    """The cores to hand to a symbolic checker (units, names, degrees and ``$`` removed)."""
    return read_answer(pred).core, read_answer(truth).core


def option_letter(answer: str) -> str | None:
    """The option letter an answer names: ``B``, ``(B)``, ``B.``, ``B)``, ``Option B``, ``Answer: B``, ``(B) 12``."""
    text = " ".join(answer.split())
    if len(text) > MAX_FORM_CHARS:
        text = text[:MAX_FORM_CHARS]
    text = _unwrap_all(text.replace("$", "")).replace("**", "").strip()
    prefix = _ANSWER_PREFIX.match(text)
    if prefix is not None and prefix.end() < len(text):
        text = text[prefix.end() :]
    text = text.strip()
    match = _LETTER.match(text)
    if match is None:
        return None
    rest = text[match.end() :]
    bare = not text.startswith("(") and not match.group(0).rstrip().endswith((".", ":", ")", "："))
    if bare and rest.strip():
        return None  # `C and more`, `A triangle`: a word followed by text, not an option named
    return match.group(1)


def option_key(text: str) -> str:
    """A spelling-insensitive key for an option's text: whitespace, LaTeX spacing, ``$``, degree signs, case."""
    reading = read_answer(text)
    unit = reading.unit if reading.unit not in ("deg", "") else ""
    return (reading.key + unit).casefold()
