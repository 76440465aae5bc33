"""Timestamps in account files: tolerant parsing, RFC 3339 output (auth-details §4.2)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

_FRACTION = re.compile(r"(\.\d{6})\d+")  # Python keeps at most 6 fractional digits


def now() -> datetime:
    return datetime.now(UTC)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with second precision, e.g. `2026-04-14T12:00:00Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    """A timezone-aware datetime from RFC 3339 (any fraction, `Z` or offset), `YYYY-MM-DD HH:MM[:SS]`
    or Unix seconds / milliseconds (values above 10^12 are ms). Naive values are taken as UTC.
    Anything else gives None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return parse_time(float(text))
        except ValueError:
            pass
        text = _FRACTION.sub(r"\1", text)
        if text.endswith(("z", "Z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e12 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def humanize(delta: timedelta) -> str:
    """Compact duration: `9d 3h`, `2h 5m`, `45m`, `30s`."""
    seconds = int(abs(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def relative(when: datetime | None, reference: datetime | None = None) -> str:
    """`in 9d 3h` for the future, `2h ago` (or `just now`) for the past, `-` when unknown."""
    if when is None:
        return "-"
    delta = when - (reference or now())
    if -60 < delta.total_seconds() < 0:
        return "just now"
    return f"in {humanize(delta)}" if delta.total_seconds() >= 0 else f"{humanize(delta)} ago"
