"""Plain-text output shared by the CLI and the benchmark report."""

from __future__ import annotations

__all__ = ["md_table"]


def md_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped).

    Examples
    --------
    >>> print(md_table(["a", "b"], [[1, "x|y"]]))
    | a | b |
    |---|---|
    | 1 | x\\|y |
    """

    def cell(v):
        return str("" if v is None else v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)
