"""Addon: gives up on an upstream that has not started answering within `request-timeout-seconds`.

mitmproxy waits for response headers as long as the connection lives, and its inactivity timeout
then drops the client's connection as well. cliproxy instead closes the silent upstream connection;
CodexUpstream receives that as a marked 504 and fails over to the next account, or hands the client
a 504 in its own format.
"""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import http

from .flowstate import state
from .runtime import Runtime
from .upstream_failures import abandon_upstream

logger = logging.getLogger(__name__)


class UpstreamDeadline:
    name = "cliproxy_deadline"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def request(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is None or not st.get("upstream") or flow.response:
            return
        seconds = self.runtime.config.request_timeout
        self._timers[flow.id] = asyncio.get_running_loop().call_later(seconds, self._expire, flow, seconds)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._disarm(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        self._disarm(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._disarm(flow)

    def _disarm(self, flow: http.HTTPFlow) -> None:
        timer = self._timers.pop(flow.id, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, flow: http.HTTPFlow, seconds: int) -> None:
        self._timers.pop(flow.id, None)
        st = state(flow)
        if st is None or flow.response is not None or flow.error is not None:
            return
        st["timed_out"] = seconds
        logger.warning("cliproxy: %s did not start answering within %ss; giving up on it", st.get("account"), seconds)
        if not abandon_upstream(flow):
            logger.warning("cliproxy: could not close the silent upstream connection")
