"""The ledger and conversation hooks with `store` naming a database that cannot be reached: one log line
each at start, rows kept, lookups answered 503 `store_unavailable`, nothing raised (whatever the rest of
the proxy then decides about a missing database)."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace

import pytest

from cliproxy.addons.core import config
from cliproxy.addons.hooks.conversations import Conversations
from cliproxy.addons.hooks.ledger import UsageLedger
from cliproxy.addons.store.ledger import Row
from cliproxy.addons.translate.errors import ProxyError


def test_an_unreachable_store_is_one_line_each_and_nothing_fails(pg_server, tmp_path, caplog):
    dsn = f"postgresql://postgres:hunter2@127.0.0.1:{pg_server.port + 1}/nowhere"
    runtime = SimpleNamespace(config=config.parse({"auth-dir": str(tmp_path), "store": dsn}))
    ledger, conversations = UsageLedger(runtime), Conversations(runtime)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO):
        try:
            ledger.running()
            conversations.running()
            deadline = time.time() + 10
            while time.time() < deadline and not (
                any("usage ledger cannot be written" in r.message for r in caplog.records)
                and any("response store failed" in r.message for r in caplog.records)
            ):
                time.sleep(0.05)
            t = time.perf_counter()
            for _ in range(100):
                ledger._put(Row(time.time(), "a", input_tokens=1))
            assert time.perf_counter() - t < 0.1
            with pytest.raises(ProxyError) as err:
                asyncio.run(conversations._run(lambda s: s.get_response("loopback", "resp_1")))
            assert err.value.status == 503 and err.value.code == "store_unavailable"
            time.sleep(1.5)  # the writer retries meanwhile
        finally:
            ledger.done()
            conversations.done()
    lines = [r.getMessage() for r in caplog.records]
    assert sum("usage ledger cannot be written" in m for m in lines) == 1
    assert sum("response store failed" in m for m in lines) == 1
    assert not any("hunter2" in m for m in lines) and any("postgres:***@127.0.0.1" in m for m in lines)
    assert not (tmp_path / ".cliproxy-state").exists()  # no SQLite fallback: the store named is the store used
