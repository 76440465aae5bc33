"""The usage ledger's contract, run against every implementation (SQLite, PostgreSQL on a real server):
the same rows give the same summaries, to the group and the order; purge; PostgreSQL's own faults."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import fields

import pytest

from cliproxy.addons.store import ledger as ledger_mod
from cliproxy.addons.store import pg
from cliproxy.addons.store.ledger import Row, SQLiteLedger, UsageLedger, Writer
from cliproxy.addons.store.pg_ledger import STEPS, TABLE, PostgresLedger, local_zone, open_ledger

T0 = 1_796_496_600.0  # 2026-12-05 18:50 UTC = 2026-12-06 00:20 in Asia/Kolkata (UTC+5:30)
ROWS = [
    Row(T0 - 3600, "b@x", "key:1", "chat", "openai", "gpt", "m1", input_tokens=10, cached_tokens=2, output_tokens=5, status=200),
    Row(T0 - 1800, "a@x", "key:2", "responses", "openai", "gpt", "m2", input_tokens=1, output_tokens=1, status=429, error="limit"),
    Row(T0 - 1200, "a@x", "key:1", "messages", "anthropic", "c", "m1", input_tokens=4, output_tokens=2, reasoning_tokens=1, status=200),
    Row(T0 - 60, None, None, "chat", "openai", None, None, status=None, error="client hung up"),
    Row(T0 + 600, "B@x", "key:1", "chat", "openai", "gpt", "m1", input_tokens=7, cached_tokens=7, output_tokens=3, status=500),
    Row(T0 + 700, "a@x", "key:1", "images_generations", "openai", "gpt-image", "m3", status=200, image_tokens=1056),
    Row(T0 - 90_000, "a@x", "key:2", "chat", "openai", "gpt", "m1", input_tokens=1000, status=200),  # outside every window below
]
# (name, since, by, totals (requests, input, cached, output, reasoning, image, errors), groups as (group, requests, input))
CASES = [
    ("totals", T0 - 7200, None, (6, 22, 9, 11, 1, 1056, 3), []),
    ("window", T0 - 1500, None, (4, 11, 7, 5, 1, 1056, 2), []),
    ("nothing", T0 + 3600, None, (0, 0, 0, 0, 0, 0, 0), []),
    ("account", T0 - 7200, "account", (6, 22, 9, 11, 1, 1056, 3), [("a@x", 3, 5), ("-", 1, 0), ("B@x", 1, 7), ("b@x", 1, 10)]),
    ("model", T0 - 7200, "model", (6, 22, 9, 11, 1, 1056, 3), [("m1", 3, 21), ("-", 1, 0), ("m2", 1, 1), ("m3", 1, 0)]),
    ("key", T0 - 7200, "key", (6, 22, 9, 11, 1, 1056, 3), [("key:1", 4, 21), ("-", 1, 0), ("key:2", 1, 1)]),
    ("empty groups", T0 + 3600, "account", (0, 0, 0, 0, 0, 0, 0), []),
]
ZONES = ["UTC", "Asia/Kolkata", "America/St_Johns"]


def _ledgers(request: pytest.FixtureRequest, tmp_path) -> dict[str, Callable[[], UsageLedger]]:
    return {
        "sqlite": lambda: SQLiteLedger(tmp_path / "usage.sqlite3"),
        "postgres": lambda: PostgresLedger(request.getfixturevalue("pg_dsn")),
    }


@pytest.fixture(params=["sqlite", "postgres"])
def make(request, tmp_path) -> Iterator[Callable[[], UsageLedger]]:
    made: list[UsageLedger] = []
    factory = _ledgers(request, tmp_path)[request.param]

    def new() -> UsageLedger:
        made.append(factory())
        return made[-1]

    yield new
    for led in made:
        led.close()


@pytest.mark.parametrize(("name", "since", "by", "totals", "groups"), CASES, ids=[c[0] for c in CASES])
def test_summaries(make, name, since, by, totals, groups):
    led = make()
    led.add(ROWS)
    s = led.summary(since, by)
    assert tuple(s.totals.values()) == totals and tuple(s.totals) == ledger_mod.TOTAL_KEYS
    assert all(type(v) is int for v in s.totals.values())
    assert [(r[by], r["requests"], r["input_tokens"]) for r in s.rows] == groups
    assert all(set(r) == {by, *ledger_mod.TOTAL_KEYS} for r in s.rows)


@pytest.mark.parametrize("zone", ZONES)
def test_days_and_hours_are_the_readers_local_ones(make, monkeypatch, zone):
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        led = make()
        led.add(ROWS)
        since = T0 - 7200
        expected = {}
        for by, fmt in (("day", "%Y-%m-%d"), ("hour", "%Y-%m-%d %H:00")):
            labels = sorted({time.strftime(fmt, time.localtime(r.t)) for r in ROWS if r.t >= since})
            expected[by] = labels
            assert [r[by] for r in led.summary(since, by).rows] == labels
        if zone == "Asia/Kolkata":
            assert expected["day"] == ["2026-12-05", "2026-12-06"]  # the rows straddle local midnight
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


SERIES_CASES = [
    # (since, step, by, [(bucket, group values, requests, input, errors)]): groups sort bytewise, "-" for none
    (T0 - 3600, 1800, ("account",), [(0, ("b@x",), 1, 10, 0), (1, ("-",), 1, 0, 1), (1, ("a@x",), 2, 5, 1), (2, ("B@x",), 1, 7, 1), (2, ("a@x",), 1, 0, 0)]),
    (T0 - 1800, 3600, ("account", "model"), [(0, ("-", "-"), 1, 0, 1), (0, ("B@x", "m1"), 1, 7, 1), (0, ("a@x", "m1"), 1, 4, 0), (0, ("a@x", "m2"), 1, 1, 1), (0, ("a@x", "m3"), 1, 0, 0)]),
    (T0 + 3600, 60, ("key",), []),
]  # fmt: skip


@pytest.mark.parametrize(("since", "step", "by", "want"), SERIES_CASES)
def test_series(make, since, step, by, want):
    led = make()
    led.add(ROWS)
    got = led.series(since, step, by)
    assert [((r["t"] - since) / step, tuple(r[b] for b in by), r["requests"], r["input_tokens"], r["errors"]) for r in got] == want
    assert all(set(r) == {"t", *by, *ledger_mod.TOTAL_KEYS} for r in got)
    with pytest.raises(ValueError, match="series by"):
        led.series(since, step, ("planet",))


def test_recent_errors(make):
    led = make()
    led.add(ROWS)
    errs = led.recent_errors(T0 - 7200)
    assert [(e["t"], e["status"], e["error"]) for e in errs] == [
        (T0 + 600, 500, None),
        (T0 - 60, None, "client hung up"),
        (T0 - 1800, 429, "limit"),
    ]
    assert all(tuple(e) == ledger_mod.ERROR_KEYS for e in errs)
    assert len(led.recent_errors(T0 - 7200, limit=1)) == 1 and led.recent_errors(T0 + 3600) == []


def test_purge_and_refusals(make):
    led = make()
    led.add(ROWS)
    assert led.purge(T0 - 7200) == 1 and led.purge(T0 - 7200) == 0
    assert led.summary(0).totals["requests"] == 6
    with pytest.raises(ValueError, match="--by 'planet': expected one of"):
        led.summary(0, "planet")


def test_both_ledgers_answer_alike_for_many_random_rows(request, tmp_path):
    import random

    rng = random.Random(7)
    rows = [
        Row(
            T0 - rng.uniform(0, 5 * 86400),
            rng.choice(["a", "b", "B", None, "é"]),
            rng.choice(["key:1", "key:2", "loopback", None]),
            model=rng.choice(["m1", "m2", None]),
            input_tokens=rng.randrange(10_000),
            cached_tokens=rng.randrange(100),
            output_tokens=rng.randrange(5000),
            reasoning_tokens=rng.randrange(50),
            status=rng.choice([200, 200, 429, None]),
            image_tokens=rng.choice([0, 0, 1056]),
            error=rng.choice([None, None, "x"]),
        )
        for _ in range(3000)
    ]
    made = _ledgers(request, tmp_path)
    one, two = made["sqlite"](), made["postgres"]()
    try:
        one.add(rows)
        two.add(rows)
        for since in (0.0, T0 - 86400):
            for by in (None, *ledger_mod.GROUPINGS):
                assert one.summary(since, by) == two.summary(since, by), (by, since)
            for step in (3600.0, 7 * 60.0):
                assert one.series(since, step, ("account", "model", "key")) == two.series(since, step, ("account", "model", "key"))
            assert one.recent_errors(since, 50) == two.recent_errors(since, 50)
    finally:
        one.close()
        two.close()


# -- PostgreSQL's own -----------------------------------------------------------------------------------


def test_the_table_has_a_column_for_every_row_field(pg_dsn):
    """A field added to Row needs a migration step adding its column (steps are append-only)."""
    led = PostgresLedger(pg_dsn)
    try:
        cols = led.session.run(
            lambda c: [r[0] for r in c.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s", (TABLE,))]
        )
        assert set(cols) == {f.name for f in fields(Row)}
        version = led.session.run(lambda c: c.execute("SELECT version FROM cliproxy_schema WHERE component = 'usage'").fetchone())
        assert version == (len(STEPS),)
    finally:
        led.close()


def test_local_zone_names_what_postgresql_accepts(monkeypatch, pg_dsn):
    import psycopg

    for tz, want in (("Europe/Berlin", "Europe/Berlin"), (":Asia/Kolkata", "Asia/Kolkata"), ("", None), ("Nowhere/Land", None)):
        monkeypatch.setenv("TZ", tz)
        zone = local_zone()
        if want:
            assert zone == want
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"SET TIME ZONE '{zone}'".encode())
    monkeypatch.delenv("TZ")
    time.tzset()


def test_open_ledger_picks_the_store(tmp_path, pg_dsn):
    assert isinstance(led := open_ledger(None, tmp_path), SQLiteLedger)
    led.close()
    assert isinstance(led := open_ledger(pg_dsn, tmp_path), PostgresLedger)
    led.close()


def test_unreachable_database_is_store_unavailable_without_the_password(pg_server):
    with pytest.raises(pg.StoreUnavailable) as err:
        PostgresLedger(f"postgresql://postgres:hunter2@127.0.0.1:{pg_server.port + 1}/postgres")
    assert "hunter2" not in str(err.value) and "***" in str(err.value)


def test_writer_keeps_rows_while_the_server_is_down_and_writes_them_when_it_returns(pg_server, pg_dsn, caplog):
    """Stopped while running: `put` neither blocks nor raises; one line when the outage starts, one when
    rows are written again; nothing lost."""
    w = Writer(lambda: PostgresLedger(pg_dsn))
    try:
        w.put(Row(time.time(), "a", input_tokens=1))
        assert w.flush()
        with caplog.at_level(logging.INFO, logger="cliproxy.addons.store.ledger"):
            pg_server.stop()
            try:
                t = time.perf_counter()
                for _ in range(50):
                    w.put(Row(time.time(), "a", input_tokens=2))
                assert time.perf_counter() - t < 0.1
                deadline = time.time() + 10
                while not any("cannot be written" in r.message for r in caplog.records) and time.time() < deadline:
                    time.sleep(0.1)
                time.sleep(2)  # several retries while it is down
            finally:
                pg_server.start()
            deadline = time.time() + 20
            while not any("written again" in r.message for r in caplog.records) and time.time() < deadline:
                time.sleep(0.1)
        assert w.flush()
        failing = [r for r in caplog.records if "cannot be written" in r.message]
        assert len(failing) == 1 and "StoreUnavailable" in failing[0].message
        assert len([r for r in caplog.records if "written again" in r.message]) == 1
    finally:
        w.close()
    led = PostgresLedger(pg_dsn)
    try:
        assert led.summary(0).totals["requests"] == 51 and led.summary(0).totals["input_tokens"] == 101
    finally:
        led.close()


def test_rows_past_the_bound_are_dropped_with_one_line(monkeypatch, caplog):
    monkeypatch.setattr(ledger_mod, "MAX_PENDING", 10)

    def opener() -> UsageLedger:
        raise pg.StoreUnavailable("store postgresql://h/db: connection refused")

    with caplog.at_level(logging.ERROR, logger="cliproxy.addons.store.ledger"):
        w = Writer(opener)
        for _ in range(3):
            for _ in range(8):
                w.put(Row(time.time()))
            w.flush()
            time.sleep(0.1)
        w.close(timeout=0)
    assert len([r for r in caplog.records if "newer ones are dropped" in r.message]) == 1
    assert len([r for r in caplog.records if "cannot be written" in r.message]) == 1
    assert len(w._pending) == 10


@pytest.mark.slow
def test_a_million_postgresql_rows_answer_thirty_days_in_well_under_two_seconds(pg_dsn):
    led = PostgresLedger(pg_dsn)
    now = time.time()
    span = 90 * 86400
    rows = [
        Row(now - span + i * span / 1_000_000, f"acct{i % 7}", f"key:{i % 13}", "chat", "openai", "gpt-5.5", "gpt-5.5", "medium",
            input_tokens=100, cached_tokens=10, output_tokens=50, reasoning_tokens=5, status=200)
        for i in range(1_000_000)
    ]  # fmt: skip
    try:
        t = time.perf_counter()
        for i in range(0, len(rows), 50_000):
            led.add(rows[i : i + 50_000])
        print(f"PostgreSQL: 1M rows written in {time.perf_counter() - t:.1f}s")
        led.session.run(lambda c: c.execute(f"ANALYZE {TABLE}"))
        for by in (None, "account", "day"):
            t = time.perf_counter()
            s = led.summary(now - 30 * 86400, by)
            took = time.perf_counter() - t
            print(f"PostgreSQL 1M rows, --since 30d --by {by}: {took:.3f}s")
            assert 330_000 < s.totals["requests"] < 340_000
            assert took < 2.0  # wall time (the server works in its own process): ~0.1-0.6 s when idle
    finally:
        led.close()
