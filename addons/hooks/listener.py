"""Addon: the base-URL listener, lazy upstream connections, and TLS pass-through for other hosts.

`cliproxy_listen` (default `127.0.0.1:8317`, empty disables) adds a reverse-proxy listener next to
mitmproxy's regular proxy, for tools configured with a base URL. The Host a client sent there is kept in
`flow.metadata[CLIENT_HOST]` (the status page checks it against DNS rebinding): mitmproxy's reverse mode
replaces it with the target's before any addon sees the request unless `keep_host_header` is on, so that
option is switched on and the replacement is done here instead, in the first addon, exactly as mitmproxy
would have done it; every later hook sees what it saw before. The regular proxy, too, listens on
loopback unless `listen_host` is given. In regular mode only the hosts
cliproxy serves are TLS-intercepted; every other connection passes through untouched, so tools need
the mitmproxy CA only for those hosts.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, exceptions, http, tls
from mitmproxy.net.http import url
from mitmproxy.net.tls import starts_like_tls_record
from mitmproxy.proxy import layer
from mitmproxy.proxy.layers import modes

from cliproxy.addons.core.routes import is_intercepted_host
from cliproxy.addons.mitm.flowstate import CLIENT_HOST
from cliproxy.addons.mitm.modes import SPEC_PREFIX, PlainHttpOnly, is_base_url_listener, listen_spec, loopback_spec

logger = logging.getLogger(__name__)


class Listener:
    name = "cliproxy_listener"

    def load(self, loader) -> None:
        loader.add_option(
            "cliproxy_listen",
            str,
            "127.0.0.1:8317",
            "Address of the base-URL endpoint for tools (http://HOST:PORT/v1 for OpenAI clients). Empty disables it.",
        )
        loader.add_option(
            "cliproxy_passthrough",
            bool,
            True,
            "Pass TLS connections to hosts cliproxy does not serve through without interception.",
        )

    def __init__(self) -> None:
        self._running = False

    def configure(self, updated: set[str]) -> None:
        if "cliproxy_listen" in updated and ctx.options.cliproxy_listen:
            try:
                listen_spec(ctx.options.cliproxy_listen)
            except ValueError as exc:
                raise exceptions.OptionsError(f"cliproxy_listen: {exc}") from None
        if self._running and {"cliproxy_listen", "connection_strategy", "mode"} & updated:
            self._apply()

    def running(self) -> None:
        # Options are changed once mitmproxy runs: updates made while scripts load at startup can be
        # rolled back by the option manager before the servers start.
        self._running = True
        self._apply()

    def _apply(self) -> None:
        modes = [m for m in ctx.options.mode if not m.startswith(SPEC_PREFIX)]
        if not ctx.options.listen_host and modes != (modes := [loopback_spec(m, ctx.options.listen_port) for m in modes]):
            logger.info("cliproxy: listening on 127.0.0.1 only; --listen-host 0.0.0.0 (with api-keys in the config) serves other machines")
        if ctx.options.cliproxy_listen:
            modes.append(listen_spec(ctx.options.cliproxy_listen))
        if modes != list(ctx.options.mode):
            ctx.options.update(mode=modes)
        if not ctx.options.keep_host_header:
            ctx.options.update(keep_host_header=True)  # the client's Host reaches `requestheaders` below
        if ctx.options.connection_strategy != "lazy":
            # Eager connections would dial api.openai.com & co. before a request can be rewritten.
            ctx.options.update(connection_strategy="lazy")

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Keep the Host the client sent to the base URL, then point it at the listener's target as
        mitmproxy's reverse mode does without `keep_host_header`."""
        if not is_base_url_listener(flow.client_conn.proxy_mode):
            return
        req = flow.request
        flow.metadata[CLIENT_HOST] = req.host_header or ""
        req.host_header = url.hostport(req.scheme, req.host, req.port)

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        context = nextlayer.context
        if (
            nextlayer.layer is None
            and is_base_url_listener(context.client.proxy_mode)
            and len(context.layers) == 1
            and isinstance(context.layers[0], modes.ReverseProxy)
            and starts_like_tls_record(nextlayer.data_client())
        ):
            logger.info("cliproxy: a TLS handshake on the plain-HTTP base URL was refused (clients must use http://)")
            nextlayer.layer = PlainHttpOnly(context)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        if not ctx.options.cliproxy_passthrough or is_base_url_listener(data.context.client.proxy_mode):
            return
        host = data.client_hello.sni
        if host is None and data.context.server.address:
            host = data.context.server.address[0]
        if not is_intercepted_host(host):
            data.ignore_connection = True
