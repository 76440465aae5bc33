"""The status page's HTML from the status snapshot (`core.status.snapshot`): pure, one self-contained
document (inline CSS, inline SVG, a few lines of inline script), nothing fetched from elsewhere, so it
works offline and under a strict Content-Security-Policy (the script runs by its nonce).

While open it re-reads itself every REFRESH_SECONDS and swaps in the new `<main>` (no flicker, scroll
kept); without script a `<noscript>` meta refresh does the same more bluntly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, tzinfo
from html import escape
from typing import Any

from cliproxy.addons.pages import svg
from cliproxy.auth.timeutil import humanize

REFRESH_SECONDS = 10
STATE_CLASS = {"serving": "ok", "resting": "warn", "needs login": "bad"}

CSS = """
:root{--fg:#1d2430;--muted:#5f6b7a;--line:#dde2e8;--bg:#f6f7f9;--card:#fff}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;flex-wrap:wrap;gap:8px 24px;align-items:baseline;padding:16px 24px;background:#18202b;color:#fff}
header h1{margin:0;font-size:20px}header .muted{color:#b8c2cf}header nav a{color:#9fd0ff;margin-right:8px}
header nav a.on{color:#fff;font-weight:600;text-decoration:none}
main{padding:16px 24px;max-width:1240px}section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin-bottom:16px}
h2{font-size:15px;margin:0 0 8px}table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:6px 8px;border-top:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);border-top:0}.num{font-variant-numeric:tabular-nums}td.num,th.num{text-align:right}
.muted{color:var(--muted)}.state{font-weight:600}.state.ok{color:#1e7b3a}.state.warn{color:#a86b00}.state.bad{color:#b32626}
.window{white-space:nowrap}.window .meter{vertical-align:middle;margin-right:6px}
.totals{display:flex;flex-wrap:wrap;gap:8px 28px}.totals div{min-width:90px}.totals b{display:block;font-size:18px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:16px}
figure{margin:0}figcaption{font-weight:600;margin-bottom:4px}.chart{max-width:100%;height:auto}
.chart .grid{stroke:#e6e9ee}.chart .axis,.chart .empty{font-size:11px;fill:#6b7685}
.legend{list-style:none;padding:0;margin:4px 0 0;display:flex;flex-wrap:wrap;gap:2px 14px;font-size:12px}
td.error{max-width:520px;overflow-wrap:anywhere}footer{padding:0 24px 24px;color:var(--muted);font-size:12px}
"""

SCRIPT = """
(function () {
  var every = EVERY * 1000, refreshes = 0;
  function tick() {
    if (document.hidden) { setTimeout(tick, every); return; }
    fetch(location.href, {cache: "no-store", credentials: "same-origin"}).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (text) {
      if (!text) return;
      var next = new DOMParser().parseFromString(text, "text/html").querySelector("main");
      var main = document.querySelector("main");
      if (next && main) {
        next.setAttribute("data-refreshes", String(++refreshes));
        main.replaceWith(next);
      }
    }).catch(function () {}).then(function () { setTimeout(tick, every); });
  }
  setTimeout(tick, every);
})();
""".replace("EVERY", str(REFRESH_SECONDS))


class Clock:
    """How times read on the page: the proxy machine's local time (or `tz`), relative to `now`."""

    def __init__(self, now: float, tz: tzinfo | None = None) -> None:
        self.now, self.tz = now, tz

    def at(self, t: float, fmt: str = "%H:%M") -> str:
        return datetime.fromtimestamp(t, self.tz).strftime(fmt) if self.tz else datetime.fromtimestamp(t).strftime(fmt)

    def clock(self, t: float) -> str:
        """`15:30`, with the day when it is not today."""
        day = self.at(t, "%Y-%m-%d") != self.at(self.now, "%Y-%m-%d")
        return self.at(t, "%a %d %b %H:%M" if day else "%H:%M")

    def when(self, t: float) -> str:
        """`in 2h 5m (15:30)`."""
        return f"in {humanize(timedelta(seconds=t - self.now))} ({self.clock(t)})"

    def rest(self, t: float) -> str:
        """`for 2h 5m, until 15:30`."""
        return f"for {humanize(timedelta(seconds=t - self.now))}, until {self.clock(t)}"

    def bucket_label(self, step: int) -> Callable[[float], str]:
        fmt = "%d %b" if step >= 86400 else "%a %H:%M" if step >= 6 * 3600 else "%H:%M"
        return lambda t: self.at(t, fmt)


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def window_cell(window: Mapping[str, Any] | None, clock: Clock) -> str:
    if not window:
        return '<td class="window muted">-</td>'
    resets = f' <span class="muted">resets {_e(clock.when(window["resets_at"]))}</span>' if window.get("resets_at") else ""
    return (
        f'<td class="window" data-window="{_e(window["name"])}" data-used="{_e(window["used_percent"])}">'
        f"{svg.meter(float(window['used_percent']))}{_e(window['used_percent'])}%{resets}</td>"
    )


def state_text(account: Mapping[str, Any], clock: Clock) -> str:
    """`serving`, `resting for 1h, until 15:30 (usage limit)` (`… on gpt-5.5` when met on one model),
    `serving · gpt-5.5 resting for 5s, until … (cool-down)`, `needs login: …`."""
    state = account["state"]
    if state == "needs login":
        return "needs login: run cliproxy login"
    rests = list(account.get("rests") or [])
    parts = [state]
    if state == "resting" and rests:
        main = next((r for r in rests if r["model"] == "*"), None) or next((r for r in rests if r["reason"] == "usage limit"), rests[0])
        rests.remove(main)
        on = "" if main["model"] == "*" else f" on {main['model']}"
        parts = [f"resting {clock.rest(main['until'])} ({main['reason']}{on})"]
    parts += [f"{r['model']} resting {clock.rest(r['until'])} ({r['reason']})" for r in rests]
    return " · ".join(parts)


def accounts_table(accounts: list[Mapping[str, Any]], clock: Clock) -> str:
    if not accounts:
        return '<p class="muted">No accounts yet: run <code>cliproxy login</code> (picked up without a restart).</p>'
    rows = []
    for a in accounts:
        windows = {w["name"]: w for w in a.get("windows") or []}
        five = windows.pop("5h", None)
        week = windows.pop("week", None)
        credits = a.get("reset_credits")
        rows.append(
            f'<tr class="account" data-state="{_e(a["state"])}" data-kind="{_e(a["kind"])}">'
            f"<td>{_e(a['label'])}</td><td>{_e(a.get('plan') or ('API key' if a['kind'] == 'api-key' else '-'))}</td>"
            f'<td class="state {STATE_CLASS.get(a["state"], "")}">{_e(state_text(a, clock))}</td>'
            f"{window_cell(five, clock)}{window_cell(week, clock)}"
            f'<td class="num">{_e(credits) if credits is not None else "-"}</td></tr>'
        )
    return (
        '<table id="accounts"><thead><tr><th>Account</th><th>Plan</th><th>State</th><th>5 hours</th><th>Week</th>'
        f'<th class="num">Reset credits</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


TOTALS = (
    ("requests", "Requests"),
    ("input_tokens", "Input tokens"),
    ("cached_tokens", "Cached"),
    ("output_tokens", "Output tokens"),
    ("reasoning_tokens", "Reasoning"),
    ("image_tokens", "Image tokens"),
    ("errors", "Errors"),
)


def totals_block(totals: Mapping[str, int]) -> str:
    cells = "".join(
        f'<div data-total="{k}"><b class="num">{totals.get(k, 0):,}</b><span class="muted">{label}</span></div>' for k, label in TOTALS
    )
    return f'<div class="totals">{cells}</div>'


def charts(status: Mapping[str, Any], clock: Clock) -> str:
    rng = status["range"]
    times = rng["buckets"]
    label = clock.bucket_label(rng["step_seconds"])
    figures = []
    for dimension, noun in (("account", "account"), ("model", "model")):
        per = status["series"][dimension]
        palette = svg.colours([*per["requests"], *per["tokens"]])
        for metric, unit in (("requests", "requests"), ("tokens", "tokens")):
            series = per[metric]
            chart_id = f"chart-{metric}-by-{dimension}"
            title = f"{metric.capitalize()} by {noun}"
            figures.append(
                f'<figure data-chart="{chart_id}"><figcaption>{title}</figcaption>'
                f"{svg.bar_chart(chart_id, title, times, series, palette, label, unit)}"
                f"{svg.legend(list(series), palette, {k: sum(v) for k, v in series.items()}, unit)}</figure>"
            )
    return f'<div class="charts">{"".join(figures)}</div>'


def errors_table(errors: list[Mapping[str, Any]], clock: Clock) -> str:
    if not errors:
        return '<p class="muted" id="no-errors">No errors in this range.</p>'
    rows = "".join(
        f'<tr class="error-row"><td class="num">{_e(clock.at(e["t"], "%d %b %H:%M:%S"))}</td><td>{_e(e.get("account") or "-")}</td>'
        f"<td>{_e(e.get('route'))}</td><td>{_e(e.get('model') or e.get('client_model') or '-')}</td>"
        f'<td class="num">{_e(e.get("status") or "-")}</td><td class="error">{_e(e.get("error") or "")}</td></tr>'
        for e in errors
    )
    return (
        '<table id="errors"><thead><tr><th>When</th><th>Account</th><th>Route</th><th>Model</th><th class="num">Status</th>'
        f"<th>Error</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def render(status: Mapping[str, Any], nonce: str, tz: tzinfo | None = None) -> str:
    """The whole page. `nonce`: the Content-Security-Policy nonce of this answer's script."""
    clock = Clock(status["generated_at"], tz)
    rng = status["range"]
    counts = status["counts"]
    nav = " ".join(f'<a href="?range={_e(name)}"{" class=on" if name == rng["name"] else ""}>{_e(name)}</a>' for name in rng["choices"])
    summary = f"{counts['serving']} serving · {counts['resting']} resting · {counts['needs login']} need login"
    if status["ledger"]:
        usage = (
            f'<section id="usage"><h2>Usage in the last {_e(rng["name"])}</h2>{totals_block(status["totals"])}</section>'
            f'<section id="charts"><h2>Over time</h2>{charts(status, clock)}</section>'
            f'<section id="recent-errors"><h2>Recent errors</h2>{errors_table(status["recent_errors"], clock)}</section>'
        )
    else:
        usage = f'<section id="usage"><h2>Usage</h2><p class="muted">{_e(status.get("ledger_note") or "no usage ledger")}</p></section>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="referrer" content="no-referrer">'
        f'<noscript><meta http-equiv="refresh" content="{REFRESH_SECONDS * 3}"></noscript>'
        f"<title>cliproxy status</title><style>{CSS}</style></head><body>"
        f"<header><h1>cliproxy status</h1><nav>range: {nav}</nav></header>"
        f'<main data-generated="{status["generated_at"]:.0f}">'
        f'<section id="pool"><h2>Accounts <span class="muted">{_e(summary)} · as of '
        f'<span id="generated">{_e(clock.at(status["generated_at"], "%Y-%m-%d %H:%M:%S"))}</span></span></h2>'
        f"{accounts_table(status['accounts'], clock)}</section>{usage}</main>"
        f"<footer>Refreshes every {REFRESH_SECONDS} s while open · the same data as JSON: "
        f'<a href="/cliproxy/status.json?range={_e(rng["name"])}">/cliproxy/status.json</a></footer>'
        f'<script nonce="{_e(nonce)}">{SCRIPT}</script></body></html>'
    )
