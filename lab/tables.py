"""The one place tables are written: Markdown (summary.md, compression.md, attack.md), CSV rows of dataclasses
(compression.csv, attack.csv) and HTML (the report). Callers choose the columns and format the cells; these
helpers only lay them out, escaping what the format needs escaped."""

from __future__ import annotations

import csv
import html
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any


def markdown_cell(value: Any) -> str:
    """A float to 6 significant digits, anything else as text; `|` escaped so it stays inside its cell."""
    return f"{value:.6g}" if isinstance(value, float) else str(value).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table as lines: the header, the separator, one line per row (cells by `markdown_cell`)."""
    lines = ["| " + " | ".join(map(markdown_cell, header)) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(map(markdown_cell, row)) + " |" for row in rows]


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A CSV file: the header, then the rows."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_dataclass_csv(path: Path, rows: Sequence[Any]) -> None:
    """Dataclass instances as a CSV file, one column per field (None as an empty cell, as csv writes it)."""
    write_csv(path, list(asdict(rows[0])), (list(asdict(r).values()) for r in rows))


def html_table(header: Sequence[str], rows: Iterable[Sequence[Any]], css_class: str | None = None,
               escape: bool = True) -> str:
    """An HTML table; cells are escaped text unless `escape` is False (cells already HTML, e.g. <code>)."""
    def cells(tag: str, values: Sequence[Any]) -> str:
        return "".join(f"<{tag}>{html.escape(str(v)) if escape else v}</{tag}>" for v in values)

    head = f"<table class='{css_class}'>" if css_class else "<table>"
    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"{head}<tr>{cells('th', header)}</tr>{body}</table>"
