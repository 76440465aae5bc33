"""Quota windows from the backend's `x-codex-*` headers, and the per-account state file beside the auth dir.

The proxy writes `<auth-dir>/.cliproxy-state/<account file name>` (JSON, 0600) with the last quota
seen and any cool-down, so `cliproxy accounts` can show 5-hour / weekly usage and reset times.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cliproxy.auth.timeutil import humanize

STATE_DIR = ".cliproxy-state"
WINDOWS = ("primary", "secondary")


def _num(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def window_name(minutes: Any) -> str:
    """`5h`, `week`, … for a quota window length in minutes."""
    if not isinstance(minutes, int | float) or isinstance(minutes, bool) or minutes <= 0:
        return "quota"
    if minutes == 10080:
        return "week"
    return humanize(timedelta(minutes=minutes))


def quota_summary(quota: Mapping[str, Any]) -> str:
    """`5h 12% · week 40%`: each window's use, for one-line displays; empty when nothing is known."""
    parts = []
    for window in WINDOWS:
        entry = quota.get(window)
        used = entry.get("used_percent") if isinstance(entry, dict) else None
        if isinstance(entry, dict) and isinstance(used, int | float) and not isinstance(used, bool):
            parts.append(f"{window_name(entry.get('window_minutes'))} {used:g}%")
    return " · ".join(parts)


def parse_quota(headers: Mapping[str, str], now: datetime | None = None) -> dict[str, Any]:
    """`{"primary": {"used_percent", "window_minutes", "resets_at"}, "secondary": …}` from response headers."""
    now = now or datetime.now(UTC)
    out: dict[str, Any] = {}
    for window in WINDOWS:
        used = _num(headers.get(f"x-codex-{window}-used-percent"))
        if used is None:
            continue
        entry: dict[str, Any] = {"used_percent": used}
        minutes = _num(headers.get(f"x-codex-{window}-window-minutes"))
        if minutes is not None:
            entry["window_minutes"] = int(minutes)
        reset = _num(headers.get(f"x-codex-{window}-reset-after-seconds"))
        if reset is not None:
            entry["resets_at"] = (now + timedelta(seconds=reset)).isoformat(timespec="seconds")
        out[window] = entry
    return out


def state_path(auth_dir: Path, account_name: str) -> Path:
    return Path(auth_dir) / STATE_DIR / account_name


def read_state(auth_dir: Path, account_name: str) -> dict[str, Any]:
    try:
        data = json.loads(state_path(auth_dir, account_name).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(auth_dir: Path, account_name: str, state: dict[str, Any]) -> None:
    """Replace the state file atomically (temp file + rename), mode 0600, directory 0700."""
    path = state_path(auth_dir, account_name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_rate_limit_event(event: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The same shape as `parse_quota`, from a `codex.rate_limits` event (the WebSocket transport carries
    quota in the stream instead of headers): `rate_limits.{primary,secondary}` with `used_percent`,
    `window_minutes` and a reset as a unix time (`reset_at`/`resets_at`) or in seconds (`reset_after_seconds`/`resets_in_seconds`)."""
    now = now or datetime.now(UTC)
    limits = event.get("rate_limits")
    out: dict[str, Any] = {}
    if not isinstance(limits, Mapping):
        return out
    for window in WINDOWS:
        entry = limits.get(window)
        if not isinstance(entry, Mapping):
            continue
        used = entry.get("used_percent")
        if not isinstance(used, int | float) or isinstance(used, bool):
            continue
        parsed: dict[str, Any] = {"used_percent": float(used)}
        minutes = entry.get("window_minutes")
        if isinstance(minutes, int | float) and not isinstance(minutes, bool):
            parsed["window_minutes"] = int(minutes)
        at = next(
            (entry[k] for k in ("reset_at", "resets_at") if isinstance(entry.get(k), int | float) and not isinstance(entry.get(k), bool)),
            None,
        )
        after = next(
            (
                entry[k]
                for k in ("reset_after_seconds", "resets_in_seconds")
                if isinstance(entry.get(k), int | float) and not isinstance(entry.get(k), bool)
            ),
            None,
        )
        if at is not None:
            parsed["resets_at"] = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
        elif after is not None:
            parsed["resets_at"] = (now + timedelta(seconds=after)).isoformat(timespec="seconds")
        out[window] = parsed
    return out


def _window(entry: Any) -> dict[str, Any] | None:
    """One wham/usage window (`used_percent`, `limit_window_seconds`, `reset_at` unix time or `reset_after_seconds`)
    in the shape `parse_quota` gives."""
    if not isinstance(entry, Mapping):
        return None
    used = entry.get("used_percent")
    if not isinstance(used, int | float) or isinstance(used, bool):
        return None
    out: dict[str, Any] = {"used_percent": float(used)}
    seconds = entry.get("limit_window_seconds")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        out["window_minutes"] = int(seconds // 60)
    at, after = entry.get("reset_at"), entry.get("reset_after_seconds")
    if isinstance(at, int | float) and not isinstance(at, bool):
        out["resets_at"] = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
    elif isinstance(after, int | float) and not isinstance(after, bool):
        out["resets_at"] = (datetime.now(UTC) + timedelta(seconds=after)).isoformat(timespec="seconds")
    return out


def parse_wham_usage(body: Mapping[str, Any]) -> dict[str, Any]:
    """`{"quota": {primary, secondary}, "plan", "reset_credits", "credits", "summary"}` from a `wham/usage` answer."""
    limits = body.get("rate_limit")
    limits = limits if isinstance(limits, Mapping) else {}
    quota = {}
    for window in WINDOWS:
        if (parsed := _window(limits.get(f"{window}_window"))) is not None:
            quota[window] = parsed
    resets = body.get("rate_limit_reset_credits")
    count = resets.get("available_count") if isinstance(resets, Mapping) else None
    credits = body.get("credits")
    return {
        "quota": quota,
        "plan": body.get("plan_type") if isinstance(body.get("plan_type"), str) else None,
        "reset_credits": count if isinstance(count, int) and not isinstance(count, bool) else None,
        "credits": dict(credits) if isinstance(credits, Mapping) else None,
        "summary": quota_summary(quota),
    }


def room_in(quota: Mapping[str, Any]) -> bool:
    """Whether every known window has room (`used_percent < 100`); False when no window is known."""
    used = [e.get("used_percent") for e in quota.values() if isinstance(e, Mapping)]
    return bool(used) and all(isinstance(u, int | float) and u < 100 for u in used)
