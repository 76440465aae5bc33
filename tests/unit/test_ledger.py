"""The usage ledger's pure parts: token counts, --since, summaries, damaged files, the batching writer."""

from __future__ import annotations

import logging
import sqlite3
import time

import pytest

from cliproxy.addons.store.ledger import Row, SQLiteLedger, Writer, image_tokens, image_usage_of, parse_since, usage_fields


@pytest.mark.parametrize(
    ("usage", "want"),
    [
        (None, (0, 0, 0, 0, 0)),
        (
            {
                "input_tokens": 42,
                "input_tokens_details": {"cached_tokens": 8},
                "output_tokens": 17,
                "output_tokens_details": {"reasoning_tokens": 5},
                "total_tokens": 59,
            },
            (42, 8, 17, 5, 59),
        ),
        ({"input_tokens": 3, "output_tokens": 4}, (3, 0, 4, 0, 7)),
        ({"input_tokens": 3, "cached_tokens": 1, "output_tokens": 4, "reasoning_tokens": 2}, (3, 1, 4, 2, 7)),  # its own output
        ({"input_tokens": "9", "output_tokens": True, "input_tokens_details": None}, (0, 0, 0, 0, 0)),
        ({"input_tokens": -5, "output_tokens": 1.5}, (0, 0, 0, 0, 0)),
    ],
)
def test_usage_fields(usage, want):
    got = usage_fields(usage)
    assert tuple(got[k] for k in ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens", "total_tokens")) == want


@pytest.mark.parametrize(
    ("text", "seconds"), [("24h", 86400), ("7d", 604800), ("90m", 5400), ("2w", 1209600), ("30s", 30), (" 1.5h ", 5400)]
)
def test_parse_since(text, seconds):
    assert parse_since(text) == seconds


@pytest.mark.parametrize("text", ["", "yesterday", "24", "h", "0d", "-1d", "7y", "1e3d"])
def test_parse_since_refuses(text):
    with pytest.raises(ValueError, match="expected a number and a unit"):
        parse_since(text)


def test_summary_groups_and_window(tmp_path):
    led = SQLiteLedger(tmp_path / "u.sqlite3")
    now = time.time()
    led.add(
        [
            Row(now - 10, "a", "key:1", model="m1", input_tokens=10, cached_tokens=2, output_tokens=5, reasoning_tokens=1, status=200),
            Row(now - 20, "b", "key:1", model="m2", input_tokens=1, output_tokens=1, status=429, error="limit"),
            Row(now - 30, "a", "key:2", model="m1", input_tokens=4, output_tokens=2, status=200),
            Row(now - 90000, "a", "key:2", model="m1", input_tokens=1000, status=200),  # older than a day
        ]
    )
    s = led.summary(now - 86400, "account")
    assert s.totals == {
        "requests": 3,
        "input_tokens": 15,
        "cached_tokens": 2,
        "output_tokens": 8,
        "reasoning_tokens": 1,
        "image_tokens": 0,
        "errors": 1,
    }
    assert [(r["account"], r["requests"], r["input_tokens"]) for r in s.rows] == [("a", 2, 14), ("b", 1, 1)]
    assert [r["model"] for r in led.summary(now - 86400, "model").rows] == ["m1", "m2"]
    assert len(led.summary(now - 86400, "day").rows) in (1, 2) and led.summary(now - 86400).rows == []
    with pytest.raises(ValueError, match="--by"):
        led.summary(now, "planet")
    assert led.purge(now - 86400) == 1
    led.close()


def test_a_damaged_file_is_moved_aside_with_one_log_line(tmp_path, caplog):
    path = tmp_path / "usage.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.ERROR):
        led = SQLiteLedger(path)
    led.add([Row(time.time(), "a", input_tokens=1)])
    assert led.summary(0).totals["requests"] == 1
    assert len(list(tmp_path.glob("usage.sqlite3.corrupt-*"))) == 1
    assert len([r for r in caplog.records if "damaged" in r.message]) == 1
    led.close()


def test_writer_never_raises_and_keeps_rows_while_the_ledger_fails(tmp_path, caplog):
    calls = {"n": 0}

    def opener():
        calls["n"] += 1
        if calls["n"] < 3:
            raise OSError(28, "No space left on device")
        return SQLiteLedger(tmp_path / "u.sqlite3")

    with caplog.at_level(logging.ERROR):
        w = Writer(opener)
        for i in range(5):
            w.put(Row(time.time(), "a", input_tokens=i))
        deadline = time.time() + 10
        while calls["n"] < 3 and time.time() < deadline:
            time.sleep(0.1)
        w.flush()
        w.close()
    assert SQLiteLedger(tmp_path / "u.sqlite3").summary(0).totals["input_tokens"] == 10
    assert len([r for r in caplog.records if "No space left" in r.message]) == 1  # logged once


def test_a_million_rows_answer_thirty_days_in_under_a_second(tmp_path):
    led = SQLiteLedger(tmp_path / "u.sqlite3")
    now = time.time()
    span = 90 * 86400
    batch = [
        Row(
            now - span + i * span / 1_000_000,
            f"acct{i % 7}",
            f"key:{i % 13}",
            "chat",
            "openai",
            "gpt-5.5",
            "gpt-5.5",
            "medium",
            input_tokens=100,
            cached_tokens=10,
            output_tokens=50,
            reasoning_tokens=5,
            status=200,
        )
        for i in range(1_000_000)
    ]
    for i in range(0, len(batch), 50_000):
        led.add(batch[i : i + 50_000])
    for by in (None, "account", "day"):
        t, cpu = time.perf_counter(), time.process_time()
        s = led.summary(now - 30 * 86400, by)
        took, cpu_took = time.perf_counter() - t, time.process_time() - cpu
        print(f"1M rows, --since 30d --by {by}: {took:.3f}s ({cpu_took:.3f}s CPU), {s.totals['requests']} rows in range")
        assert 330_000 < s.totals["requests"] < 340_000
        # CPU time, which other processes on a busy 2-core machine do not inflate (idle, wall time is the same)
        assert cpu_took < 1.0
    led.close()


@pytest.mark.parametrize(
    ("usage", "want"),
    [
        (None, 0),
        ({}, 0),
        ({"input_tokens": 50, "input_tokens_details": {"image_tokens": 40, "text_tokens": 10}, "output_tokens": 272}, 312),
        ({"input_tokens": 10, "output_tokens": 272}, 272),  # a generation: no input image, the output is the image
        ({"input_tokens": 10, "output_tokens": 300, "output_tokens_details": {"image_tokens": 280, "text_tokens": 20}}, 280),
        ({"input_tokens_details": {"image_tokens": "40"}, "output_tokens": -3}, 0),
    ],
)
def test_image_tokens(usage, want):
    assert image_tokens(usage) == want


@pytest.mark.parametrize(
    ("response", "want"),
    [
        ({}, None),
        ({"tool_usage": None}, None),
        ({"tool_usage": {"web_search": {"num_requests": 1}}}, None),
        ({"tool_usage": {"image_gen": {"output_tokens": 272}}}, {"output_tokens": 272}),
    ],
)
def test_image_usage_of(response, want):
    assert image_usage_of(response) == want


def test_an_older_ledger_gets_the_image_column_and_keeps_its_rows(tmp_path):
    path = tmp_path / "usage.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(SQLiteLedger.SCHEMA.replace(", image_tokens INTEGER", ""))
    old.execute("INSERT INTO usage (t, account, input_tokens, output_tokens, status) VALUES (?, 'a', 7, 3, 200)", (time.time(),))
    old.commit()
    old.close()
    led = SQLiteLedger(path)
    assert "image_tokens" in {r[1] for r in led.db.execute("PRAGMA table_info(usage)")}
    led.add([Row(time.time(), "a", route="images_generations", input_tokens=50, output_tokens=272, image_tokens=312, status=200)])
    totals = led.summary(0).totals
    assert (totals["requests"], totals["input_tokens"], totals["image_tokens"]) == (2, 57, 312)
    led.close()
    SQLiteLedger(path).close()  # opening it again finds the column there


def test_series_buckets_rows_by_time_and_group(tmp_path):
    led = SQLiteLedger(tmp_path / "u.sqlite3")
    since = 1_000_000.0
    led.add(
        [
            Row(since + 10, "a", model="m1", input_tokens=1, output_tokens=1, status=200),
            Row(since + 20, "a", model="m1", input_tokens=2, output_tokens=2, status=200),
            Row(since + 70, "b", model="m2", input_tokens=4, status=502, error="bad gateway"),
            Row(since + 130, None, model="m1", input_tokens=8, status=200),
            Row(since - 1, "a", model="m1", input_tokens=100, status=200),  # before the range
        ]
    )
    got = [(r["t"] - since, r["account"], r["requests"], r["input_tokens"], r["errors"]) for r in led.series(since, 60, ("account",))]
    assert got == [(0, "a", 2, 3, 0), (60, "b", 1, 4, 1), (120, "-", 1, 8, 0)]
    assert [(r["t"] - since, r["model"]) for r in led.series(since, 3600, ("model",))] == [(0, "m1"), (0, "m2")]
    both = led.series(since, 3600, ("account", "model"))
    assert [(r["account"], r["model"], r["requests"]) for r in both] == [("-", "m1", 1), ("a", "m1", 2), ("b", "m2", 1)]
    for bad in (("day",), (), "account"):
        with pytest.raises(ValueError, match="series by"):
            led.series(since, 60, bad)
    led.close()


def test_recent_errors_newest_first(tmp_path):
    led = SQLiteLedger(tmp_path / "u.sqlite3")
    now = time.time()
    led.add(
        [
            Row(now - 50, "a", route="chat", model="m1", status=429, error="usage limit"),
            Row(now - 40, "a", route="chat", model="m1", status=200),
            Row(now - 30, "b", route="responses", model="m2", status=None, error="client hung up"),
            Row(now - 20, "b", route="chat", model="m2", status=400),
            Row(now - 99999, "b", route="chat", model="m2", status=500, error="old"),
        ]
    )
    errors = led.recent_errors(now - 3600)
    assert [(e["account"], e["status"], e["error"]) for e in errors] == [
        ("b", 400, None),
        ("b", None, "client hung up"),
        ("a", 429, "usage limit"),
    ]
    assert set(errors[0]) == {"t", "account", "route", "client_model", "model", "status", "error", "failovers"}
    assert len(led.recent_errors(now - 3600, limit=1)) == 1
    led.close()


@pytest.mark.parametrize("tz", ["UTC", "Asia/Kolkata", "America/New_York", "Australia/Eucla", "Pacific/Chatham"])
@pytest.mark.parametrize("by", ["day", "hour"])
def test_day_and_hour_are_local_time_as_sqlite_names_them(tmp_path, monkeypatch, tz, by):
    """Summed per quarter hour, then named in Python: the same groups as SQLite's `localtime`, in odd offsets
    (+5:30, +8:45, +12:45) and across a DST change (New York, 2026-11-01)."""
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        led = SQLiteLedger(tmp_path / "u.sqlite3")
        start = 1_793_400_000.0  # 2026-10-31, a day before New York's DST change
        led.add([Row(start + i * 1337.0, "a", input_tokens=i, status=200 if i % 7 else 500) for i in range(300)])
        fmt = "%Y-%m-%d" if by == "day" else "%Y-%m-%d %H:00"
        want = [
            {by: v[0], "requests": v[1], "input_tokens": v[2], "errors": v[3]}
            for v in led.db.execute(
                f"SELECT strftime('{fmt}', t, 'unixepoch', 'localtime') AS g, COUNT(*), SUM(input_tokens), "
                "SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) FROM usage GROUP BY g ORDER BY g"
            )
        ]
        got = [{k: r[k] for k in (by, "requests", "input_tokens", "errors")} for r in led.summary(0, by).rows]
        assert got == want and len(got) > 1
        led.close()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
