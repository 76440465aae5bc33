"""Addon: gives up on an upstream that stays silent for `request-timeout-seconds`.

Before the answer starts, mitmproxy would wait as long as the connection lives, and its inactivity
timeout then drops the client's connection as well. cliproxy instead closes the silent upstream
connection: before the first byte CodexUpstream receives that as a marked 504 and fails over to the
next account (or hands the client a 504 in its own format); in a translated stream the client gets
a terminal error event saying the upstream went silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from mitmproxy import http

from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.mitm.flowstate import state
from cliproxy.addons.mitm.upstream_failures import abandon_upstream
from cliproxy.addons.translate import errors
from cliproxy.addons.translate.stream import CodexStream

logger = logging.getLogger(__name__)

CHECK_EVERY = 1.0  # seconds between checks; the deadline is kept to about this precision


def _translator(flow: http.HTTPFlow) -> CodexStream | None:
    stream = flow.response.stream if flow.response else None
    translator = getattr(stream, "translator", stream)
    return translator if isinstance(translator, CodexStream) else None


class UpstreamDeadline:
    name = "cliproxy_deadline"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._watched: dict[str, tuple[http.HTTPFlow, float]] = {}  # flow id -> (flow, sent upstream at)
        self._task: asyncio.Task | None = None

    def running(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def request(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is not None and st.get("upstream") and not flow.response:
            self._watched[flow.id] = (flow, time.monotonic())

    def response(self, flow: http.HTTPFlow) -> None:
        self._watched.pop(flow.id, None)

    def error(self, flow: http.HTTPFlow) -> None:
        self._watched.pop(flow.id, None)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY)
            try:
                self.check(time.monotonic())
            except Exception:  # the watcher must survive anything
                logger.exception("cliproxy: deadline check failed")

    def check(self, now: float) -> None:
        """Give up on every watched flow whose upstream has been silent for the timeout."""
        limit = self.runtime.config.request_timeout
        for flow, sent_at in list(self._watched.values()):
            translator = _translator(flow)
            if flow.response is not None and translator is None:
                continue  # a buffered answer is on its way: nothing to translate, the deadline is mitmproxy's
            silent_since = translator.last_input_at if translator is not None else sent_at
            if now - silent_since < limit or (translator is not None and translator.finished):
                continue
            self._watched.pop(flow.id, None)
            self._give_up(flow, translator, limit)

    def _give_up(self, flow: http.HTTPFlow, translator: CodexStream | None, limit: int) -> None:
        st = state(flow)
        assert st is not None, "only claimed flows are watched (see request)"
        st["timed_out"] = limit
        where = "mid-answer" if translator is not None else "before answering"
        logger.warning("cliproxy: %s went silent for %ss %s; giving up on it", st.get("account"), limit, where)
        if translator is not None:
            translator.collector.error = errors.ProxyError(
                504, f"the upstream went silent for {limit}s mid-answer; the answer is incomplete", "server_error", "upstream_timeout"
            )
        with contextlib.suppress(Exception):
            if abandon_upstream(flow):
                return
        logger.warning("cliproxy: could not close the silent upstream connection")
