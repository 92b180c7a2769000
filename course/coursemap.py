"""One picture of the whole course: every lesson, the part it belongs to, what leads where.

The lessons are read from ``notebooks/`` (their numbers and first headings), so
the map grows with the course::

    >>> figure = draw_course_map()      # a matplotlib Figure
    >>> course_map()                    # the same, as a PNG a notebook shows
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from IPython.display import Image
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

__all__ = ["PARTS", "Lesson", "course_map", "draw_course_map", "lessons"]

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

#: (first lesson, last lesson, part title, colour) — a lesson belongs to the part whose range holds it.
PARTS = [
    (0, 0, "set-up", "#d9d9d9"),
    (1, 3, "A · notifications in a Flask app", "#9ecae1"),
    (4, 8, "B · async HTTP clients", "#a1d99b"),
    (9, 9, "capstone: B measures A", "#fdae6b"),
    (10, 11, "beyond one process", "#bcbddc"),
]


@dataclass(frozen=True)
class Lesson:
    number: int
    title: str


def lessons(folder: Path = NOTEBOOKS) -> list[Lesson]:
    """The lessons in ``folder``, in order: number and the title of their first heading."""
    found = []
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        first = json.loads(path.read_text())["cells"][0]
        heading = "".join(first["source"]).splitlines()[0]
        title = re.sub(r"^#+\s*\d+\s*[·—-]\s*", "", heading).split(":")[0].strip()
        found.append(Lesson(int(path.name[:2]), title))
    return found


def _part(number: int) -> tuple[str, str]:
    for first, last, title, colour in PARTS:
        if first <= number <= last:
            return title, colour
    return "more", "#eeeeee"


def draw_course_map(folder: Path = NOTEBOOKS) -> Figure:
    """A figure with one box per lesson, coloured by part, joined in course order."""
    items = lessons(folder)
    columns = 4
    rows = (len(items) + columns - 1) // columns
    figure = Figure(figsize=(11, 1.25 * rows + 0.9))
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, columns)
    axes.set_ylim(-0.9, rows)
    axes.axis("off")
    centres = []
    for index, lesson in enumerate(items):
        row, column = divmod(index, columns)
        if row % 2:  # snake: each row runs back, so the arrows stay short
            column = columns - 1 - column
        x, y = column + 0.5, rows - row - 0.5
        centres.append((x, y))
        _, colour = _part(lesson.number)
        axes.add_patch(
            FancyBboxPatch((x - 0.44, y - 0.3), 0.88, 0.6, boxstyle="round,pad=0.02", fc=colour, ec="#555555")
        )
        axes.text(x, y + 0.12, f"{lesson.number:02d}", ha="center", va="center", fontsize=12, weight="bold")
        axes.text(x, y - 0.12, lesson.title, ha="center", va="center", fontsize=8.5, wrap=True)
    for start, end in itertools.pairwise(centres):
        axes.add_patch(
            FancyArrowPatch(_edge(start, end), _edge(end, start), arrowstyle="-|>", mutation_scale=12, color="#555555")
        )
    shown = {_part(lesson.number) for lesson in items}
    for index, (_, _, title, colour) in enumerate(part for part in PARTS if (part[2], part[3]) in shown):
        axes.add_patch(FancyBboxPatch((0.1 + index * 0.8, -0.75), 0.12, 0.25, boxstyle="round,pad=0.01", fc=colour))
        axes.text(0.27 + index * 0.8, -0.62, title, va="center", fontsize=7.5)
    return figure


def _edge(start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    """The point of ``start``'s box nearest to ``end``, on the side facing it."""
    (x, y), (x2, y2) = start, end
    if abs(y2 - y) > 0.5:
        return x, y + (-0.32 if y2 < y else 0.32)
    return x + (0.46 if x2 > x else -0.46), y


def course_map(folder: Path = NOTEBOOKS) -> Image:
    """The map as a PNG image, for a notebook cell (one output, the same on every run)."""
    buffer = BytesIO()
    draw_course_map(folder).savefig(buffer, format="png", dpi=80)
    return Image(data=buffer.getvalue(), format="png")
