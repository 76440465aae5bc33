"""Addon: the usage ledger. Every finished request that was meant for the pool (every route, HTTP and
each WebSocket turn; local answers such as the model list excluded) becomes one `store.ledger.Row`.

It runs last in the chain, when the other hooks have settled the flow (usage, account, failovers).
Rows are handed to a `Writer` thread: nothing here waits on the database. The ledger is SQLite in the
state folder, or PostgreSQL with `store` in the config (every host's rows in one table). The client key is reduced
to a short hash at `requestheaders`, before the request's headers are replaced by the account's.
"""

from __future__ import annotations

import time
from pathlib import Path

from mitmproxy import http

from cliproxy.addons.core.access import presented_keys
from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.mitm.flowstate import FlowState, state
from cliproxy.addons.store.ledger import Row, Writer, image_tokens, usage_fields
from cliproxy.addons.store.pg_ledger import open_ledger
from cliproxy.addons.store.responses import owner_of


def _row(st: FlowState, now: float, status: int | None, error: str | None, turn: dict | None = None) -> Row:
    src: dict = turn if turn is not None else dict(st)
    image_usage = src.get("image_usage")
    # /v1/images answered through the `/responses` form: the client was told the image tool's usage
    told = image_usage if image_usage and st.get("route", "").startswith("images_") else src.get("usage")
    tokens = usage_fields(told)
    t0 = st.get("t0")
    if turn is not None:
        ttfb, seconds = turn.get("ttfe"), turn.get("seconds")
    else:
        seconds = now - t0 if t0 else None
        ttfb = st["t_headers"] - t0 if t0 and st.get("t_headers") else seconds
    return Row(
        t=now,
        account=st.get("account"),
        key=st.get("client_key"),
        route=st.get("route", ""),
        format=st.get("format", ""),
        client_model=src.get("client_model"),
        model=src.get("model"),
        effort=src.get("effort"),
        tier_asked=st.get("tier_asked") if turn is None else None,
        tier_served=st.get("service_tier") if turn is None else None,
        input_tokens=tokens["input_tokens"],
        cached_tokens=tokens["cached_tokens"],
        output_tokens=tokens["output_tokens"],
        reasoning_tokens=tokens["reasoning_tokens"],
        ttfb=ttfb,
        seconds=seconds,
        status=status,
        error=error,
        failovers=st.get("failover", 0) if turn is None else 0,
        image_tokens=image_tokens(image_usage),
    )


def meant_for_pool(st: FlowState) -> bool:
    """A request translated for the backend, sent to it, or served by its native image endpoints (the Images
    hook calls those itself): local answers never get this far."""
    return bool(st.get("ready") or st.get("upstream") or st.get("images_path"))


class UsageLedger:
    name = "cliproxy_ledger"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._writer: Writer | None = None
        self._where: tuple[str | None, Path] | None = None

    def writer(self) -> Writer | None:
        """The writer of the store or auth dir in force (None while `usage-retention-days` is 0: no ledger)."""
        cfg = self.runtime.config
        if cfg.usage_retention_days <= 0:
            return None
        if self._writer is None or self._where != (cfg.store, cfg.auth_dir):
            if self._writer is not None:
                self._writer.close(timeout=0)
            self._where = dsn, auth_dir = cfg.store, cfg.auth_dir
            self._writer = Writer(lambda: open_ledger(dsn, auth_dir), cfg.usage_retention_days)
            if dsn:
                self._writer.flush(timeout=0)  # connect now: a database unreachable at start is one log line at start
        self._writer.retention_days = cfg.usage_retention_days
        return self._writer

    def running(self) -> None:
        if self.runtime.config.store:
            self.writer()

    def done(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def _put(self, row: Row) -> None:
        if (writer := self.writer()) is not None:
            writer.put(row)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is not None and "client_key" not in st:
            st["client_key"] = owner_of(presented_keys(flow.request.headers))

    def response(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is None or st.get("websocket") or st.get("ledgered") or not meant_for_pool(st):
            return
        st["ledgered"] = True
        status = flow.response.status_code if flow.response is not None else None
        self._put(_row(st, time.time(), status, st.get("error")))

    def error(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is None or st.get("websocket") or st.get("ledgered") or not meant_for_pool(st):
            return
        st["ledgered"] = True
        status = flow.response.status_code if flow.response is not None else None
        # CodexUpstream clears the error of an answer that was complete when the client hung up: a success
        error = st.get("error") or (flow.error.msg if flow.error else None)
        self._put(_row(st, time.time(), status, error))

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        self._turns(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._turns(flow)

    def _turns(self, flow: http.HTTPFlow) -> None:
        """A row for each WebSocket turn finished since the last look."""
        st = state(flow)
        if st is None or not st.get("websocket"):
            return
        turns = st.get("turns") or []
        done = st.get("turns_ledgered", 0)
        now = time.time()
        for turn in turns[done:]:
            error = turn.get("error")
            self._put(_row(st, now, 200 if not error else None, error, turn))
        st["turns_ledgered"] = len(turns)
