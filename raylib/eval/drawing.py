"""The pictures' text: one font at sizes that render every space, its widths, and lines wrapped
to a picture's width (a title that names a long scene path is wrapped, not cut at the edge).

Pillow's own font (``ImageFont.load_default(size)``, FreeType, shipped inside Pillow: no system
font needed). At its old default of 10 px its hinting drops spaces ("lesssure"); 12 px and
above keep them. It has no arrows or comparison signs: ``text`` writes them in ASCII.
"""

from __future__ import annotations

from functools import lru_cache

SIZE = 12  # body text
TITLE = 13
LINE = 16  # px from one line of body text to the next

_ASCII = str.maketrans({"→": "->", "≥": ">=", "≤": "<=", "…": "...", "—": "-", "–": "-", "×": "x"})


@lru_cache(maxsize=None)
def font(size: int = SIZE):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def plain(s: str) -> str:
    """``s`` in the characters the font has."""
    return str(s).translate(_ASCII)


def width(s: str, size: int = SIZE) -> int:
    return int(round(font(size).getlength(plain(s))))


def text(draw, xy, s: str, size: int = SIZE, fill=(0, 0, 0)) -> None:
    draw.text(xy, plain(s), fill=fill, font=font(size))


def wrap(s: str, max_width: int, size: int = SIZE) -> list[str]:
    """``s`` in lines of at most ``max_width`` px, broken at spaces, else after a ``/`` (a path),
    else anywhere."""
    lines: list[str] = []
    line = ""
    for word in plain(s).split(" "):
        cand = f"{line} {word}" if line else word
        if width(cand, size) <= max_width:
            line = cand
            continue
        if line:
            lines.append(line)
        line = ""
        while width(word, size) > max_width:  # one word longer than the line: cut it
            cut = _longest_prefix(word, max_width, size)
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    if line or not lines:
        lines.append(line)
    return lines


def _longest_prefix(word: str, max_width: int, size: int) -> int:
    k = 1
    while k < len(word) and width(word[: k + 1], size) <= max_width:
        k += 1
    slash = word.rfind("/", 0, k)
    return slash + 1 if slash > 0 else k


def block(draw, xy, lines: list[str], size: int = SIZE, line: int = LINE, fill=(0, 0, 0)) -> None:
    """``lines`` one under another from ``xy``."""
    x, y = xy
    for i, s in enumerate(lines):
        text(draw, (x, y + i * line), s, size, fill)
