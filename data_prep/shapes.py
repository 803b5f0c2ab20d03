"""A learnable picture task drawn here (nothing downloaded) -> ``OUT/{train,test}.parquet`` ($MAPO_DATA_DIR/shapes).

Each 224 x 224 picture holds filled circles and squares on white; every answer is one digit (1 to ``--colours``
for colour, 1-4 for count), checked by the router reward (``data_source`` ``mapo/shapes``, scored like a math
answer in ``\\boxed{}``). Two kinds of question, so that a small model meets easy and hard prompts and groups of
rollouts succeed at varied rates (``--count-share`` of them count questions, 1/4 by default):

* ``colour``: one large shape filling most of the picture; "What colour is the shape? Answer 1 for red, 2 for
  green[, 3 for blue, 4 for yellow]." The answer is a function of the mean pixel colour. With two colours the tiny
  model of ``compare`` reads every one within 4 steps; with four (``compare``'s task) it learns them one by one
  (docs/learning.md).
* ``count`` (hard): one to four small shapes of one colour; "How many shapes are in the picture?"

Answers are balanced within each kind (exactly when each kind's count is a multiple of its answers). Train and
test pictures come from different seeds (``--seed`` and ``--seed + 1``), and a test picture whose bytes equal a
training picture's (SHA-256) is drawn again, so no held-out picture is a training picture. ``--local-dataset-path``
is not used.

    python -m data_prep.shapes --train-size 512 --test-size 64 --local-save-dir out/shapes
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import random
import sys
from dataclasses import dataclass

from data_prep.arguments import base_parser, out_dir_of, run_main
from data_prep.prompts import math_prompt
from data_prep.rows import make_row
from data_prep.writer import Summary, write_split
from mapo_verl.data_sources import BY_NAME

DATA_SOURCE = BY_NAME["shapes"].data_source
SIZE = 224
#: the share of count (hard) questions in each split
COUNT_SHARE = 0.25
#: answer digit -> (colour name, RGB); a task of N colours uses the first N, and its question names them
PALETTE = {
    "1": ("red", (220, 30, 30)),
    "2": ("green", (30, 170, 40)),
    "3": ("blue", (40, 60, 220)),
    "4": ("yellow", (230, 200, 20)),
}
#: colours by default (``--colours``)
DEFAULT_COLOURS = 2
COUNT_QUESTION = "How many shapes are in the picture? Answer with a number from 1 to 4."
KINDS = ("colour", "count")
#: kind -> the text every question of that kind holds (:func:`question_kind` matches it)
QUESTIONS = {"colour": "What colour is the shape?", "count": COUNT_QUESTION}


def colours(count: int = DEFAULT_COLOURS) -> dict[str, tuple[str, tuple[int, int, int]]]:
    """The first ``count`` colours of :data:`PALETTE` (2 to 4)."""
    if not 2 <= count <= len(PALETTE):
        raise ValueError(f"colours must be 2 to {len(PALETTE)}, got {count}")
    return dict(list(PALETTE.items())[:count])


def colour_question(count: int = DEFAULT_COLOURS) -> str:
    """ "What colour is the shape? Answer 1 for red, 2 for green." for ``count`` colours."""
    names = ", ".join(f"{digit} for {name}" for digit, (name, _) in colours(count).items())
    return f"{QUESTIONS['colour']} Answer {names}."


COLOUR_QUESTION = colour_question()


def answers(kind: str, colour_count: int = DEFAULT_COLOURS) -> tuple[str, ...]:
    """The answers a question of ``kind`` allows (colour: 1 to ``colour_count``; count: 1-4)."""
    return tuple(colours(colour_count)) if kind == "colour" else ("1", "2", "3", "4")


def question_kind(text: str) -> str:
    """The kind of question a prompt asks (``colour``/``count``), else ``other``."""
    return next((kind for kind, question in QUESTIONS.items() if question in text), "other")


def picture_hash(image: bytes) -> str:
    """A picture's identity: the SHA-256 of its PNG bytes."""
    return hashlib.sha256(image).hexdigest()


@dataclass(frozen=True)
class Item:
    """One generated question: its kind, text, answer digit and PNG bytes."""

    kind: str
    question: str
    answer: str
    image: bytes


def _draw_shape(draw, box: tuple[int, int, int, int], colour: tuple[int, int, int], circle: bool) -> None:
    (draw.ellipse if circle else draw.rectangle)(box, fill=colour)


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def colour_item(answer: str, rng: random.Random, colour_count: int = DEFAULT_COLOURS) -> Item:
    """One large shape of the answer's colour, filling most of the picture: every image token sees the colour."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (SIZE, SIZE), "white")
    side = rng.randint(SIZE * 4 // 5, SIZE - 16)
    x, y = rng.randint(8, SIZE - side - 8), rng.randint(8, SIZE - side - 8)
    _draw_shape(ImageDraw.Draw(img), (x, y, x + side, y + side), PALETTE[answer][1], rng.random() < 0.5)
    return Item("colour", colour_question(colour_count), answer, _png(img))


def count_item(answer: str, rng: random.Random, colour_count: int = DEFAULT_COLOURS) -> Item:
    """``answer`` small shapes of one colour, one per quadrant (random quadrants, jittered), never overlapping."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (SIZE, SIZE), "white")
    draw = ImageDraw.Draw(img)
    colour = PALETTE[rng.choice(sorted(colours(colour_count)))][1]
    half = SIZE // 2
    for qx, qy in rng.sample([(0, 0), (half, 0), (0, half), (half, half)], int(answer)):
        side = rng.randint(half * 2 // 5, half * 3 // 5)
        x, y = qx + rng.randint(8, half - side - 8), qy + rng.randint(8, half - side - 8)
        _draw_shape(draw, (x, y, x + side, y + side), colour, rng.random() < 0.5)
    return Item("count", COUNT_QUESTION, answer, _png(img))


def generate(
    count: int,
    seed: int,
    count_share: float = COUNT_SHARE,
    colour_count: int = DEFAULT_COLOURS,
    exclude: frozenset[str] = frozenset(),
) -> list[Item]:
    """``count`` items, ``round(count * count_share)`` of them count questions and the rest colour questions,
    answers cycling through each kind's :func:`answers`, in a seeded order; a picture whose :func:`picture_hash` is
    in ``exclude`` (another split's) is drawn again."""
    if not 0.0 <= count_share <= 1.0:
        raise ValueError(f"count_share must lie in [0, 1], got {count_share}")
    rng = random.Random(seed)
    n_count = round(count * count_share)
    count_answers, colour_answers = answers("count"), answers("colour", colour_count)

    def fresh(draw, answer: str) -> Item:
        for _ in range(1000):
            item = draw(answer, rng, colour_count)
            if picture_hash(item.image) not in exclude:
                return item
        raise RuntimeError(f"1000 draws of a {answer!r} picture all equal excluded pictures")

    items = [fresh(count_item, count_answers[i % len(count_answers)]) for i in range(n_count)]
    items += [fresh(colour_item, colour_answers[i % len(colour_answers)]) for i in range(count - n_count)]
    rng.shuffle(items)
    return items


def row_of(item: Item, split: str, index: int) -> dict:
    """The item as a row of verl's schema (the math prompt's instruction; ground truth the digit)."""
    return make_row(
        data_source=DATA_SOURCE,
        content=math_prompt(item.question, 1),
        images=[{"bytes": item.image}],
        ability="math",
        ground_truth=item.answer,
        split=split,
        index=index,
        source_id=f"{split}-{index}",
        question=item.question,
        answer=item.answer,
        question_type=item.kind,
    )


def prepare(args: argparse.Namespace) -> Summary:
    summary = Summary("shapes", out_dir_of(args))
    taken: frozenset[str] = frozenset()
    for split, size, seed in (("train", args.train_size, args.seed), ("test", args.test_size, args.seed + 1)):
        items = generate(size, seed, args.count_share, args.colours, exclude=taken)
        taken = frozenset(picture_hash(item.image) for item in items)
        write_split(
            summary=summary,
            split=split,
            records=items,
            convert=lambda i, item, split=split: row_of(item, split, i),
            record_id=lambda i, item: f"item {i}",
            args=args,
            total=len(items),
        )
    summary.notes.append(
        f"data_source {DATA_SOURCE}: {', '.join(KINDS)} questions ({args.count_share:g} count), answers "
        f"1-{args.colours} / 1-4; no test picture equals a training picture (SHA-256)"
    )
    return summary


def _share(text: str) -> float:
    """``--count-share``: a number in [0, 1], else argparse's usage error naming the option and the value."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("shapes", __doc__)
    parser.add_argument("--train-size", type=int, default=512, help="training questions (512)")
    parser.add_argument("--test-size", type=int, default=64, help="held-out questions (64)")
    parser.add_argument(
        "--count-share", type=_share, default=COUNT_SHARE, help=f"share of count (hard) questions ({COUNT_SHARE:g})"
    )
    parser.add_argument(
        "--colours",
        type=int,
        choices=range(2, len(PALETTE) + 1),
        default=DEFAULT_COLOURS,
        help=f"colours the colour question asks about, 2-{len(PALETTE)} ({DEFAULT_COLOURS})",
    )
    parser.set_defaults(seed=0)
    return run_main(prepare, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
