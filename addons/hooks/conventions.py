"""Addon: the HTTP conventions clients expect of a base URL, on every answer cliproxy gives.

- `x-request-id`: the backend's own when it sent one, else a fresh `req_…` (local answers, errors,
  translated answers). Pass-through flows keep what their upstream sent.
- `OPTIONS` (a browser's CORS preflight) is answered 204; the CORS headers, and
  `access-control-allow-origin` on the actual answers, only for origins listed in `cors-origins`
  (rules and reasons in `core.cors`).
- A request from a web page whose origin is not listed gets a 403 `origin_not_allowed` before
  anything runs: any request on the base-URL listener, and the requests cliproxy serves on intercepted
  hosts (except the site's own pages). Checked at `requestheaders`, after the Router claimed the flow.
"""

from __future__ import annotations

import logging

from mitmproxy import http

from cliproxy.addons.core import cors
from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.mitm.flowstate import FlowState, claim, on_claimed, reply_error, state
from cliproxy.addons.mitm.modes import is_base_url_listener
from cliproxy.addons.translate import errors

logger = logging.getLogger(__name__)


class HttpConventions:
    name = "cliproxy_http_conventions"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        origin = flow.request.headers.get("origin")
        if st is not None and cors.allowed(origin, self.runtime.config.cors_origins):
            st["cors_origin"] = origin  # kept: the request's headers are replaced when it goes upstream
        self._refuse_web_pages(flow, st)

    def _refuse_web_pages(self, flow: http.HTTPFlow, st: FlowState | None) -> None:
        """403 for a request a web page sent from an unlisted origin: CORS hides the answer from the page,
        but a simple request (text/plain POST, WebSocket handshake) would still run and spend the pool."""
        req = flow.request
        if flow.response is not None or flow.error or not flow.live or flow.is_replay or req.method == "OPTIONS":
            return  # a preflight spends nothing and already gets no CORS headers for an unlisted origin
        base_url = is_base_url_listener(flow.client_conn.proxy_mode)
        if st is None and not base_url:
            return  # traffic cliproxy does not serve goes where it was going
        own = None if base_url else cors.origin_of(req.scheme, req.pretty_host, req.port)
        reason = cors.refusal(req.headers.get("origin"), req.headers.get("sec-fetch-site"), self.runtime.config.cors_origins, own)
        if reason is None:
            return
        logger.warning("cliproxy: refused %s %s from a web page: %s", req.method, req.path.split("?")[0][:200], reason)
        if st is None:
            claim(flow, "refused", "openai")
        reply_error(flow, errors.ProxyError(403, reason, "permission_error", "origin_not_allowed"))

    @on_claimed("options")
    def request(self, flow: http.HTTPFlow, st: FlowState) -> None:
        req = flow.request
        headers = cors.preflight_headers(
            req.headers.get("origin"), req.headers.get("access-control-request-headers"), self.runtime.config.cors_origins
        )
        flow.response = http.Response.make(204, b"", headers)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._mark(flow)  # a streamed answer's headers leave right after this hook

    def response(self, flow: http.HTTPFlow) -> None:
        self._mark(flow)  # answers made in `request` hooks (local answers, errors) skip `responseheaders`

    def _mark(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        resp = flow.response
        if st is None or resp is None or st.get("passthrough"):
            return
        if "x-request-id" not in resp.headers:
            st.setdefault("request_id", cors.request_id())
            resp.headers["x-request-id"] = st["request_id"]
        for name, value in cors.answer_headers(st.get("cors_origin"), self.runtime.config.cors_origins).items():
            resp.headers[name] = value
