"""Columns of text that fit a terminal: kubectl's layout, with a width it never exceeds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

GAP = "  "
ELLIPSIS = "…"


@dataclass(frozen=True)
class Column:
    """A column's header; a *shrinkable* column may be cut down to *floor* characters
    (its cells then end in an ellipsis) when the table would be wider than allowed."""

    header: str
    shrinkable: bool = False
    floor: int = 0


def render(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int | None
) -> list[str]:
    """The table's lines: a header, then one line per row, each column as wide as its
    widest cell and two spaces between columns. With *width*, the shrinkable columns give
    up characters, the widest first, until each line fits *width* or they are at their
    floors; ``None``: no limit."""
    widths = natural_widths(columns, rows)
    if width is not None:
        widths = _fitted(columns, widths, width)
    lines = [_line([column.header for column in columns], widths)]
    lines.extend(_line(row, widths) for row in rows)
    return lines


def natural_widths(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> list[int]:
    """Each column's width: its widest cell or its header."""
    return [
        max([len(column.header), *(len(row[i]) for row in rows)])
        for i, column in enumerate(columns)
    ]


def _fitted(columns: Sequence[Column], widths: list[int], width: int) -> list[int]:
    fitted = list(widths)
    excess = sum(fitted) + len(GAP) * (len(fitted) - 1) - width
    while excess > 0:
        room = [
            (fitted[i] - max(column.floor, len(column.header)), i)
            for i, column in enumerate(columns)
            if column.shrinkable
        ]
        spare, widest = max(room, default=(0, -1))
        if spare <= 0:
            break
        fitted[widest] -= 1
        excess -= 1
    return fitted


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return GAP.join(
        _cut(cell, size).ljust(size) for cell, size in zip(cells, widths, strict=True)
    ).rstrip()


def _cut(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - len(ELLIPSIS)] + ELLIPSIS
