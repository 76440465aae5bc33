"""Addon: no open relay. A peer that is not loopback needs a client key on every flow of every listener.

The Router only sees the requests cliproxy serves; this addon sits before it and also covers what
cliproxy leaves alone (absolute-form requests and CONNECT tunnels to any host, TLS passed through,
Amp pass-through paths), which without it would make a listener bound beyond loopback an open relay.
What counts as loopback and where the key goes is in `access`.

- Regular proxy: `Proxy-Authorization` on CONNECT authorises that client connection's tunnel (HTTP/1
  sends it once per tunnel); absolute-form requests carry it each time. Refused: 407 with
  `Proxy-Authenticate: Basic realm="cliproxy"`. The tunnel is refused before it opens, so nothing,
  TLS pass-through included, reaches the target.
- Base-URL listener: the API headers on each request. Refused: 401 in the client's format.
- Raw TCP (and pass-through TLS) only ever follows an HTTP flow on the same connection: in regular mode
  mitmproxy's first layer is always the HTTP proxy layer, and ignoring a connection needs a target
  address, which only a CONNECT gives; after that a tunnel (checked at CONNECT) or a 101 upgrade
  (checked with its request). Regular and reverse modes take no UDP.

`Proxy-Authorization` is removed from every flow once read, so the client's key never goes upstream
nor into stored flows.
"""

from __future__ import annotations

import logging
import weakref

from mitmproxy import connection, http

from cliproxy.addons.core import access, routes
from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.mitm.flowstate import CLIENT_HOST, claim, reply_error
from cliproxy.addons.mitm.modes import is_base_url_listener
from cliproxy.addons.translate import errors

logger = logging.getLogger(__name__)

REALM = "cliproxy"


def _peer(client: connection.Client) -> str | None:
    return client.peername[0] if client.peername else None


class ClientAccess:
    name = "cliproxy_access"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        #: Client connections whose CONNECT tunnel was authorised: every flow inside it is allowed.
        self._tunnels: weakref.WeakSet[connection.Client] = weakref.WeakSet()

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if is_base_url_listener(flow.client_conn.proxy_mode):
            return  # mitmproxy itself refuses CONNECT outside regular mode
        if self._check(flow, proxy=True):
            self._tunnels.add(flow.client_conn)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or flow.is_replay:
            return  # a replay is the operator's own request
        proxy = not is_base_url_listener(flow.client_conn.proxy_mode)
        if proxy and flow.client_conn in self._tunnels:
            flow.request.headers.pop("proxy-authorization", None)
            return
        self._check(flow, proxy=proxy)

    def _check(self, flow: http.HTTPFlow, *, proxy: bool) -> bool:
        """Allow the flow or answer it with 407/401; fails closed."""
        headers = flow.request.headers
        try:
            presented = access.proxy_keys(headers.get("proxy-authorization", "")) if proxy else access.presented_keys(headers)
            reason = access.refusal(_peer(flow.client_conn), presented, self.runtime.config.api_keys, proxy=proxy)
        except Exception:
            logger.exception("cliproxy: client key check failed; refusing the flow")
            reason = "cliproxy could not check the client key; see the proxy log"
        headers.pop("proxy-authorization", None)
        if reason is None and not proxy and access.is_loopback(_peer(flow.client_conn)):
            if host_reason := access.host_refusal(flow.metadata.get(CLIENT_HOST, ""), presented, self.runtime.config.api_keys):
                self._refuse(flow, host_reason, proxy=False, status=403)
                return False
        if reason is None:
            return True
        self._refuse(flow, reason, proxy=proxy)
        return False

    def _refuse(self, flow: http.HTTPFlow, reason: str, *, proxy: bool, status: int = 401) -> None:
        req = flow.request
        target = f"{req.host}:{req.port}" if req.method == "CONNECT" else (req.pretty_url if proxy else req.path).split("?")[0]
        logger.warning(
            "cliproxy: refused %s %s from %s: %s",
            req.method,
            target,
            _peer(flow.client_conn),
            "a named Host without a client key (DNS rebinding guard)"
            if status == 403
            else "no valid client key"
            if self.runtime.config.api_keys
            else "no api-keys configured",
        )
        if proxy:
            err = errors.ProxyError(407, reason, "authentication_error", "proxy_authentication_required")
            fmt: routes.ClientFormat = "openai"
        else:
            err = (
                errors.ProxyError(403, reason, "permission_error", "host_not_allowed")
                if status == 403
                else errors.ProxyError(401, reason, "authentication_error", "invalid_api_key")
            )
            route = routes.classify(
                req.pretty_host, req.path, req.method, reverse_listener=True, anthropic_client="anthropic-version" in req.headers
            )
            fmt = route.format if route else "openai"
        if req.method != "CONNECT":
            claim(flow, "refused", fmt)
        reply_error(flow, err)
        assert flow.response is not None, "reply_error just set it"
        if proxy:
            flow.response.headers["proxy-authenticate"] = f'Basic realm="{REALM}"'
        elif status == 401:
            flow.response.headers["www-authenticate"] = f'Bearer realm="{REALM}"'

    def client_disconnected(self, client: connection.Client) -> None:
        self._tunnels.discard(client)
