"""The `cliproxy usage` tables: totals of the usage ledger, and a breakdown."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table

from cliproxy.addons.store.ledger import TOTAL_KEYS, Summary

_HEADINGS = {
    "requests": "Requests",
    "input_tokens": "Input",
    "cached_tokens": "Cached",
    "output_tokens": "Output",
    "reasoning_tokens": "Reasoning",
    "image_tokens": "Image",
    "errors": "Errors",
}
_KEYS = TOTAL_KEYS


def _table(title: str, first: str | None) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    if first:
        table.add_column(first.capitalize(), overflow="fold")
    for key in _KEYS:
        table.add_column(_HEADINGS[key], justify="right")
    return table


def usage_table(summary: Summary, by: str | None, since: str) -> Group:
    """Totals for the period, then one row per group when a breakdown was asked for."""
    totals = _table(f"Usage in the last {since}", None)
    totals.add_row(*(f"{summary.totals[k]:,}" for k in _KEYS))
    if by is None:
        return Group(totals)
    breakdown = _table(f"By {by}", by)
    for row in summary.rows:
        breakdown.add_row(str(row[by]), *(f"{row[k]:,}" for k in _KEYS))
    return Group(totals, breakdown)
