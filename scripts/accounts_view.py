"""The `cliproxy accounts` table: one row per account file, with the proxy's quota/cool-down sidecar."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from cliproxy.auth.quota import read_state, window_name
from cliproxy.auth.store import Account
from cliproxy.auth.timeutil import humanize, now, parse_time, relative

STATE_STYLES = {"ok": "green", "expired": "yellow", "needs-login": "bold red", "disabled": "dim", "cooling down": "yellow"}


def quota_text(state: dict[str, Any], at: datetime) -> str:
    """`5h 12% (resets in 3h)` / `week 40% (…)`, one line per window; `-` when nothing is known."""
    quota = state.get("quota")
    if not isinstance(quota, dict):
        return "-"
    lines = []
    for key in ("primary", "secondary"):
        entry = quota.get(key)
        if not isinstance(entry, dict):
            continue
        used = entry.get("used_percent")
        if not isinstance(used, int | float) or isinstance(used, bool):
            continue
        line = f"{window_name(entry.get('window_minutes'))} {used:g}%"
        resets = parse_time(entry.get("resets_at"))
        if resets is not None and resets > at:
            line += f" (resets {relative(resets, at)})"
        lines.append(line)
    return "\n".join(lines) or "-"


def display_state(account: Account, state: dict[str, Any], at: datetime) -> str:
    base = account.state(at)
    if base != "ok":
        return base
    if state.get("refused") is True:
        return "needs-login (token refused)"
    until = parse_time(state.get("cooldown_until"))
    if until is not None and until > at:
        return f"cooling down ({humanize(until - at)})"
    return "ok"


def expiry_text(account: Account, at: datetime) -> str:
    expires = account.expires_at
    if expires is None:
        return "unknown"
    return f"in {humanize(expires - at)}" if expires > at else f"expired {humanize(at - expires)} ago"


def accounts_table(
    accounts: list[Account], auth_dir: Path, at: datetime | None = None, *, states: dict[str, dict[str, Any]] | None = None, where: str = ""
) -> Table:
    """`states` (by account name) and `where` replace the auth dir's state files and name for a shared store."""
    at = at or now()
    table = Table(title=f"Accounts in {where or auth_dir}", title_justify="left", header_style="bold")
    for column in ("Account", "Email", "Plan", "Expires", "Last refresh", "State", "Quota"):
        table.add_column(column, overflow="fold")
    for account in accounts:
        state = states.get(account.name, {}) if states is not None else read_state(auth_dir, account.name)
        shown = display_state(account, state, at)
        style = STATE_STYLES.get(shown.split(" (")[0], "")
        table.add_row(
            Text(account.name),
            Text(account.email or "-"),
            Text(account.plan or "-"),
            Text(expiry_text(account, at)),
            Text(relative(account.last_refresh, at)),
            Text(shown, style=style),
            Text(quota_text(state, at)),
        )
    return table
