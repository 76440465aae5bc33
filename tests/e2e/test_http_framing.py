"""HTTP/1.1 framing through the real proxy, byte for byte on raw sockets (what SDKs refuse to send):
chunked trailers, malformed content-length and chunk framing, oversized bodies counted as they arrive,
TLS on the plain base URL, HEAD. Every case ends in a status and the client's own JSON error format
within a deadline, and the proxy keeps serving."""

from __future__ import annotations

import json
import re
import select
import socket
import ssl
import subprocess
import threading
import time

import httpx
import pytest

from tests.proxyproc import Proxy, start_proxy

pytestmark = pytest.mark.e2e

DEADLINE = 5.0  # seconds for any answer
LIMIT = 1 << 20  # max-request-bytes of the small-limit proxy
CHAT = json.dumps({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}).encode()
MESSAGES = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}).encode()
ROUTES = {"/v1/chat/completions": CHAT, "/v1/messages": MESSAGES}


# ---------------------------------------------------------------------------------------------
# Raw HTTP/1.1 over either listener


def connect(proxy: Proxy, listener: str, path: str = "/v1/chat/completions") -> socket.socket:
    """A socket that speaks HTTP/1.1 to cliproxy: the base URL, or a CONNECT tunnel through the regular
    proxy with TLS to api.openai.com / api.anthropic.com (the mitmproxy CA), as HTTPS_PROXY users have."""
    if listener == "base_url":
        return socket.create_connection(("127.0.0.1", proxy.base_port), timeout=DEADLINE)
    host = host_for(listener, path)
    sock = socket.create_connection(("127.0.0.1", proxy.regular_port), timeout=DEADLINE)
    sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 200"), head
    ctx = ssl.create_default_context(cafile=proxy.ca)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx.wrap_socket(sock, server_hostname=host)


def host_for(listener: str, path: str) -> str:
    if listener == "base_url":
        return "127.0.0.1"
    return "api.anthropic.com" if path.startswith("/v1/messages") else "api.openai.com"


def read_response(sock: socket.socket, head_only: bool = False, data: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One response (its first bytes may already be in `data`): its head, then content-length bytes (or,
    without a length, until the close)."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without an answer (got {data!r})"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    if head_only:
        return int(lines[0].split()[1]), headers, body
    if "content-length" in headers:
        while len(body) < int(headers["content-length"]):
            chunk = sock.recv(65536)
            assert chunk, "connection closed mid-body"
            body += chunk
    else:
        while chunk := sock.recv(65536):
            body += chunk
    return int(lines[0].split()[1]), headers, body


def exchange(proxy: Proxy, listener: str, path: str, raw: bytes) -> tuple[int, dict[str, str], bytes, float]:
    t0 = time.monotonic()
    with connect(proxy, listener, path) as sock:
        sock.sendall(raw)
        status, headers, body = read_response(sock)
    return status, headers, body, time.monotonic() - t0


def head(path: str, framing: str, listener: str = "base_url") -> bytes:
    host = host_for(listener, path)
    extra = "anthropic-version: 2023-06-01\r\n" if path.startswith("/v1/messages") else ""
    return f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{extra}{framing}\r\n".encode()


def chunks(body: bytes, size: int = 16) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size))


def client_error(path: str, status: int, body: bytes) -> str:
    """The error message, after checking the body is the route's client format."""
    data = json.loads(body)
    if path.startswith("/v1/messages"):
        assert data["type"] == "error" and isinstance(data["error"]["type"], str), data
        return data["error"]["message"]
    assert isinstance(data["error"]["type"], str) and "param" in data["error"] and "code" in data["error"], data
    return data["error"]["message"]


def still_serving(proxy: Proxy, listener: str) -> None:
    """The next request, on a fresh connection, works."""
    status, _, body, _ = exchange(
        proxy, listener, "/v1/chat/completions", head("/v1/chat/completions", f"Content-Length: {len(CHAT)}\r\n", listener) + CHAT
    )
    assert status == 200 and json.loads(body)["choices"][0]["message"]["content"], body


@pytest.fixture(params=["base_url", "https_proxy"])
def listener(request) -> str:
    return request.param


# ---------------------------------------------------------------------------------------------
# Chunked trailers: an ordinary answer (mitmproxy raised NotImplementedError and never answered)


@pytest.mark.parametrize("path", sorted(ROUTES))
def test_a_chunked_body_with_trailers_gets_an_answer(proxy: Proxy, backend, listener, path):
    raw = head(path, "Transfer-Encoding: chunked\r\n", listener) + chunks(ROUTES[path]) + b"0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"
    status, _, body, took = exchange(proxy, listener, path, raw)
    assert status == 200, body
    assert took < DEADLINE
    answer = json.loads(body)
    assert answer["content"][0]["text"] if path == "/v1/messages" else answer["choices"][0]["message"]["content"]
    assert len(backend.received) == 1 and "x-checksum" not in backend.received[0].headers
    still_serving(proxy, listener)


# ---------------------------------------------------------------------------------------------
# Malformed framing: 400 in the client's format (mitmproxy sent HTML, or closed without a word)

FRAMING = {
    "content-length and chunked": lambda b: (f"Content-Length: {len(b)}\r\nTransfer-Encoding: chunked\r\n", chunks(b) + b"0\r\n\r\n"),
    "negative content-length": lambda b: ("Content-Length: -5\r\n", b),
    "non-numeric content-length": lambda b: ("Content-Length: 12abc\r\n", b),
    "duplicate differing content-length": lambda b: (f"Content-Length: {len(b)}\r\nContent-Length: 5\r\n", b),
    "content-length list": lambda b: (f"Content-Length: {len(b)}, {len(b)}\r\n", b),
    "transfer-encoding gzip": lambda b: ("Transfer-Encoding: gzip\r\n", b),
    "chunk size not hex": lambda b: ("Transfer-Encoding: chunked\r\n", b"zz\r\n" + b + b"\r\n0\r\n\r\n"),
    "chunk size negative": lambda b: ("Transfer-Encoding: chunked\r\n", b"-10\r\n" + b + b"\r\n0\r\n\r\n"),
    "chunk longer than its size": lambda b: ("Transfer-Encoding: chunked\r\n", b"4\r\n" + b + b"\r\n0\r\n\r\n"),
}


@pytest.mark.parametrize("path", sorted(ROUTES))
@pytest.mark.parametrize("case", sorted(FRAMING))
def test_malformed_framing_is_a_400_in_the_clients_format(proxy: Proxy, backend, listener, path, case):
    framing, payload = FRAMING[case](ROUTES[path])
    status, headers, body, took = exchange(proxy, listener, path, head(path, framing, listener) + payload)
    assert status == 400, body
    assert took < DEADLINE
    assert headers["content-type"] == "application/json"
    message = client_error(path, status, body)
    assert "framing" in message or "content-length" in message or "transfer-encoding" in message or "chunk" in message, message
    assert backend.received == []
    still_serving(proxy, listener)


def test_a_request_line_that_cannot_be_parsed_is_a_json_400_on_the_base_url(proxy: Proxy, backend):
    status, _, body, _ = exchange(proxy, "base_url", "/", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n")
    assert status == 400 and "malformed" in client_error("/v1/chat/completions", status, body)
    still_serving(proxy, "base_url")


def test_traffic_cliproxy_does_not_serve_keeps_mitmproxys_answer(proxy: Proxy, backend):
    """Plain HTTP to another host through the regular proxy: the framing error stays mitmproxy's own."""
    with socket.create_connection(("127.0.0.1", proxy.regular_port), timeout=DEADLINE) as sock:
        sock.sendall(b"POST http://example.invalid/upload HTTP/1.1\r\nHost: example.invalid\r\nContent-Length: -5\r\n\r\n")
        status, headers, _ = read_response(sock)
    assert status == 400 and headers["content-type"] == "text/html"


def test_a_body_cut_short_by_the_client_ends_quietly(proxy: Proxy, backend, listener):
    with connect(proxy, listener) as sock:
        sock.sendall(head("/v1/chat/completions", "Transfer-Encoding: chunked\r\n", listener) + b"10\r\nabc")
        sock.shutdown(socket.SHUT_WR)
        sock.recv(65536)  # a 400 or the close, without waiting for the deadline
    assert backend.received == []
    still_serving(proxy, listener)


# ---------------------------------------------------------------------------------------------
# TLS on the plain-HTTP base URL: refused at once (mitmproxy held a bare ClientHello open)


def client_hello() -> bytes:
    ctx = ssl.create_default_context()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return out.read()


def test_a_tls_client_hello_on_the_base_url_gets_a_plain_400_and_the_close(proxy: Proxy):
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", proxy.base_port), timeout=DEADLINE) as sock:
        sock.sendall(client_hello())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert time.monotonic() - t0 < 1
    assert data.startswith(b"HTTP/1.1 400 ") and b"plain HTTP" in data
    with pytest.raises(httpx.ConnectError):  # an https:// client fails at once instead of waiting
        httpx.get(f"https://127.0.0.1:{proxy.base_port}/v1/models", verify=False, timeout=DEADLINE)
    still_serving(proxy, "base_url")


def test_tls_through_the_regular_proxy_is_unaffected(proxy: Proxy):
    ctx = ssl.create_default_context(cafile=proxy.ca)
    with httpx.Client(proxy=proxy.proxy_url, verify=ctx, timeout=DEADLINE) as client:
        assert client.get("https://api.openai.com/v1/models").status_code == 200


# ---------------------------------------------------------------------------------------------
# HEAD: headers only, so the next response on the connection is read correctly


@pytest.mark.parametrize(
    "path,status", [("/v1/models", 200), ("/v1/models/gpt-5.5", 200), ("/v1/chat/completions", 405), ("/nowhere", 404)]
)
def test_head_answers_carry_no_body(proxy: Proxy, listener, path, status):
    with connect(proxy, listener) as sock:
        sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: {host_for(listener, path)}\r\n\r\n".encode())
        got, headers, rest = read_response(sock, head_only=True)
        assert got == status and int(headers["content-length"]) > 0 and rest == b""
        sock.sendall(f"GET /v1/models HTTP/1.1\r\nHost: {host_for(listener, path)}\r\n\r\n".encode())
        got, _, body = read_response(sock)
        assert got == 200 and json.loads(body)["data"], body


# ---------------------------------------------------------------------------------------------
# Oversized bodies: 413 as the count passes max-request-bytes, nothing buffered whole


@pytest.fixture(scope="module")
def small_limit_proxy(tmp_path_factory, backend_server):
    home = tmp_path_factory.mktemp("framing")
    from tests.fakes.accounts import mint_account

    mint_account(home / "auth")
    p = start_proxy(
        home,
        {
            "auth-dir": str(home / "auth"),
            "codex-base-url": backend_server.base_url,
            "oauth-issuer": "http://127.0.0.1:9",
            "max-request-bytes": LIMIT,
        },
    )
    yield p
    p.stop()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


class RssPeak:
    def __init__(self, pid: int) -> None:
        self.pid, self.before, self.peak, self._stop = pid, rss_mb(pid), 0.0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.02)

    def growth(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak - self.before


def send_big(sock: socket.socket, raw_head: bytes, total: int, chunked: bool) -> tuple[int, bytes, int]:
    """Send up to `total` body bytes, stopping as soon as an answer is readable; (status, body, bytes sent by then).

    One thread does both: an SSL socket must not be read and written from two threads at once (OpenSSL's
    connection object is not thread-safe; doing so crashed the interpreter now and then)."""
    piece = b"x" * 65536
    sent, early = 0, b""
    try:
        sock.sendall(raw_head)
        while sent < total:
            if (isinstance(sock, ssl.SSLSocket) and sock.pending()) or select.select([sock], [], [], 0)[0]:
                if early := _read_now(sock):
                    break  # the answer is here while the body is still being sent
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the proxy may close once the answer is out
    status, _, body = read_response(sock, data=early)
    return status, body, sent


def _read_now(sock: socket.socket) -> bytes:
    """What can be read at once (readable TLS can hold no application data yet, e.g. a session ticket)."""
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        return sock.recv(65536)
    except (ssl.SSLWantReadError, BlockingIOError):
        return b""
    finally:
        sock.settimeout(timeout)


@pytest.mark.parametrize("path", sorted(ROUTES))
@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_60mb_body_is_refused_with_413_as_it_arrives(small_limit_proxy: Proxy, backend, listener, path, chunked):
    total = 60 * 1000 * 1000
    rss = RssPeak(small_limit_proxy.proc.pid)
    with connect(small_limit_proxy, listener, path) as sock:
        framing = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n"
        status, body, sent_when_answered = send_big(sock, head(path, framing, listener), total, chunked)
    growth = rss.growth()
    assert status == 413, body
    assert "larger than" in client_error(path, status, body)
    assert sent_when_answered < total / 2, "the 413 should come while the body is still arriving"
    assert growth < 30, f"mitmdump grew by {growth:.0f} MB for a body refused at {LIMIT} bytes"
    assert backend.received == []
    still_serving(small_limit_proxy, listener)


def test_an_sdk_that_sends_everything_first_still_reads_the_413(small_limit_proxy: Proxy, backend):
    """httpx (as in the OpenAI and Anthropic SDKs) reads nothing until its body is sent: the proxy drains it."""

    def body():
        for _ in range(40):
            yield b"x" * 65536

    r = httpx.post(
        small_limit_proxy.base_url + "/v1/chat/completions", content=body(), timeout=30, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_an_http2_body_over_the_limit_is_a_413(small_limit_proxy: Proxy, backend):
    """curl offers h2 first in ALPN inside the tunnel (httpx offers http/1.1 first, and mitmproxy follows
    the client's preference); the body has no length, it is counted as its DATA frames arrive."""
    cmd = [
        "curl",
        "-sS",
        "--http2",
        "--proxy",
        small_limit_proxy.proxy_url,
        "--cacert",
        small_limit_proxy.ca,
        "--max-time",
        "30",
        "-H",
        "content-type: application/json",
        "-H",
        "anthropic-version: 2023-06-01",
        "-X",
        "POST",
        "-T",
        "-",  # stdin, length unknown
        "-o",
        "-",
        "-w",
        "\n%{http_version} %{http_code}",
        "https://api.anthropic.com/v1/messages",
    ]
    mark = len(small_limit_proxy.lines)
    out = subprocess.run(cmd, input=b"x" * (3 * LIMIT), capture_output=True, timeout=40).stdout
    body, _, tail = out.rpartition(b"\n")
    assert tail == b"2 413", out[-300:]
    assert client_error("/v1/messages", 413, body)
    small_limit_proxy.wait_log("refused while it was still arriving", start=mark)
    assert backend.received == []


def test_a_body_under_the_limit_is_served(small_limit_proxy: Proxy, backend):
    padding = "x" * (LIMIT // 2)
    raw = json.dumps({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}], "user": padding}).encode()
    with connect(small_limit_proxy, "base_url") as sock:
        sock.sendall(head("/v1/chat/completions", "Transfer-Encoding: chunked\r\n") + chunks(raw, 65536) + b"0\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == 200, body


def test_no_traceback_in_the_log(proxy: Proxy, small_limit_proxy: Proxy):
    for p in (proxy, small_limit_proxy):
        assert "Traceback" not in p.log and "has crashed" not in p.log
        assert not re.search(r"NotImplementedError", p.log)
