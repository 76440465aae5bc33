"""No open relay: a proxy bound to 0.0.0.0 serves peers beyond loopback only with a client key, on every
flow of both listeners; loopback peers are served as before. And HEAD answers carry no body.

The peer that is not loopback is this machine reached through its own non-loopback address (the
kernel then reports that address, not 127.0.0.1, as the peer), so mitmproxy sees a LAN client.
Targets are local fakes: an HTTP server that records what reaches it and a TCP echo server.
"""

from __future__ import annotations

import base64
import json
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest

from tests.conftest import mint_account
from tests.proxyproc import Proxy, start_proxy

pytestmark = pytest.mark.e2e

KEY = "sk-remote-client"


def own_address() -> str | None:
    """A non-loopback IPv4 address of this machine, or None."""
    try:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            return parts[parts.index("inet") + 1].split("/")[0]
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return None
    return next((i[4][0] for i in infos if not i[4][0].startswith("127.")), None)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- local targets -------------------------------------------------------------------------------


class Target(ThreadingHTTPServer):
    """A plain HTTP server standing for an arbitrary host: records each request's headers."""

    daemon_threads = True

    def __init__(self) -> None:
        self.hits: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.hits.append({k.lower(): v for k, v in self.headers.items()})
                body = b"target says hi"
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]


class Echo(socketserver.ThreadingTCPServer):
    """A TCP server that echoes bytes back: stands for any non-HTTP service behind a tunnel."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.connections = 0
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                server.connections += 1
                while data := self.request.recv(65536):
                    self.request.sendall(data)

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]


def serving(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def addr() -> str:
    address = own_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to play a LAN client from")
    return address


@pytest.fixture(scope="module")
def target():
    server = serving(Target())
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def echo():
    server = serving(Echo())
    yield server
    server.shutdown()


def config(home, backend_server, **extra) -> dict:
    return {"auth-dir": str(home / "auth"), "codex-base-url": backend_server.base_url, "oauth-issuer": "http://127.0.0.1:9", **extra}


@pytest.fixture(scope="module")
def open_proxy(tmp_path_factory, backend_server):
    """cliproxy as the README tells users to expose it: --listen-host 0.0.0.0 with api-keys."""
    home = tmp_path_factory.mktemp("open")
    mint_account(home / "auth")
    p = start_proxy(home, config(home, backend_server, **{"api-keys": [KEY]}), listen_host="0.0.0.0")
    p.home = home
    yield p
    p.stop()


# -- a raw HTTP/1.1 connection ------------------------------------------------------------------


class Conn:
    """One keep-alive HTTP/1.1 connection, read byte-exactly: what is not announced must not arrive."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""

    def send(self, head: str) -> None:
        self.sock.sendall(head.encode("latin-1"))

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed; unread: {self.buf!r}")
        self.buf += chunk

    def read(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        assert status_line.startswith("HTTP/1.1 "), f"not a status line: {status_line!r}"
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = 0 if head_only else int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(status_line.split()[1]), headers, body

    def assert_quiet(self, wait: float = 0.3) -> None:
        """Nothing more arrives: no body after a HEAD answer."""
        self.sock.settimeout(wait)
        try:
            extra = self.sock.recv(65536)
        except TimeoutError:
            extra = b""
        finally:
            self.sock.settimeout(10)
        assert self.buf + extra == b"", f"bytes after the answer: {self.buf + extra!r}"

    def close(self) -> None:
        self.sock.close()


def client_hello(sni: str) -> bytes:
    """The first flight of a real TLS handshake for `sni`."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def connect(host: str, port: int, target: str, auth: str | None) -> tuple[Conn, int, dict[str, str], bytes]:
    c = Conn(host, port)
    c.send(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n" + (f"Proxy-Authorization: {auth}\r\n" if auth else "") + "\r\n")
    return c, *c.read()


def get_via(c: Conn, url: str, host: str, auth: str | None = None, method: str = "GET") -> None:
    c.send(f"{method} {url} HTTP/1.1\r\nHost: {host}\r\n" + (f"Proxy-Authorization: {auth}\r\n" if auth else "") + "\r\n")


# -- regular proxy, peer beyond loopback --------------------------------------------------------


@pytest.mark.parametrize("host", ["target", "api.openai.com"])
def test_absolute_form_request_needs_proxy_authorization(open_proxy: Proxy, target: Target, addr: str, host: str):
    hostport = f"127.0.0.1:{target.port}" if host == "target" else "api.openai.com"
    url = f"http://{hostport}/v1/models"
    before = len(target.hits)
    c = Conn(addr, open_proxy.regular_port)
    try:
        for auth in (None, basic("cliproxy", "wrong"), f"Bearer {KEY}x", "Digest x"):
            get_via(c, url, hostport, auth)
            status, headers, body = c.read()  # refused on the same keep-alive connection, each time
            assert status == 407, body
            assert headers["proxy-authenticate"] == 'Basic realm="cliproxy"'
            err = json.loads(body)["error"]
            assert err["code"] == "proxy_authentication_required" and "HTTPS_PROXY=http://cliproxy:KEY@" in err["message"]
        assert len(target.hits) == before  # nothing reached the target
        get_via(c, url, hostport, basic("cliproxy", KEY))
        status, _, body = c.read()
    finally:
        c.close()
    assert status == 200
    if host == "target":
        assert body == b"target says hi" and "proxy-authorization" not in target.hits[-1]  # the key stays with the proxy
    else:
        assert json.loads(body)["object"] == "list"
    assert f"refused GET {url} from {addr}" in open_proxy.log


@pytest.mark.parametrize("auth", [None, basic("cliproxy", "wrong"), basic("", ""), "Bearer wrong", f"Basic {KEY}"])
def test_connect_without_a_valid_key_is_407_and_opens_nothing(open_proxy: Proxy, echo: Echo, addr: str, auth):
    before = echo.connections
    c, status, headers, body = connect(addr, open_proxy.regular_port, f"127.0.0.1:{echo.port}", auth)
    try:
        assert status == 407 and headers["proxy-authenticate"] == 'Basic realm="cliproxy"'
        assert json.loads(body)["error"]["code"] == "proxy_authentication_required"
        try:  # a client that ignores the 407 and starts TLS anyway gets no tunnel
            c.sock.sendall(client_hello("example.org"))
            c.sock.settimeout(2)
            reply = c.sock.recv(65536)
        except OSError:
            reply = b""
        assert not reply.startswith(b"\x16")  # no TLS from anywhere: at most mitmproxy's HTTP error
    finally:
        c.close()
    time.sleep(0.2)
    assert echo.connections == before


@pytest.mark.parametrize("auth", [basic("cliproxy", KEY), basic(KEY, ""), f"Bearer {KEY}"], ids=["password", "username", "bearer"])
def test_connect_with_a_key_tunnels_tls_passthrough(open_proxy: Proxy, echo: Echo, addr: str, auth):
    c, status, _, _ = connect(addr, open_proxy.regular_port, f"127.0.0.1:{echo.port}", auth)
    try:
        assert status == 200
        hello = client_hello("example.org")  # not an intercepted host: passed through untouched
        c.sock.sendall(hello)
        got = b""
        while len(got) < len(hello):
            got += c.sock.recv(65536)
    finally:
        c.close()
    assert got == hello


def test_sdk_through_https_proxy_with_the_key_in_the_proxy_url(open_proxy: Proxy, backend, addr: str, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", open_proxy.ca)
    for name in ("NO_PROXY", "no_proxy", "OPENAI_BASE_URL", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://{addr}:{open_proxy.regular_port}")
    with pytest.raises(openai.APIConnectionError):
        openai.OpenAI(api_key=KEY, max_retries=0).models.list()  # the API key alone does not open the proxy
    monkeypatch.setenv("HTTPS_PROXY", f"http://cliproxy:{KEY}@{addr}:{open_proxy.regular_port}")
    client = openai.OpenAI(api_key="unused", max_retries=0)
    assert "gpt-5.5" in [m.id for m in client.models.list()]
    out = client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "over the LAN"}])
    assert out.choices[0].message.content == "You said: over the LAN"
    assert "proxy-authorization" not in backend.received[-1].headers


# -- base-URL listener, peer beyond loopback ----------------------------------------------------


@pytest.mark.parametrize(
    "method,path,headers,fmt",
    [
        ("GET", "/v1/models", {}, "openai"),
        ("POST", "/v1/chat/completions", {"authorization": "Bearer wrong"}, "openai"),
        ("POST", "/v1/messages", {"anthropic-version": "2023-06-01", "x-api-key": "wrong"}, "anthropic"),
        ("GET", "/v1/models", {"proxy-authorization": f"Bearer {KEY}"}, "openai"),  # not where this listener reads keys
        ("GET", "/nope", {"x-goog-api-key": "wrong"}, "openai"),  # unknown paths: 401 before 404
        ("POST", "/api/internal", {}, "openai"),  # Amp pass-through paths
        ("GET", "/threads/T-1", {}, "openai"),
        ("GET", "/api/provider/anthropic/v1/models", {}, "anthropic"),
    ],
)
def test_base_url_listener_needs_a_key_on_every_path(open_proxy: Proxy, addr: str, method, path, headers, fmt):
    r = httpx.request(
        method, f"http://{addr}:{open_proxy.base_port}{path}", headers=headers, json={} if method == "POST" else None, timeout=10
    )
    assert r.status_code == 401, r.text
    if fmt == "anthropic":
        assert r.json()["type"] == "error" and r.json()["error"]["type"] == "authentication_error"
    else:
        assert r.json()["error"]["code"] == "invalid_api_key" and "x-api-key" in r.json()["error"]["message"]


@pytest.mark.parametrize("headers", [{"authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}, {"x-goog-api-key": KEY}])
def test_base_url_listener_serves_a_valid_key(open_proxy: Proxy, addr: str, headers):
    r = httpx.get(f"http://{addr}:{open_proxy.base_port}/v1/models", headers=headers, timeout=10)
    assert r.status_code == 200 and r.json()["object"] == "list"


def test_without_api_keys_peers_beyond_loopback_are_told_to_configure_them(open_proxy: Proxy, echo: Echo, addr: str, backend_server):
    open_proxy.write_config(config(open_proxy.home, backend_server), wait_for="loaded")
    try:
        r = httpx.get(f"http://{addr}:{open_proxy.base_port}/v1/models", headers={"authorization": f"Bearer {KEY}"}, timeout=10)
        assert r.status_code == 401 and "add keys under api-keys" in r.json()["error"]["message"]
        c, status, _, body = connect(addr, open_proxy.regular_port, f"127.0.0.1:{echo.port}", basic("cliproxy", KEY))
        c.close()
        assert status == 407 and "add keys under api-keys" in json.loads(body)["error"]["message"]
        assert httpx.get(f"http://127.0.0.1:{open_proxy.base_port}/v1/models", timeout=10).status_code == 200  # loopback still served
    finally:
        open_proxy.write_config(config(open_proxy.home, backend_server, **{"api-keys": [KEY]}), wait_for="loaded")


# -- loopback peers: unchanged --------------------------------------------------------------------


def test_loopback_peers_need_no_key(open_proxy: Proxy, target: Target, echo: Echo):
    c = Conn("127.0.0.1", open_proxy.regular_port)
    try:
        get_via(c, f"http://127.0.0.1:{target.port}/x", f"127.0.0.1:{target.port}")
        assert c.read()[0] == 200
        get_via(c, f"http://127.0.0.1:{target.port}/x", f"127.0.0.1:{target.port}", basic("cliproxy", KEY))
        assert c.read()[0] == 200 and "proxy-authorization" not in target.hits[-1]  # stripped for everyone
    finally:
        c.close()
    c, status, _, _ = connect("127.0.0.1", open_proxy.regular_port, f"127.0.0.1:{echo.port}", None)
    try:
        assert status == 200
        c.sock.sendall(b"\x00ping")
        assert c.sock.recv(100) == b"\x00ping"
    finally:
        c.close()
    assert httpx.get(f"http://127.0.0.1:{open_proxy.base_port}/v1/models", timeout=10).status_code == 200


# -- HEAD: headers only, keep-alive intact ------------------------------------------------------

HEADS = [
    ("/v1/models", 200),
    ("/v1/models/gpt-5.5", 200),
    ("/v1/models/no-such-model", 404),
    ("/nope", 404),
    ("/v1/chat/completions", 405),
    ("/", 200),
    ("/api/internal", 503),  # Amp pass-through without an upstream configured
]


def test_head_answers_have_no_body_and_keep_alive_stays_in_step(proxy: Proxy):
    c = Conn("127.0.0.1", proxy.base_port)
    try:
        for path, status in HEADS:
            c.send(f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            got, headers, _ = c.read(head_only=True)
            assert got == status, path
            c.assert_quiet()
            if path == "/v1/models":
                assert int(headers["content-length"]) > 100  # what a GET would get, as servers do
        c.send("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, _, body = c.read()
    finally:
        c.close()
    assert status == 200 and json.loads(body)["object"] == "list"


def test_head_refused_407_and_401_have_no_body(open_proxy: Proxy, target: Target, addr: str):
    c = Conn(addr, open_proxy.regular_port)
    try:
        get_via(c, f"http://127.0.0.1:{target.port}/", f"127.0.0.1:{target.port}", method="HEAD")
        assert c.read(head_only=True)[0] == 407
        c.assert_quiet()
        get_via(c, f"http://127.0.0.1:{target.port}/", f"127.0.0.1:{target.port}", basic("cliproxy", KEY))
        status, _, body = c.read()
        assert (status, body) == (200, b"target says hi")
    finally:
        c.close()
    c = Conn(addr, open_proxy.base_port)
    try:
        c.send("HEAD /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read(head_only=True)[0] == 401
        c.assert_quiet()
        c.send(f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n")
        status, _, body = c.read()
        assert status == 200 and json.loads(body)["object"] == "list"
    finally:
        c.close()


def test_head_then_get_through_https_proxy_reuses_the_connection(proxy: Proxy):
    """The SDK's own HTTP/1.1 stack (httpx) through the tunnel: it notices bytes left after a HEAD answer
    and silently opens a new connection, so a body shows as one tunnel per request."""
    ctx = ssl.create_default_context(cafile=proxy.ca)
    mark = len(proxy.lines)
    with httpx.Client(base_url="https://api.openai.com", proxy=proxy.proxy_url, verify=ctx, timeout=10) as client:
        for path, status in HEADS[:5]:
            r = client.head(path)
            assert r.status_code == status and r.content == b"", path
        r = client.get("/v1/models")
        assert r.status_code == 200 and r.json()["object"] == "list"
    time.sleep(0.2)
    assert sum("client connect" in line for line in proxy.lines[mark:]) == 1


def test_head_over_http2_sends_no_data_frames(proxy: Proxy):
    """HTTP/2 inside the tunnel, spoken with the h2 library (httpx cannot offer only h2 behind a proxy)."""
    import h2.config
    import h2.connection
    import h2.events

    c, status, _, _ = connect("127.0.0.1", proxy.regular_port, "api.openai.com:443", None)
    ctx = ssl.create_default_context(cafile=proxy.ca)
    ctx.set_alpn_protocols(["h2"])
    with ctx.wrap_socket(c.sock, server_hostname="api.openai.com") as tls:
        assert status == 200 and tls.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        tls.sendall(conn.data_to_send())
        answers = []
        for stream_id, (method, path) in enumerate([("HEAD", p) for p, _ in HEADS[:5]] + [("GET", "/v1/models")], start=0):
            sid = 2 * stream_id + 1
            conn.send_headers(
                sid, [(":method", method), (":path", path), (":scheme", "https"), (":authority", "api.openai.com")], end_stream=True
            )
            tls.sendall(conn.data_to_send())
            got, body, ended = None, b"", False
            while not ended:
                data = tls.recv(65536)
                assert data, "connection closed"
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.ResponseReceived):
                        got = int(dict(ev.headers)[b":status"])
                    elif isinstance(ev, h2.events.DataReceived):
                        body += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                        ended = True
                    elif isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                        raise AssertionError(ev)
                tls.sendall(conn.data_to_send())
            answers.append((method, path, got, body))
    for (method, path, got, body), (_, status) in zip(answers[:5], HEADS):
        assert (got, body) == (status, b""), (method, path)
    assert answers[-1][2] == 200 and json.loads(answers[-1][3])["object"] == "list"


@pytest.mark.parametrize(
    ("path", "body", "anthropic_format"),
    [
        ("/v1/models", None, False),
        ("/v1/chat/completions", {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}, False),
        ("/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}, True),
    ],
)
def test_a_loopback_request_naming_a_dns_host_needs_a_key(proxy, backend, path, body, anthropic_format):
    """DNS rebinding: a web page that points its own name at 127.0.0.1 reaches the base URL as a loopback peer,
    but its Host is its name; without a client key that is a 403 in the client's format, and nothing goes upstream."""
    headers = {"host": f"rebound.attacker.example:{proxy.base_port}"}
    if anthropic_format:
        headers["anthropic-version"] = "2023-06-01"
    with httpx.Client(base_url=proxy.base_url, timeout=20) as client:
        r = client.request("POST" if body else "GET", path, json=body, headers=headers)
        assert r.status_code == 403, r.text
        error = r.json()["error"]
        assert error["type"] == "permission_error" and "DNS rebinding" in error["message"]
        assert r.json()["type"] == "error" if anthropic_format else error["code"] == "host_not_allowed"
        assert not backend.received
        r = client.request("POST" if body else "GET", path, json=body, headers={**headers, "host": f"localhost:{proxy.base_port}"})
        assert r.status_code == 200, r.text
