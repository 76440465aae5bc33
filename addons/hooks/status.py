"""Addon: the status page. `GET /` on the base-URL listener answers an HTML dashboard of the pool (accounts,
quota, usage over time, recent errors); `GET /cliproxy/status.json` the same data as JSON. Both are local
answers (no account is used, no ledger row is written); what they show is built by `core.status` and
`pages.status_page`, pure.

Access is the API's (ClientAccess, before the Router: peers beyond loopback need a client key, and a
loopback peer without one must address the proxy by IP or `localhost`, against DNS rebinding). A key is
never taken from the URL (it would land in browser history and in flow logs).

Ledger reads run on their own thread with their own connection: a slow or locked database delays the
page, never the event loop, and a broken one leaves the page without its usage part.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mitmproxy import http

from cliproxy.addons.core import status
from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.mitm.flowstate import FlowState, on_claimed, reply_json
from cliproxy.addons.pages import status_page
from cliproxy.addons.store.ledger import UsageLedger
from cliproxy.addons.store.pg_ledger import open_ledger
from cliproxy.auth.pool import Member
from cliproxy.auth.quota import read_state
from cliproxy.auth.store import Account

logger = logging.getLogger(__name__)

ROUTES = ("status_page", "status_json")
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class StatusPage:
    name = "cliproxy_status"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="cliproxy-status")
        self._ledger: UsageLedger | None = None
        self._where: tuple[str | None, Path] | None = None
        self._warned: set[str] = set()
        self._closed = False

    @on_claimed(*ROUTES)
    async def request(self, flow: http.HTTPFlow, st: FlowState) -> None:
        rng = status.range_of(flow.request.query.get("range"))
        now = time.time()
        accounts = [status.account_view(m, now, self._facts(m)) for m in self.runtime.pool.members]
        ledger, note = await self._ledger_view(rng, now)
        snap = status.snapshot(accounts, ledger, rng, now, note)
        st["account"] = f"pool of {len(accounts)}"
        if st["route"] == "status_json":
            reply_json(flow, 200, json.dumps(snap).encode(), {"cache-control": "no-store"})
            return
        nonce = secrets.token_urlsafe(16)
        flow.response = http.Response.make(
            200,
            status_page.render(snap, nonce).encode(),
            {
                "content-type": "text/html; charset=utf-8",
                "cache-control": "no-store",
                "content-security-policy": CSP.format(nonce=nonce),
                "x-content-type-options": "nosniff",
                "x-frame-options": "DENY",
                "referrer-policy": "no-referrer",
            },
        )

    def _facts(self, member: Member) -> dict[str, Any]:
        """What the member's last wham/usage said: read here, else by `cliproxy accounts --probe` (its state file)."""
        facts = self.runtime.quota_facts(member.key)
        if not facts and isinstance(member.source, Account):
            saved = read_state(self.runtime.config.auth_dir, member.key).get("wham")
            facts = saved if isinstance(saved, dict) else {}
        return facts

    async def _ledger_view(self, rng: status.Range, now: float) -> tuple[dict[str, Any] | None, str | None]:
        cfg = self.runtime.config
        if cfg.usage_retention_days <= 0:
            return None, "The usage ledger is off (usage-retention-days: 0): no usage over time to show."
        where = (cfg.store, cfg.auth_dir)  # the PostgreSQL store (every host's rows), else SQLite in the auth dir

        def read() -> dict[str, Any]:
            if self._ledger is None or self._where != where:
                if self._ledger is not None:
                    self._ledger.close()
                self._ledger, self._where = open_ledger(*where), where
            return status.ledger_view(self._ledger, rng, now)

        try:
            return await asyncio.wrap_future(self._reader.submit(read)), None
        except Exception as exc:
            kind = f"{type(exc).__name__}: {exc}"[:200]
            if kind not in self._warned:
                self._warned.add(kind)
                logger.error("cliproxy: the status page cannot read the usage ledger (%s)", kind)
            return None, "The usage ledger cannot be read just now (see the proxy log)."

    def done(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            if self._ledger is not None:
                self._ledger.close()
                self._ledger = None

        self._reader.submit(close)
        self._reader.shutdown(wait=False)
