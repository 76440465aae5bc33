"""The mitmproxy internals cliproxy relies on still exist with the shape it uses (fast; no proxy run).

If one of these fails after a mitmproxy upgrade, `addons/mitm/upstream_failures.py` needs a look
before the version fence in `check_version` is widened."""

import inspect

import pytest
from cliproxy.addons.mitm import upstream_failures
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.layers.http import HttpStream, ResponseEndOfMessage, ResponseProtocolError
from mitmproxy.proxy.server import ConnectionHandler


def test_the_installed_mitmproxy_passes_the_fence():
    upstream_failures.check_version()


@pytest.mark.parametrize("found", ["11.1.3", "13.0.0", "garbage"])
def test_other_major_versions_are_refused_clearly(found):
    with pytest.raises(upstream_failures.UnsupportedMitmproxy, match=r"needs mitmproxy 12\.x \(found .*\).*pip install"):
        upstream_failures.check_version(found)


def test_http_stream_internals():
    for name in upstream_failures.STREAM_INTERNALS:
        assert callable(getattr(HttpStream, name)), name
    assert list(inspect.signature(upstream_failures._original).parameters) == ["self", "event"]
    assert list(inspect.signature(HttpStream.state_stream_response_body).parameters) == ["self", "event"]
    assert {"stream_id", "message"} <= set(inspect.signature(ResponseProtocolError).parameters)
    assert list(inspect.signature(ResponseEndOfMessage).parameters) == ["stream_id"]
    source = inspect.getsource(HttpStream)
    for attribute in ("self.flow", "self.client_state", "self.server_state", "self.stream_id"):
        assert attribute in source, attribute


def test_connection_table_internals():
    assert "connections" in inspect.getsource(Proxyserver.__init__)
    assert callable(ConnectionHandler.close_connection)
    assert "self.transports" in inspect.getsource(ConnectionHandler.__init__)


def test_install_is_idempotent_and_patches_the_stream():
    upstream_failures.install()
    upstream_failures.install()
    assert HttpStream.handle_protocol_error is upstream_failures._handle_protocol_error
