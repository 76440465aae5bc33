"""What the status page shows, as plain data (pure; no mitmproxy): `GET /cliproxy/status.json` is this, and
`addons.pages.status_page` renders the same thing as HTML.

Accounts come from the pool as it stands (state, plan, quota windows); usage over time and recent errors
from the usage ledger's read side (`summary`, `series`, `recent_errors`), queried off the event loop.
Nothing secret goes in: members are named by their label (email or short id), client keys by the
ledger's short hash, and API-key upstreams by their number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cliproxy.addons.core import usage
from cliproxy.addons.store.ledger import TOTAL_KEYS, UsageLedger
from cliproxy.auth.pool import ANY_MODEL, Member
from cliproxy.auth.quota import WINDOWS, window_name
from cliproxy.auth.store import Account
from cliproxy.auth.timeutil import parse_time

SCHEMA_VERSION = 1
SERVING, RESTING, NEEDS_LOGIN = "serving", "resting", "needs login"
ERRORS_SHOWN = 20
MAX_SERIES = 8  # lines per chart; the rest are summed as "other"
OTHER = "other"


@dataclass(frozen=True, slots=True)
class Range:
    """A time span the charts cover, cut into buckets."""

    name: str
    seconds: int
    step: int  # bucket length

    @property
    def buckets(self) -> int:
        return self.seconds // self.step


RANGES = {
    r.name: r
    for r in (
        Range("1h", 3600, 300),
        Range("6h", 6 * 3600, 1800),
        Range("24h", 86400, 3600),
        Range("7d", 7 * 86400, 6 * 3600),
        Range("30d", 30 * 86400, 86400),
    )
}
DEFAULT_RANGE = "24h"


def range_of(name: str | None) -> Range:
    """The range a `?range=` value names; an unknown or missing one is the default (a page must open)."""
    return RANGES.get(name or "", RANGES[DEFAULT_RANGE])


def window_start(rng: Range, now: float) -> float:
    """Start of the first bucket: buckets end on a whole step, so the last one holds `now`."""
    return (now // rng.step + 1) * rng.step - rng.seconds


# -- who may see the page -----------------------------------------------------------------------------


# -- accounts -----------------------------------------------------------------------------------------


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds") if t else None


def account_view(member: Member, now: float, facts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One account: state, plan, quota windows (a window whose reset has passed counts as unused) and rests.
    `facts`: what its last wham/usage said (plan, reset credits), when read."""
    facts = facts or {}
    source = member.source
    is_account = isinstance(source, Account)
    resting = sorted((model != ANY_MODEL, model, until) for model, until in member.cooldown_until.items() if until > now)
    rests = [
        {"model": model, "until": until, "until_iso": _iso(until), "reason": "usage limit" if model in member.limited else "cool-down"}
        for _, model, until in resting
    ]
    needs_login = member.parked or (is_account and source.needs_login)
    # a usage limit is the account's (its quota windows are), even when it was met on one model
    state = (
        NEEDS_LOGIN if needs_login else RESTING if any(r["model"] == ANY_MODEL or r["reason"] == "usage limit" for r in rests) else SERVING
    )
    windows = []
    for name in WINDOWS:
        entry = member.quota.get(name)
        shaped = usage.window(entry, now)
        if shaped is None or not isinstance(entry, Mapping):
            continue
        reset = parse_time(entry.get("resets_at"))
        resets = reset.timestamp() if reset is not None and reset.timestamp() > now else None
        windows.append(
            {
                "name": window_name(entry.get("window_minutes")),
                "used_percent": shaped["used_percent"],
                "resets_at": resets,
                "resets_at_iso": _iso(resets),
            }
        )
    plan = facts.get("plan") if isinstance(facts.get("plan"), str) else (source.plan if is_account else "")
    return {
        "label": member.label,
        "kind": "chatgpt" if is_account else "api-key",
        "plan": plan or None,
        "state": state,
        "resting_until": max((until for _, _, until in resting), default=None),
        "rests": rests,  # per model; "*" is every model
        "windows": windows,
        "reset_credits": facts.get("reset_credits") if isinstance(facts.get("reset_credits"), int) else None,
    }


# -- usage over time ----------------------------------------------------------------------------------


def _top(series: dict[str, list[int]]) -> dict[str, list[int]]:
    """At most MAX_SERIES lines, the biggest first; the rest summed as `other`."""
    order = sorted(series, key=lambda k: (-sum(series[k]), k))
    if len(order) <= MAX_SERIES:
        return {k: series[k] for k in order}
    kept = {k: series[k] for k in order[: MAX_SERIES - 1]}
    rest = [series[k] for k in order[MAX_SERIES - 1 :]]
    kept[OTHER] = [sum(col) for col in zip(*rest, strict=True)]
    return kept


def bucketed(rows: list[dict[str, Any]], by: str, since: float, rng: Range) -> dict[str, dict[str, list[int]]]:
    """Ledger `series` rows → `{"requests": {group: [per bucket]}, "tokens": {...}, "errors": {...}}`;
    tokens are input + output (cached input and reasoning are parts of those)."""
    out: dict[str, dict[str, list[int]]] = {"requests": {}, "tokens": {}, "errors": {}}
    for row in rows:
        n = int((row["t"] - since) // rng.step)
        if not 0 <= n < rng.buckets:
            continue
        group = str(row[by])
        values = {"requests": row["requests"], "tokens": row["input_tokens"] + row["output_tokens"], "errors": row["errors"]}
        for metric, value in values.items():
            out[metric].setdefault(group, [0] * rng.buckets)[n] += value
    return {metric: _top(series) for metric, series in out.items()}


def ledger_view(ledger: UsageLedger, rng: Range, now: float) -> dict[str, Any]:
    """Everything the page reads from the ledger, in two queries: one pass for the series by account and
    model (the totals are their sum), one for the errors. Blocking: run it off the event loop."""
    since = window_start(rng, now)
    rows = ledger.series(since, rng.step, ("account", "model"))
    return {
        "totals": {k: sum(r[k] for r in rows) for k in TOTAL_KEYS},
        "by_account": bucketed(rows, "account", since, rng),
        "by_model": bucketed(rows, "model", since, rng),
        "recent_errors": [{**e, "t_iso": _iso(e["t"])} for e in ledger.recent_errors(since, ERRORS_SHOWN)],
    }


def snapshot(
    accounts: list[dict[str, Any]], ledger: dict[str, Any] | None, rng: Range, now: float, note: str | None = None
) -> dict[str, Any]:
    """The whole status (status.json). `ledger`: `ledger_view`'s answer, or None when there is no ledger
    (then `note` says why)."""
    since = window_start(rng, now)
    return {
        "version": SCHEMA_VERSION,
        "generated_at": now,
        "generated_at_iso": _iso(now),
        "range": {
            "name": rng.name,
            "since": since,
            "step_seconds": rng.step,
            "buckets": [since + n * rng.step for n in range(rng.buckets)],
            "choices": list(RANGES),
        },
        "accounts": accounts,
        "counts": {s: sum(1 for a in accounts if a["state"] == s) for s in (SERVING, RESTING, NEEDS_LOGIN)},
        "ledger": ledger is not None,
        "ledger_note": note,
        "totals": ledger["totals"] if ledger else None,
        "series": {"account": ledger["by_account"], "model": ledger["by_model"]} if ledger else None,
        "recent_errors": ledger["recent_errors"] if ledger else [],
    }
