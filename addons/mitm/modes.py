"""mitmproxy modes as cliproxy uses them: the base-URL listener's mode spec, binding to loopback, and
the base URL's refusal of TLS (it speaks plain HTTP)."""

from __future__ import annotations

from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.mode_specs import ProxyMode, ReverseMode

from cliproxy.addons.core.routes import REVERSE_TARGET

SPEC_PREFIX = f"reverse:http://{REVERSE_TARGET}@"


def listen_spec(listen: str) -> str:
    """The mitmproxy mode spec for a `host:port` listen address."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8317, got {listen!r}")
    return SPEC_PREFIX + listen


def loopback_spec(spec: str, default_port: int | None) -> str:
    """`spec` bound to 127.0.0.1 when it names no listen host. mitmproxy's default is every
    interface, an open proxy for the whole network; `--listen-host 0.0.0.0` (with `api-keys` in the
    config) still opens it on purpose."""
    mode = ProxyMode.parse(spec)
    port = mode.listen_port(default_port)
    if mode.custom_listen_host is not None or port is None:
        return spec
    return f"{spec.rsplit('@', 1)[0] if mode.custom_listen_port is not None else spec}@127.0.0.1:{port}"


def is_base_url_listener(mode) -> bool:
    return isinstance(mode, ReverseMode) and mode.full_spec.startswith(SPEC_PREFIX)


_TLS_REFUSED = b"cliproxy's base URL speaks plain HTTP: use http://, not https://, for it.\r\n"
_PLAIN_HTTP_ONLY = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (
    len(_TLS_REFUSED),
    _TLS_REFUSED,
)


class PlainHttpOnly(layer.Layer):
    """The base-URL listener's answer to a TLS handshake: a plain-text 400, then the connection closes.
    (mitmproxy's reverse mode would otherwise answer the handshake with a certificate from its own CA,
    which clients that were given this http:// address do not trust, or hold a bare ClientHello open.)"""

    answered = False

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.DataReceived) and not self.answered:
            self.answered = True
            yield commands.SendData(self.context.client, _PLAIN_HTTP_ONLY)
            yield commands.CloseConnection(self.context.client)
