"""The status page's pure parts, table-driven: who may see it (Host), ranges, account views, bucketing,
the SVG pieces, and the HTML (escaped, no secrets from the data it is not given)."""

from __future__ import annotations

import re
from datetime import UTC
from pathlib import Path

import pytest

from cliproxy.addons.core import status
from cliproxy.addons.core.config import ApiKeyUpstream
from cliproxy.addons.pages import status_page, svg
from cliproxy.addons.store.ledger import Row, SQLiteLedger
from cliproxy.auth.pool import Member
from cliproxy.auth.store import load_account
from tests.fakes.accounts import mint_account

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("name", "want", "step", "buckets"),
    [(None, "24h", 3600, 24), ("1h", "1h", 300, 12), ("7d", "7d", 21600, 28), ("30d", "30d", 86400, 30), ("bogus", "24h", 3600, 24)],
)
def test_range_of(name, want, step, buckets):
    rng = status.range_of(name)
    assert (rng.name, rng.step, rng.buckets) == (want, step, buckets)
    start = status.window_start(rng, NOW)
    assert start % step == 0 and start <= NOW - rng.seconds + step and start + rng.seconds > NOW  # the last bucket holds now


def account(tmp_path: Path, **kw) -> Member:
    path = mint_account(tmp_path / "auth", **kw)
    acc = load_account(path)
    return Member(acc.name, acc.label, acc)


QUOTA = {
    "primary": {"used_percent": 42.0, "window_minutes": 300, "resets_at": "2027-01-15T08:30:00+00:00"},
    "secondary": {"used_percent": 100.0, "window_minutes": 10080, "resets_at": "2020-01-01T00:00:00+00:00"},  # reset passed
}


@pytest.mark.parametrize(
    ("setup", "state", "rests"),
    [
        (lambda m: None, "serving", []),
        (lambda m: m.cooldown_until.update({"*": NOW + 600}), "resting", [("*", "cool-down")]),
        (lambda m: (m.cooldown_until.update({"*": NOW + 3600}), m.limited.add("*")), "resting", [("*", "usage limit")]),
        (lambda m: (m.cooldown_until.update({"gpt-5.5": NOW + 60}), m.limited.add("gpt-5.5")), "resting", [("gpt-5.5", "usage limit")]),
        (lambda m: m.cooldown_until.update({"gpt-5.5": NOW + 5}), "serving", [("gpt-5.5", "cool-down")]),  # a 5xx: one model, briefly
        (lambda m: m.cooldown_until.update({"gpt-5.5": NOW - 60}), "serving", []),  # a rest that ended
        (lambda m: setattr(m, "parked", True), "needs login", []),
    ],
)
def test_account_view_states(tmp_path, setup, state, rests):
    m = account(tmp_path)
    m.quota = dict(QUOTA)
    setup(m)
    view = status.account_view(m, NOW)
    assert view["state"] == state and [(r["model"], r["reason"]) for r in view["rests"]] == rests
    assert view["label"] == "dev@example.com" and view["plan"] == "plus" and view["kind"] == "chatgpt"
    five, week = view["windows"]
    assert (five["name"], five["used_percent"], five["resets_at"]) == ("5h", 42, NOW + 1800)
    assert five["resets_at_iso"] == "2027-01-15T08:30:00+00:00"
    assert (week["name"], week["used_percent"], week["resets_at"]) == ("week", 0, None)  # its reset passed: unused


def test_account_view_facts_and_api_keys(tmp_path):
    m = account(tmp_path, plan="plus")
    view = status.account_view(m, NOW, {"plan": "pro", "reset_credits": 2})
    assert (view["plan"], view["reset_credits"], view["windows"]) == ("pro", 2, [])  # wham/usage's word wins
    key = Member("api-key:0", "api-key#1", ApiKeyUpstream(api_key="sk-secret-upstream-key"))
    view = status.account_view(key, NOW)
    assert (view["kind"], view["plan"], view["state"]) == ("api-key", None, "serving")
    assert "sk-secret" not in repr(view)


def test_needs_login_from_the_account_file(tmp_path):
    import json

    path = mint_account(tmp_path / "auth")
    data = json.loads(path.read_text())
    data["cliproxy_status"] = {"state": "needs-login", "reason": "refresh_token_reused"}
    path.write_text(json.dumps(data))
    acc = load_account(path)
    assert status.account_view(Member(acc.name, acc.label, acc), NOW)["state"] == "needs login"


def test_bucketed_and_top_series():
    rng = status.range_of("1h")
    since = status.window_start(rng, NOW)
    rows = [
        {"t": since, "account": "a", "requests": 2, "input_tokens": 10, "output_tokens": 5, "errors": 1},
        {"t": since + 300 * 11, "account": "a", "requests": 1, "input_tokens": 1, "output_tokens": 1, "errors": 0},
        {"t": since + 300, "account": "b", "requests": 3, "input_tokens": 0, "output_tokens": 0, "errors": 0},
        {"t": since - 300, "account": "c", "requests": 9, "input_tokens": 0, "output_tokens": 0, "errors": 0},  # outside
    ]
    got = status.bucketed(rows, "account", since, rng)
    assert got["requests"] == {"b": [0, 3] + [0] * 10, "a": [2] + [0] * 10 + [1]}  # biggest first
    assert got["tokens"]["a"][0] == 15 and got["errors"]["a"][0] == 1
    many = [{"t": since, "account": f"acct{n}", "requests": n + 1, "input_tokens": 0, "output_tokens": 0, "errors": 0} for n in range(12)]
    top = status.bucketed(many, "account", since, rng)["requests"]
    assert len(top) == status.MAX_SERIES and list(top)[0] == "acct11" and top["other"][0] == sum(range(1, 6))


def test_snapshot_with_and_without_a_ledger(tmp_path):
    led = SQLiteLedger(tmp_path / "u.sqlite3")
    now = NOW + 150  # mid-bucket: both rows fall in the last one
    led.add([Row(now - 5, "a", model="m", input_tokens=3, output_tokens=4, status=200), Row(now - 4, "a", status=500, error="boom")])
    rng = status.range_of("1h")
    snap = status.snapshot([], status.ledger_view(led, rng, now), rng, now)
    led.close()
    assert snap["totals"]["requests"] == 2 and snap["totals"]["errors"] == 1 and snap["ledger"] is True
    assert snap["series"]["account"]["requests"]["a"][-1] == 2 and snap["series"]["model"]["tokens"]["m"][-1] == 7
    assert [e["error"] for e in snap["recent_errors"]] == ["boom"] and snap["recent_errors"][0]["t_iso"].endswith("+00:00")
    off = status.snapshot([], None, rng, now, "off")
    assert (off["ledger"], off["totals"], off["series"], off["recent_errors"], off["ledger_note"]) == (False, None, None, [], "off")


# -- SVG ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "top"), [(0, 1), (1, 1), (3, 5), (7, 10), (11, 20), (21, 25), (240, 250), (251, 500), (1001, 2000)])
def test_nice_ceiling(value, top):
    assert svg.nice_ceiling(value) == top


@pytest.mark.parametrize(("value", "text"), [(0, "0"), (950, "950"), (1000, "1k"), (1250, "1.2k"), (3_400_000, "3.4M"), (2.5, "2.5")])
def test_short_number(value, text):
    assert svg.short_number(value) == text


def test_colours_are_stable_and_other_is_grey():
    c = svg.colours(["a", "b", "other", "a", "c"])
    assert c == {"a": svg.PALETTE[0], "b": svg.PALETTE[1], "other": svg.OTHER_COLOUR, "c": svg.PALETTE[2]}


def label(t: float) -> str:
    return f"t{int(t) % 1000}"


@pytest.mark.parametrize(
    ("series", "bars", "peak"),
    [
        ({}, 0, 1),
        ({"a": [0, 0, 0]}, 0, 1),
        ({"a": [1, 0, 2]}, 2, 2),
        ({"a": [1, 0, 2], "b": [4, 0, 0]}, 3, 5),
    ],
)
def test_bar_chart_marks_carry_their_data(series, bars, peak):
    out = svg.bar_chart("c1", "Requests <by> account", [0, 60, 120], series, svg.colours(list(series)), label, "requests")
    assert out.startswith('<svg id="c1"') and out.endswith("</svg>") and "<by>" not in out and "&lt;by&gt;" in out
    rects = re.findall(r'<rect class="bar"[^>]*data-series="([^"]+)" data-t="(\d+)" data-value="(\d+)"', out)
    assert len(rects) == bars and f'data-peak="{peak}"' in out
    assert sum(int(v) for _, _, v in rects) == sum(sum(v) for v in series.values())
    assert ("nothing in this range" in out) is (bars == 0)


def test_bar_chart_escapes_series_names():
    out = svg.bar_chart("c", "t", [0], {'"><script>x</script>': [1]}, {}, label, "requests")
    assert "<script>" not in out and "&lt;script&gt;" in out


@pytest.mark.parametrize(("used", "colour"), [(0, "#2e9d4f"), (69.9, "#2e9d4f"), (70, "#e0a100"), (95, "#d23c3c"), (250, "#d23c3c")])
def test_meter(used, colour):
    out = svg.meter(used)
    assert colour in out and f'data-used="{min(used, 100):g}"' in out


# -- HTML ------------------------------------------------------------------------------------------------


def snapshot(accounts: list[dict], errors: list[dict] | None = None, ledger: bool = True) -> dict:
    rng = status.range_of("1h")
    view = None
    if ledger:
        view = {
            "totals": {
                "requests": 3,
                "input_tokens": 10,
                "cached_tokens": 0,
                "output_tokens": 5,
                "reasoning_tokens": 0,
                "image_tokens": 0,
                "errors": 1,
            },
            "by_account": {"requests": {"a<b>": [0] * 11 + [3]}, "tokens": {"a<b>": [0] * 11 + [15]}, "errors": {}},
            "by_model": {"requests": {"m": [0] * 11 + [3]}, "tokens": {"m": [0] * 11 + [15]}, "errors": {}},
            "recent_errors": errors or [],
        }
    return status.snapshot(accounts, view, rng, NOW, None if ledger else "The usage ledger is off")


ACCOUNT = {
    "label": "<img src=x onerror=alert(1)>@example.com",
    "kind": "chatgpt",
    "plan": "plus",
    "state": "resting",
    "resting_until": NOW + 3600,
    "rests": [{"model": "*", "until": NOW + 3600, "reason": "usage limit"}],
    "windows": [{"name": "5h", "used_percent": 100, "resets_at": NOW + 3600}, {"name": "week", "used_percent": 40, "resets_at": None}],
    "reset_credits": 1,
}


def test_render_escapes_everything_and_has_the_parts():
    errors = [{"t": NOW - 5, "account": "a", "route": "chat", "model": "m", "status": 400, "error": "<b>bad</b> input"}]
    page = status_page.render(snapshot([ACCOUNT], errors), "n0nce", UTC)
    assert page.startswith("<!doctype html>") and '<script nonce="n0nce">' in page
    assert "<img" not in page and "&lt;img src=x" in page and "<b>bad</b>" not in page and "&lt;b&gt;bad" in page
    assert page.count('<tr class="account"') == 1 and 'data-state="resting"' in page
    assert "resting for 1h, until" in page and "(usage limit)" in page
    assert page.count('class="meter"') == 2 and page.count('<svg id="chart-') == 4
    assert page.count('class="error-row"') == 1 and 'href="?range=1h" class=on' in page
    assert "0 serving · 1 resting · 0 need login" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched from elsewhere


@pytest.mark.parametrize(
    ("accounts", "ledger", "expect"),
    [
        ([], True, "No accounts yet"),
        ([ACCOUNT], False, "The usage ledger is off"),
        ([{**ACCOUNT, "state": "needs login", "rests": []}], True, "needs login: run cliproxy login"),
        (
            [{**ACCOUNT, "state": "serving", "rests": [{"model": "gpt-5.5", "until": NOW + 120, "reason": "cool-down"}]}],
            True,
            "gpt-5.5 resting for 2m",
        ),
        ([], True, "No errors in this range."),
    ],
)
def test_render_states(accounts, ledger, expect):
    assert expect in status_page.render(snapshot(accounts, ledger=ledger), "n", UTC)


@pytest.mark.parametrize(
    ("step", "t", "text"),
    [(300, NOW, "08:00"), (3600, NOW, "08:00"), (21600, NOW, "Fri 08:00"), (86400, NOW, "15 Jan")],
)
def test_bucket_labels(step, t, text):
    assert status_page.Clock(NOW, UTC).bucket_label(step)(t) == text


def rest(model: str, seconds: int, reason: str) -> dict:
    return {"model": model, "until": NOW + seconds, "reason": reason}


@pytest.mark.parametrize(
    ("state", "rests", "text"),
    [
        ("serving", [], "serving"),
        ("resting", [rest("*", 3600, "usage limit")], "resting for 1h, until 09:00 (usage limit)"),
        ("resting", [rest("gpt-5.5", 5400, "usage limit")], "resting for 1h 30m, until 09:30 (usage limit on gpt-5.5)"),
        (
            "resting",
            [rest("*", 60, "cool-down"), rest("gpt-5.5", 3600, "usage limit")],
            "resting for 1m, until 08:01 (cool-down) · gpt-5.5 resting for 1h, until 09:00 (usage limit)",
        ),
        ("serving", [rest("gpt-5.5", 5, "cool-down")], "serving · gpt-5.5 resting for 5s, until 08:00 (cool-down)"),
        ("resting", [rest("*", 86400 * 2, "usage limit")], "resting for 2d, until Sun 17 Jan 08:00 (usage limit)"),
        ("needs login", [rest("*", 60, "cool-down")], "needs login: run cliproxy login"),
    ],
)
def test_state_text(state, rests, text):
    assert status_page.state_text({"state": state, "rests": rests}, status_page.Clock(NOW, UTC)) == text
