"""Markdown tables that render as tables (GitHub-flavoured): one header cell per column, escaped pipes."""
from __future__ import annotations

from typing import Optional, Sequence


def cell(value: object) -> str:
    """A table cell: a ``|`` inside it would start another column, so it is escaped; a newline would end the row."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Sequence[Sequence[object]], align: Optional[str] = None) -> str:
    """A table whose every row has the header's number of cells; ``align``: one of ``l``/``r`` per column."""
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"expected {len(header)} cells in every row of a table, got {len(row)}: {list(row)}")
    if align is not None and len(align) != len(header):
        raise ValueError(f"expected one alignment per column ({len(header)}), got {align!r}")
    rule = ["---:" if a == "r" else "---" for a in (align or "l" * len(header))]
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
