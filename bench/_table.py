"""Plain-text tables: a header, a rule, left-aligned labels and right-aligned figures."""

from __future__ import annotations

from collections.abc import Sequence


def render(
    title: str, header: Sequence[str], rows: Sequence[Sequence[str]], *, labels: int = 1
) -> str:
    """The table as text: the first ``labels`` columns left-aligned, the figures right-aligned."""
    widths = [len(cell) for cell in header]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row {row!r} has {len(row)} cells, the header {len(header)}")
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(width) if column < labels else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([title, "", line(header), rule, *(line(row) for row in rows)])


def count(value: float) -> str:
    """A rate or a count with thousands separators: 1,234,567."""
    return f"{value:,.0f}"


def millis(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"
