"""Addon: the HTTP conventions clients expect of a base URL, on every answer cliproxy gives.

- `x-request-id`: the backend's own when it sent one, else a fresh `req_…` (local answers, errors,
  translated answers). Pass-through flows keep what their upstream sent.
- `OPTIONS` (a browser's CORS preflight) is answered 204; the CORS headers, and
  `access-control-allow-origin` on the actual answers, only for origins listed in `cors-origins`
  (rules and reasons in `core.cors`).
"""

from __future__ import annotations

from mitmproxy import http

from cliproxy.addons.core import cors
from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.mitm.flowstate import FlowState, on_claimed, state


class HttpConventions:
    name = "cliproxy_http_conventions"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        origin = flow.request.headers.get("origin")
        if st is not None and cors.allowed(origin, self.runtime.config.cors_origins):
            st["cors_origin"] = origin  # kept: the request's headers are replaced when it goes upstream

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
