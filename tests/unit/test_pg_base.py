"""The shared PostgreSQL base: DSN handling, migrations, clear errors (a real server; skips without one)."""

from __future__ import annotations

import psycopg
import pytest

from cliproxy.addons.core import config
from cliproxy.addons.core.validate import ConfigError
from cliproxy.addons.store import pg


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgres://u:p%40ss@h/db", "postgres://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://h/db", "postgresql://h/db"),
    ],
)
def test_redact_hides_the_password(dsn: str, shown: str) -> None:
    assert pg.redact(dsn) == shown


def test_lock_keys_are_stable_distinct_signed_64_bit() -> None:
    keys = {pg.lock_key("refresh", f"acct-{i}") for i in range(1000)}
    assert len(keys) == 1000
    assert all(-(1 << 63) <= k < (1 << 63) for k in keys)
    assert pg.lock_key("refresh", "a") == pg.lock_key("refresh", "a")


@pytest.mark.parametrize(
    ("data", "env", "expected"),
    [
        ({}, None, None),
        ({}, "postgresql://x@h/db", "postgresql://x@h/db"),
        ({"store": "postgresql://c@h/db"}, "postgresql://x@h/db", "postgresql://c@h/db"),
    ],
)
def test_store_comes_from_config_then_environment(monkeypatch, data, env, expected) -> None:
    if env:
        monkeypatch.setenv(pg.DSN_ENV, env)
    else:
        monkeypatch.delenv(pg.DSN_ENV, raising=False)
    assert config.parse(data).store == expected
    assert config.Config().store == (env or None)


@pytest.mark.parametrize("value", ["mysql://u:pw@h/db", "sqlite:///x.db", 5, ""])
def test_a_store_that_is_not_a_postgresql_dsn_is_refused_without_its_password(value) -> None:
    with pytest.raises(ConfigError) as err:
        config.parse({"store": value})
    assert err.value.args[0].startswith("store: expected")
    assert "pw" not in str(err.value)


def test_migrate_applies_new_steps_once_and_refuses_a_newer_schema(pg_dsn: str) -> None:
    steps = ["CREATE TABLE t1 (id INTEGER PRIMARY KEY)", "ALTER TABLE t1 ADD COLUMN name TEXT"]
    with pg.connect(pg_dsn) as conn:
        assert pg.migrate(conn, "demo", steps[:1]) == 1
        assert pg.migrate(conn, "demo", steps) == 2
        assert pg.migrate(conn, "demo", steps) == 2  # nothing left to do: no error for the existing column
        conn.execute("INSERT INTO t1 (id, name) VALUES (1, 'x')")
        with pytest.raises(pg.StoreUnavailable, match="newer than this cliproxy knows"):
            pg.migrate(conn, "demo", steps[:1])
        assert pg.migrate(conn, "other", ["CREATE TABLE t2 (id INTEGER)"]) == 1


def test_a_failing_step_leaves_the_version_where_it_was(pg_dsn: str) -> None:
    with pg.connect(pg_dsn) as conn:
        pg.migrate(conn, "demo", ["CREATE TABLE t1 (id INTEGER)"])
        with pytest.raises(psycopg.errors.DuplicateTable):
            pg.migrate(conn, "demo", ["CREATE TABLE t1 (id INTEGER)", "CREATE TABLE t1 (id INTEGER)"])
        row = conn.execute("SELECT version FROM cliproxy_schema WHERE component = 'demo'").fetchone()
        assert row == (1,)


def test_an_unreachable_database_is_one_clear_error_without_the_password(pg_server) -> None:
    dsn = f"postgresql://postgres:hunter2@127.0.0.1:{pg_server.port + 1}/postgres"
    with pytest.raises(pg.StoreUnavailable) as err:
        pg.connect(dsn)
    assert "hunter2" not in str(err.value)
    assert "127.0.0.1" in str(err.value)
