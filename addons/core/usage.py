"""The Codex usage endpoint (`/backend-api/wham/usage`, `/api/codex/usage`) answered from the pool (pure).

The Codex CLI's `/status` reads its 5-hour and weekly limits from this answer. Which account it
describes: the one the asking client's conversation is pinned to, when the request names a
conversation the pool has bound (a `session-id` / `thread-id` header or a `prompt_cache_key`
query parameter); otherwise the whole pool, as one account would look if it held the pool's
capacity: each window's `used_percent` is the mean over the accounts whose quota is known, its
reset the earliest of theirs, and the limit counts as reached only when every account has reached it.
Only OAuth accounts that can serve take part (API keys carry no quota; parked logins cannot serve).

The Codex CLI decodes the answer strictly: `plan_type` must be a plan it knows, windows hold
integers, `rate_limit` needs `allowed` and `limit_reached`, `credits` needs `has_credits` and `unlimited`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from cliproxy.auth.pool import Member
from cliproxy.auth.quota import WINDOWS
from cliproxy.auth.timeutil import parse_time

#: Plan names the Codex CLI's decoder accepts; any other would make its `/status` fail to read the answer.
PLANS = ("guest", "free", "go", "plus", "pro", "free_workspace", "team", "business", "education", "quorum", "k12", "enterprise", "edu")
UNKNOWN_PLAN = "plus"  # the commonest subscription, for accounts whose token names no known plan
#: Session headers whose value the pool binds a conversation by (the Codex CLI sends its thread id in all).
SESSION_HEADERS = ("session-id", "session_id", "thread-id", "conversation_id")


def window(entry: Any, now: float) -> dict[str, int] | None:
    """One quota window in the endpoint's shape; a window whose reset has passed counts as unused."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("used_percent"), int | float):
        return None
    used = float(entry["used_percent"])
    reset = parse_time(entry.get("resets_at"))
    reset_at = int(reset.timestamp()) if reset is not None else None
    if reset_at is not None and reset_at <= now:
        used, reset_at = 0.0, None
    minutes = entry.get("window_minutes")
    seconds = int(minutes) * 60 if isinstance(minutes, int | float) and not isinstance(minutes, bool) else 0
    at = reset_at if reset_at is not None else int(now) + seconds
    return {"used_percent": round(used), "limit_window_seconds": seconds, "reset_after_seconds": max(0, at - int(now)), "reset_at": at}


def _combined(windows: list[dict[str, int]]) -> dict[str, int] | None:
    if not windows:
        return None
    soonest = min(windows, key=lambda w: w["reset_at"])
    return {**soonest, "used_percent": round(sum(w["used_percent"] for w in windows) / len(windows))}


def _plan(plans: Iterable[str]) -> str:
    known = [p.lower() for p in plans if p and p.lower() in PLANS]
    return Counter(known).most_common(1)[0][0] if known else UNKNOWN_PLAN


def payload(members: list[Member], plans: Mapping[str, str], now: float | datetime, scope: str = "pool") -> dict[str, Any]:
    """The usage answer for these members (one: that account; several: the pool's summary).
    `plans`: member key → its plan name."""
    now = now.timestamp() if isinstance(now, datetime) else now
    rate_limit: dict[str, Any] = {}
    exhausted = [False] * len(members)
    for name in WINDOWS:
        per_member = [window(m.quota.get(name), now) for m in members]
        for n, w in enumerate(per_member):
            exhausted[n] = exhausted[n] or (w is not None and w["used_percent"] >= 100)
        combined = _combined([w for w in per_member if w is not None])
        if combined is not None:
            rate_limit[f"{name}_window"] = combined
    reached = bool(members) and all(exhausted)
    return {
        "plan_type": _plan(plans.get(m.key, "") for m in members),
        "rate_limit": {"allowed": not reached, "limit_reached": reached, **rate_limit},
        "credits": {"has_credits": False, "unlimited": False, "balance": "0"},  # credits are not shown to cliproxy
        "rate_limit_reset_credits": {"available_count": 0},  # nor are banked resets
        "additional_rate_limits": [],
        "cliproxy_scope": scope,  # "account" (the client's pinned account) or "pool" (the summary); ignored by clients
    }


def session_of(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The conversation a usage request names, if any (lower-case header names)."""
    for name in SESSION_HEADERS:
        if headers.get(name):
            return headers[name]
    return query.get("prompt_cache_key") or None
