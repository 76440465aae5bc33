"""Addon: the safety net at the end of cliproxy's chain."""

from __future__ import annotations

import logging

from mitmproxy import http

from cliproxy.addons.mitm.flowstate import reply_error, state
from cliproxy.addons.translate import errors

logger = logging.getLogger(__name__)


class Guard:
    """Last in cliproxy's chain: a claimed flow that is neither answered nor rewritten gets a 500."""

    name = "cliproxy_guard"

    def request(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is not None and flow.response is None and not st.get("upstream") and not st.get("passthrough"):
            logger.error("cliproxy: %s request was neither answered nor rewritten; refusing it", st.get("route"))
            reply_error(
                flow, errors.ProxyError(500, "cliproxy could not handle this request; see the proxy log", "server_error", "internal_error")
            )


class HeadWithoutBody:
    """Last of all: an answer to HEAD carries headers only. mitmproxy sends whatever body a response
    holds, and a HEAD answer with a body desynchronises a keep-alive connection (the client reads the
    body as the start of the next answer). `content-length` stays: that of the GET answer, as servers do."""

    name = "cliproxy_head"

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.request.method.upper() == "HEAD" and flow.response and flow.response.raw_content:
            flow.response.raw_content = b""
