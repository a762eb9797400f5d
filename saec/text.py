"""Plain-text tables for the terminal (the command line's output, reports' ``str``)."""

from __future__ import annotations


def text_table(rows: list[list[str]]) -> str:
    """``rows`` (a header first) as left-aligned columns with a rule under the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


__all__ = ["text_table"]
