"""Measure what cliproxy costs, side by side with bare mitmproxy (and ChatMock), interleaved and repeated.

    python scripts/bench.py                   # full run: 5 rounds (~6 minutes on 2 cores)
    python scripts/bench.py --peers           # also ChatMock (installed once into ~/.cache/cliproxy-bench)
    python scripts/bench.py --quick           # CI smoke run: every metric, tiny scale, 1 round; exit 1 only on errors
    python scripts/bench.py --variant pg='--config store=postgresql://...' --json --out bench.json
    python scripts/bench.py --render bench.json     # the markdown of a saved JSON report

Everything runs on 127.0.0.1, each system in its own process: the fake Codex backend
(`python -m tests.fakes.bench_backend`), `direct` (the client talks to the fake), `bare` (a `mitmdump`
reverse proxy with no addon), `cliproxy` (`mitmdump -s addons/cliproxy.py`), `no-ledger` (cliproxy with
the usage ledger off), any `--variant`, and with `--peers` ChatMock. The client is raw asyncio streams
(no HTTP library; wsproto for the WebSocket turns), one process, so it is not what sets the pace.

Each round runs every metric on every system in turn (the order rotates from round to round), so the
load of other processes falls on all alike; ratios (cliproxy ÷ bare, ÷ ChatMock, ÷ each variant) are
taken inside a round and reported as median [min–max] over the rounds, beside the absolute medians.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if not (REPO / "tests" / "fakes").is_dir():
    sys.exit(
        "scripts/bench.py runs from a cliproxy checkout (it drives the fake backend in tests/fakes): git clone, then python scripts/bench.py"
    )
sys.path.insert(0, str(REPO))  # the checkout's `tests` package: fakes and the proxy launcher

import wsproto  # noqa: E402
import wsproto.events  # noqa: E402
import wsproto.utilities  # noqa: E402
import yaml  # noqa: E402

from tests.fakes.accounts import mint_account  # noqa: E402
from tests.fakes.bench_backend import bench_events, encode  # noqa: E402
from tests.fakes.codex_backend import PATH  # noqa: E402
from tests.proxyproc import MITMDUMP, free_port, start_proxy  # noqa: E402

MODEL = "gpt-5.5"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cliproxy-bench"
CHATMOCK_VENV = CACHE / "chatmock-venv"
CHATMOCK_VERSION = "1.40"
CLK_TCK = os.sysconf("SC_CLK_TCK")
ROUTES = ("chat", "responses", "messages")
TRANSLATOR_TARGET = 300_000  # events/s per core, Chat and Messages


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# A raw asyncio HTTP/1.1 client: keep-alive, chunked and length-delimited bodies, nothing parsed while timed


@dataclass
class Answer:
    status: int
    ttfb: float  # seconds to the first byte of the body (the first event of a stream)
    total: float  # seconds to the last byte
    body: bytes  # as on the wire (still chunk-framed when `chunked`)
    chunked: bool


class Conn:
    """One keep-alive connection; `send` writes a prepared request and reads its whole answer."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, request: bytes) -> Answer:
        if self.writer is None:
            await self.open()
        reader, writer = self.reader, self.writer
        assert reader is not None and writer is not None
        start = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        headers: dict[bytes, bytes] = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        chunked = headers.get(b"transfer-encoding") == b"chunked"
        parts: list[bytes] = []
        ttfb = None
        if chunked:
            tail = b""
            while True:
                data = await reader.read(1 << 18)
                if not data:
                    raise ConnectionError("connection closed mid-body")
                if ttfb is None:
                    ttfb = time.perf_counter() - start
                parts.append(data)
                tail = (tail + data)[-7:]
                if tail.endswith(b"\r\n0\r\n\r\n") or (len(parts) == 1 and data == b"0\r\n\r\n"):
                    break  # the last chunk (payloads are SSE text: they never end in CRLF 0 CRLF CRLF)
        elif b"content-length" in headers:
            n = int(headers[b"content-length"])
            if n:
                parts.append(await reader.readexactly(n))
                ttfb = time.perf_counter() - start
        else:  # delimited by the close of the connection
            while data := await reader.read(1 << 18):
                ttfb = ttfb if ttfb is not None else time.perf_counter() - start
                parts.append(data)
            headers[b"connection"] = b"close"
        total = time.perf_counter() - start
        if headers.get(b"connection") == b"close":
            self.close()
        return Answer(status, ttfb if ttfb is not None else total, total, b"".join(parts), chunked)


class WSConn:
    """One WebSocket for Responses turns (`response.create` frames); messages are kept raw while timed."""

    def __init__(self, port: int, path: str, headers: dict[str, str]) -> None:
        self.port, self.path, self.headers = port, path, headers
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)
        extra = [(k.encode(), v.encode()) for k, v in self.headers.items()]
        self.writer.write(self.ws.send(wsproto.events.Request(host=f"127.0.0.1:{self.port}", target=self.path, extra_headers=extra)))
        while True:
            data = await self.reader.read(1 << 16)
            if not data:
                raise ConnectionError("closed during the WebSocket handshake")
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, wsproto.events.AcceptConnection):
                    return
                if isinstance(event, wsproto.events.RejectConnection):
                    raise ConnectionError(f"WebSocket handshake refused: {event.status_code}")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def turn(self, frame: bytes) -> tuple[float, list[str]]:
        """(seconds to the turn's end, its messages) of one `response.create`."""
        if self.writer is None:
            await self.open()
        reader, writer = self.reader, self.writer
        assert reader is not None and writer is not None
        start = time.perf_counter()
        writer.write(self.ws.send(wsproto.events.TextMessage(frame.decode())))
        messages: list[str] = []
        parts: list[str] = []
        while True:
            data = await reader.read(1 << 18)
            if not data:
                raise ConnectionError("the socket closed mid-turn")
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, wsproto.events.CloseConnection):
                    raise ConnectionError(f"the socket was closed: {event.code} {event.reason}")
                if not isinstance(event, wsproto.events.TextMessage):
                    continue
                parts.append(event.data)
                if event.message_finished:
                    messages.append("".join(parts))
                    parts = []
                    if '"response.completed"' in messages[-1] or '"response.failed"' in messages[-1] or '"error"' in messages[-1][:40]:
                        return time.perf_counter() - start, messages


def ws_text(messages: list[str]) -> tuple[str, bool]:
    """(the text deltas of a WebSocket turn, whether it completed)."""
    text, done = [], False
    for raw in messages:
        ev = json.loads(raw)
        if ev.get("type") == "response.output_text.delta":
            text.append(ev["delta"])
        done = done or ev.get("type") == "response.completed"
    return "".join(text), done


def dechunk(data: bytes) -> bytes:
    out: list[bytes] = []
    i = 0
    while True:
        j = data.index(b"\r\n", i)
        size = int(data[i:j].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[j + 2 : j + 2 + size])
        i = j + 2 + size + 2


def streamed_text(body: bytes, wire: str) -> tuple[str, bool]:
    """(the text of the stream's deltas, whether it ended as a finished stream) in the client format `wire`."""
    text: list[str] = []
    done = False
    for frame in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        for line in frame.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                continue
            ev = json.loads(data)
            kind = ev.get("type")
            if wire in ("codex", "responses"):
                if kind == "response.output_text.delta":
                    text.append(ev["delta"])
                done = done or kind == "response.completed"
            elif wire == "messages":
                if kind == "content_block_delta" and ev["delta"].get("type") == "text_delta":
                    text.append(ev["delta"]["text"])
                done = done or kind == "message_stop"
            else:  # chat
                for choice in ev.get("choices") or []:
                    text.append((choice.get("delta") or {}).get("content") or "")
    return "".join(text), done


def check(answer: Answer, wire: str, events: int) -> str | None:
    """What is wrong with the answer (None: a 200 carrying exactly the `events` deltas, finished)."""
    try:
        if answer.status != 200:
            return f"HTTP {answer.status}: {answer.body[:200]!r}"
        body = dechunk(answer.body) if answer.chunked else answer.body
        text, done = streamed_text(body, wire)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return f"unreadable stream ({e!r})"
    if text != "x" * events:
        return f"wrong text: {len(text)} characters, {events} expected"
    if not done:
        return "the stream did not finish"
    return None


# ---------------------------------------------------------------------------------------------
# The systems


@dataclass
class System:
    name: str
    kind: str  # direct | bare | cliproxy | chatmock
    port: int
    pid: int | None  # the process whose CPU and memory are measured
    proc: subprocess.Popen | None = None
    routes: tuple[str, ...] = (*ROUTES, "websocket")
    lines: list[str] = field(default_factory=list)
    errors: int = 0
    problems: list[str] = field(default_factory=list)
    crashed: bool = False
    _requests: dict[tuple[str, int, str], bytes] = field(default_factory=dict)

    def serves(self, route: str) -> bool:
        return route in self.routes and not self.crashed

    def wire(self, route: str) -> str:
        return "codex" if self.kind in ("direct", "bare") else route

    def request(self, route: str, events: int, chunks: str = "frames") -> bytes:
        """The bytes of a streamed request for `events` deltas on `route` (built once: the client stays cheap)."""
        if (key := (route, events, chunks)) not in self._requests:
            self._requests[key] = self._build(route, events, chunks)
        return self._requests[key]

    def _build(self, route: str, events: int, chunks: str) -> bytes:
        prompt = f"events:{events} chunks:{chunks}"
        headers = {"content-type": "application/json"}
        if self.kind in ("direct", "bare"):  # the Codex backend's own path and body
            path = PATH
            body: dict[str, Any] = {
                "model": MODEL,
                "instructions": "",
                "store": False,
                "stream": True,
                "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]}],
            }
            headers |= {"authorization": "Bearer bench", "chatgpt-account-id": "bench"}
        elif route == "chat":
            path, body = "/v1/chat/completions", {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": prompt}]}
        elif route == "responses":
            path, body = "/v1/responses", {"model": MODEL, "stream": True, "input": prompt}
        else:
            path = "/v1/messages"
            # cliproxy stops a Messages stream at about max_tokens tokens, so the budget must outlast the longest stream
            body = {"model": MODEL, "stream": True, "max_tokens": 32000, "messages": [{"role": "user", "content": prompt}]}
            headers["anthropic-version"] = "2023-06-01"
        data = json.dumps(body).encode()
        head = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\ncontent-length: {len(data)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return head.encode() + b"\r\n" + data

    def ws_target(self) -> tuple[str, dict[str, str]]:
        """(path, headers) of a Responses WebSocket: the backend's own for `direct` and `bare`, else the client API's."""
        if self.kind in ("direct", "bare"):
            return PATH, {"authorization": "Bearer bench", "chatgpt-account-id": "bench", "openai-beta": "responses_websockets=2026-02-06"}
        return "/v1/responses", {}

    def fail(self, problem: str, n: int = 1) -> None:
        self.errors += n
        if len(self.problems) < 5 and problem not in self.problems:
            self.problems.append(problem)

    def alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None and not self.crashed:
            self.crashed = True
            self.fail(f"the process exited ({self.proc.returncode}): " + " | ".join(self.lines[-5:]))
        return not self.crashed

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def drain(proc: subprocess.Popen, lines: list[str]) -> None:
    """Keep reading a child's output so its pipe never fills (the last lines explain a crash)."""
    stdout = proc.stdout
    assert stdout is not None, "stdout=PIPE"

    def run() -> None:
        for line in stdout:
            lines.append(line.rstrip("\n"))
            del lines[:-50]

    threading.Thread(target=run, daemon=True).start()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("https_proxy", "http_proxy", "all_proxy", "no_proxy")}
    return {**env, **extra}


def wait_port(port: int, proc: subprocess.Popen, lines: list[str], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{what} did not start:\n" + "\n".join(lines[-20:]))


def start_backend() -> System:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.bench_backend"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(PYTHONPATH=str(REPO)),
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if not first.startswith("listening "):
        proc.kill()
        raise RuntimeError(f"the fake backend did not start: {first}{proc.stdout.read()}")
    system = System("direct", "direct", int(first.split()[1]), proc.pid, proc)
    drain(proc, system.lines)
    return system


def start_bare(tmp: Path, backend_port: int) -> System:
    port = free_port()
    proc = subprocess.Popen(
        [
            str(MITMDUMP),
            "--mode",
            f"reverse:http://127.0.0.1:{backend_port}@127.0.0.1:{port}",
            "--set",
            f"confdir={tmp / 'bare'}",
            "--set",
            "flow_detail=0",
            "--set",
            "connection_strategy=lazy",
            "--set",
            "stream_large_bodies=1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(),
    )
    system = System("bare", "bare", port, proc.pid, proc)
    drain(proc, system.lines)
    wait_port(port, proc, system.lines, "bare mitmproxy")
    return system


def parse_variant(spec: str) -> tuple[str, dict[str, Any], list[str]]:
    """`NAME=ARGS`: ARGS are mitmdump arguments (`--set opt=val ...`), and `--config key=value` pairs that
    go into the variant's cliproxy.yaml (the value read as YAML)."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or name in ("direct", "bare", "cliproxy", "chatmock"):
        raise argparse.ArgumentTypeError(f"--variant wants NAME='ARGS' with a new NAME, not {spec!r}")
    config: dict[str, Any] = {}
    extra: list[str] = []
    words = shlex.split(rest)
    i = 0
    while i < len(words):
        if words[i] == "--config" and i + 1 < len(words) and "=" in words[i + 1]:
            key, _, value = words[i + 1].partition("=")
            config[key] = yaml.safe_load(value)
            i += 2
        else:
            extra.append(words[i])
            i += 1
    return name, config, extra


def start_cliproxy(tmp: Path, name: str, backend_port: int, config: dict[str, Any], extra: list[str]) -> System:
    auth = tmp / name / "auth"
    mint_account(auth)
    cfg = {"auth-dir": str(auth), "codex-base-url": f"http://127.0.0.1:{backend_port}/backend-api/codex", **config}
    proxy = start_proxy(tmp / name / "run", cfg, *extra, env=clean_env())
    system = System(name, "cliproxy", proxy.base_port, proxy.proc.pid, proxy.proc)
    system.lines = proxy.lines  # start_proxy's reader keeps filling it
    return system


# ChatMock has no base-URL option: point its module constants at the fake before its server starts.
CHATMOCK_WRAPPER = """
import sys
base, port = sys.argv[1], sys.argv[2]
import chatmock.config as config, chatmock.model_catalog as catalog, chatmock.upstream as upstream
for module, name, value in ((config, "CHATGPT_CODEX_BASE_URL", base), (config, "CHATGPT_RESPONSES_URL", base + "/responses"),
                            (upstream, "CHATGPT_RESPONSES_URL", base + "/responses"), (catalog, "CHATGPT_CODEX_BASE_URL", base)):
    if not hasattr(module, name):
        sys.exit(f"this ChatMock has no {module.__name__}.{name}: the bench's wrapper knows ChatMock 1.40")
    setattr(module, name, value)
from chatmock.cli import main
sys.argv = ["chatmock", "serve", "--host", "127.0.0.1", "--port", port, "--no-model-sync"]
main()
"""


def chatmock_python(install: bool, version: str) -> Path | None:
    """The side venv's interpreter with ChatMock (installed into the cache dir once when `install`)."""
    python = CHATMOCK_VENV / "bin" / "python"
    marker = CHATMOCK_VENV / f".chatmock-{version}"
    if python.exists() and marker.exists():
        return python
    if not install:
        return None
    log(f"installing ChatMock {version} into {CHATMOCK_VENV}")
    subprocess.run([sys.executable, "-m", "venv", str(CHATMOCK_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"chatmock=={version}"], check=True)
    marker.touch()
    return python


def start_chatmock(tmp: Path, python: Path, backend_port: int) -> System:
    home = tmp / "chatmock"
    home.mkdir(parents=True)
    # a fake sign-in: an access token and account id, no refresh token (so ChatMock never tries to refresh)
    auth = {"tokens": {"access_token": "bench-access-token", "account_id": "bench-account", "id_token": ""}, "last_refresh": None}
    (home / "auth.json").write_text(json.dumps(auth))
    port = free_port()
    proc = subprocess.Popen(
        [str(python), "-c", CHATMOCK_WRAPPER, f"http://127.0.0.1:{backend_port}/backend-api/codex", str(port)],
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(CHATGPT_LOCAL_HOME=str(home), HOME=str(home)),
    )
    system = System("chatmock", "chatmock", port, proc.pid, proc, routes=("chat", "responses"))
    drain(proc, system.lines)
    wait_port(port, proc, system.lines, "ChatMock")
    return system


# ---------------------------------------------------------------------------------------------
# Process figures from /proc


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15 of stat)


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# ---------------------------------------------------------------------------------------------
# The metrics: each measures one system once and returns {metric key: value}


@dataclass
class Scale:
    rounds: int
    ttfb_requests: int
    stream_events: int
    stream_repeats: int
    levels: tuple[int, ...]
    per_level: Callable[[int], int]
    rss_requests: int
    translator_events: int


FULL = Scale(5, 200, 5000, 3, (1, 10, 50, 200), lambda c: max(300, c * 4), 10_000, 5000)
QUICK = Scale(1, 5, 300, 1, (1, 10, 50, 200), lambda c: max(10, c), 300, 300)


async def one(system: System, conn: Conn, route: str, events: int, chunks: str = "frames") -> Answer | None:
    """One request, checked; None (and an error counted) when it failed."""
    try:
        async with asyncio.timeout(120):  # a hung system is an error, not a hung benchmark
            answer = await conn.send(system.request(route, events, chunks))
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
        conn.close()
        system.fail(f"{route}: {e!r}")
        return None
    if (problem := check(answer, system.wire(route), events)) is not None:
        system.fail(f"{route}: {problem}")
        return None
    return answer


def ws_frame(events: int) -> bytes:
    """A `response.create` as the Codex CLI sends it, asking the fake for `events` deltas."""
    message = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"events:{events}"}]}
    return json.dumps(
        {"type": "response.create", "model": MODEL, "instructions": "", "store": False, "stream": True, "input": [message]}
    ).encode()


async def ws_one(system: System, conn: WSConn, events: int) -> float | None:
    """Seconds of one WebSocket turn, checked; None (and an error counted) when it failed."""
    try:
        async with asyncio.timeout(120):
            total, messages = await conn.turn(ws_frame(events))
        text, done = ws_text(messages)
    except (OSError, ValueError, KeyError, TypeError, wsproto.utilities.ProtocolError) as e:
        conn.close()
        system.fail(f"websocket: {e!r}")
        return None
    if text != "x" * events or not done:
        system.fail(f"websocket: {len(text)} characters, {events} expected, {'finished' if done else 'unfinished'}")
        return None
    return total


async def ws_turns(system: System, scale: Scale) -> dict[str, float]:
    """A long Responses turn over one WebSocket (the Codex CLI's transport), after a short warm-up turn."""
    if not system.serves("websocket"):
        return {}
    conn = WSConn(system.port, *system.ws_target())
    await ws_one(system, conn, 20)
    times = [t * 1000 for _ in range(scale.stream_repeats) if (t := await ws_one(system, conn, scale.stream_events)) is not None]
    conn.close()
    return {"ws_responses": statistics.median(times)} if times else {}


async def ttfb(system: System, scale: Scale) -> dict[str, float]:
    conn = Conn(system.port)
    await one(system, conn, "chat", 20)  # warm-up: connection, account, caches
    times = [a.ttfb * 1000 for _ in range(scale.ttfb_requests) if (a := await one(system, conn, "chat", 20))]
    conn.close()
    return {"ttfb": statistics.median(times)} if times else {}


def stream(route: str, chunks: str = "frames") -> Callable[[System, Scale], Awaitable[dict[str, float]]]:
    key = f"tiny_{route}" if chunks == "tiny" else f"stream_{route}"

    async def run(system: System, scale: Scale) -> dict[str, float]:
        if not system.serves(route):
            return {}
        conn = Conn(system.port)
        await one(system, conn, route, 20)
        times = [a.total * 1000 for _ in range(scale.stream_repeats) if (a := await one(system, conn, route, scale.stream_events, chunks))]
        conn.close()
        return {key: statistics.median(times)} if times else {}

    return run


async def throughput(system: System, scale: Scale) -> dict[str, float]:
    """Requests/s at each concurrency (short Chat streams on keep-alive connections), the process's CPU per
    1,000 of those requests, and its peak RSS while 200 (the largest level) stream at once."""
    out: dict[str, float] = {}
    cpu = 0.0
    done = 0
    for c in scale.levels:
        n = scale.per_level(c)
        conns = [Conn(system.port) for _ in range(c)]
        await asyncio.gather(*(one(system, k, "chat", 20) for k in conns))  # connections open and warm
        left = n
        peak = 0.0

        async def worker(conn: Conn) -> int:
            nonlocal left
            ok = 0
            while left > 0:
                left -= 1
                ok += await one(system, conn, "chat", 20) is not None
            return ok

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, rss_mb(system.pid))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample()) if c == max(scale.levels) else None
        cpu0 = cpu_seconds(system.pid)
        start = time.perf_counter()
        ok = sum(await asyncio.gather(*(worker(k) for k in conns)))
        elapsed = time.perf_counter() - start
        cpu += cpu_seconds(system.pid) - cpu0
        done += n
        if sampler is not None:
            sampler.cancel()
            out["peak_rss"] = max(peak, rss_mb(system.pid))
        for k in conns:
            k.close()
        if ok:
            out[f"rps{c}"] = ok / elapsed
    if done and system.pid is not None:
        out["cpu"] = cpu / done * 1000 * 1000  # ms of CPU per 1,000 requests
    return out


@dataclass
class Metric:
    key: str
    label: str
    unit: str
    lower_is_better: bool = True


def metrics_for(scale: Scale) -> list[Metric]:
    n = f"{scale.stream_events:,}"
    out = [
        Metric("ttfb", "time to first byte p50, Chat", "ms"),
        Metric("stream_chat", f"{n}-event stream, Chat, one frame per chunk", "ms"),
        Metric("stream_responses", f"{n}-event stream, Responses, one frame per chunk", "ms"),
        Metric("stream_messages", f"{n}-event stream, Messages, one frame per chunk", "ms"),
        Metric("tiny_chat", f"{n}-event stream, Chat, 1–40-byte chunks", "ms"),
        Metric("ws_responses", f"{n}-event turn, Responses over a WebSocket", "ms"),
    ]
    out += [Metric(f"rps{c}", f"requests/s at {c} stream{'s' if c > 1 else ''}, Chat", "req/s", False) for c in scale.levels]
    out += [
        Metric("cpu", "CPU per 1,000 requests (process user+sys)", "ms"),
        Metric("peak_rss", f"peak RSS at {max(scale.levels)} streams", "MB"),
    ]
    return out


RUNNERS: dict[str, Callable[[System, Scale], Awaitable[dict[str, float]]]] = {
    "ttfb": ttfb,
    "stream_chat": stream("chat"),
    "stream_responses": stream("responses"),
    "stream_messages": stream("messages"),
    "tiny_chat": stream("chat", "tiny"),
    "ws_responses": ws_turns,
    "throughput": throughput,  # requests/s at each level, CPU per request, peak RSS
}
PARTS = (*RUNNERS, "translators", "memory")


def translator_speed(events: int) -> dict[str, float]:
    """Events per CPU-second of each pure stream translator, fed the stream in 1,400-byte (TCP segment) chunks."""
    from cliproxy.addons.translate import registry

    frames = encode(bench_events(events))
    data = b"".join(frames)
    out = {}
    for route in ROUTES:
        opts = {"include_usage": True} if route == "chat" else {}
        best = float("inf")
        for _ in range(3):
            tr = registry.stream_translator(route, MODEL, opts)
            start = time.process_time()
            for i in range(0, len(data), 1400):
                tr(data[i : i + 1400])
            tr(b"")
            best = min(best, time.process_time() - start)
        out[route] = len(frames) / best if best > 0 else float("nan")
    return out


async def rss_growth(system: System, requests: int) -> dict[str, float]:
    """RSS before and after `requests` short Chat streams at 10 at once (after a warm-up of 500)."""
    conns = [Conn(system.port) for _ in range(10)]

    async def batch(n: int) -> None:
        left = n

        async def worker(conn: Conn) -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await one(system, conn, "chat", 20)

        await asyncio.gather(*(worker(k) for k in conns))

    await batch(min(500, requests))
    before = rss_mb(system.pid)
    await batch(requests)
    after = rss_mb(system.pid)
    for k in conns:
        k.close()
    return {"before": before, "after": after, "growth": after - before, "requests": requests, "warm-up": min(500, requests)}


# ---------------------------------------------------------------------------------------------
# Figures


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt(value: float | None, unit: str = "") -> str:
    if value is None or value != value:
        return "–"
    if unit == "x":
        return f"{value:.2f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def fmt_spread(s: dict[str, float] | None) -> str:
    if not s:
        return "–"
    if s["n"] == 1:
        return f"{s['median']:.2f}"
    return f"{s['median']:.2f} [{s['min']:.2f}–{s['max']:.2f}]"


def ratio_pairs(names: list[str], own: list[str]) -> list[tuple[str, str]]:
    """cliproxy ÷ bare, ÷ chatmock, ÷ each variant; and each of the `own` variants (given with --variant) ÷ bare."""
    variants = [n for n in names if n not in ("direct", "bare", "cliproxy", "chatmock")]
    pairs = [("cliproxy", "bare")]
    if "chatmock" in names:
        pairs.append(("cliproxy", "chatmock"))
    pairs += [("cliproxy", v) for v in variants]
    pairs += [(v, "bare") for v in own]
    return pairs


def summarize(values: dict[str, dict[str, list[float | None]]], names: list[str], own: list[str], rounds: int) -> dict[str, Any]:
    """Absolute medians per system and, per metric, the ratios taken inside each round."""
    absolute = {
        k: {s: spread([v for v in vs if v is not None]) for s, vs in per.items() if any(v is not None for v in vs)}
        for k, per in values.items()
    }
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    for key, per in values.items():
        for a, b in ratio_pairs(names, own):
            inside = [
                x / y
                for r in range(rounds)
                if (x := (per.get(a) or [None] * rounds)[r]) is not None and (y := (per.get(b) or [None] * rounds)[r]) is not None and y > 0
            ]
            if inside:
                ratios.setdefault(key, {})[f"{a}/{b}"] = spread(inside)
    return {"absolute": absolute, "ratios": ratios}


def targets(
    summary: dict[str, Any], translators: dict[str, dict[str, float]], memory: dict[str, Any], scale: Scale
) -> list[dict[str, Any]]:
    """The issue's targets, each with its measured ratio or figure and whether it was met (median)."""
    ratios = summary["ratios"]
    rows: list[dict[str, Any]] = []

    def ratio(key: str, pair: str, op: str, limit: float, what: str) -> None:
        s = ratios.get(key, {}).get(pair)
        if s is None:
            return
        met = (
            s["median"] <= limit
            if op == "<="
            else s["median"] >= limit
            if op == ">="
            else s["median"] < limit
            if op == "<"
            else s["median"] > limit
        )
        rows.append({"target": what, "measured": fmt_spread(s), "met": met})

    for route in ROUTES:
        name = {"chat": "Chat", "responses": "Responses", "messages": "Messages"}[route]
        ratio(f"stream_{route}", "cliproxy/bare", "<=", 1.0, f"{name} long stream ≤ 1.0× bare")
        ratio(f"stream_{route}", "cliproxy/chatmock", "<", 1.0, f"{name} long stream faster than ChatMock")
    ratio("tiny_chat", "cliproxy/chatmock", "<", 1.0, "1–40-byte chunks faster than ChatMock")
    ratio("cpu", "cliproxy/bare", "<=", 1.1, "CPU per request ≤ 1.1× bare")
    for c in scale.levels:
        ratio(f"rps{c}", "cliproxy/bare", ">=", 0.9, f"requests/s at {c} ≥ 0.9× bare")
        ratio(f"rps{c}", "cliproxy/chatmock", ">", 1.0, f"requests/s at {c} ahead of ChatMock")
    ratio("ttfb", "cliproxy/bare", "<=", 1.0, "time to first byte ≤ 1.0× bare")
    ratio("ttfb", "cliproxy/no-ledger", "<=", 1.05, "the ledger adds no measurable TTFB (cliproxy ÷ no-ledger ≤ 1.05)")
    for route in ("chat", "messages"):
        s = translators.get(route)
        if s:
            rows.append(
                {
                    "target": f"{route} translator ≥ 300,000 events/s per core",
                    "measured": f"{s['median']:,.0f}",
                    "met": s["median"] >= TRANSLATOR_TARGET,
                }
            )
    if memory:
        rows.append(
            {
                "target": f"RSS flat (±10 MB) over {memory['requests']:,} requests",
                "measured": f"{memory['growth']:+.1f} MB",
                "met": abs(memory["growth"]) <= 10,
            }
        )
    return rows


def environment() -> dict[str, str]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?"
    )
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    import mitmproxy.version

    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit or "?",
        "cpu": f"{os.cpu_count()} × {cpu}",
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "python": platform.python_version(),
        "mitmproxy": mitmproxy.version.VERSION,
        "load average": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def markdown(report: dict[str, Any]) -> str:
    names: list[str] = report["systems"]
    summary = report["summary"]
    pairs = [f"{a}/{b}" for a, b in ratio_pairs(names, report["own variants"])]
    shown = [p for p in pairs if any(p in per for per in summary["ratios"].values())]
    env = report["environment"]
    lines = [
        f"### cliproxy benchmark, {env['date']} (commit {env['commit']}), {report['rounds']} round{'s' if report['rounds'] > 1 else ''}"
        + (" (--quick)" if report["quick"] else ""),
        "",
        "Absolute figures are medians over the rounds; ratios are taken inside each round, median [min–max].",
        "Times: lower is better; requests/s: higher is better.",
        "",
        "| metric | " + " | ".join(names) + " | " + " | ".join(p.replace("/", " ÷ ") for p in shown) + " |",
        "|---|" + "---:|" * (len(names) + len(shown)),
    ]
    for m in report["metrics"]:
        absolute = summary["absolute"].get(m["key"], {})
        cells = [fmt(absolute[s]["median"]) if s in absolute else "–" for s in names]
        cells += [fmt_spread(summary["ratios"].get(m["key"], {}).get(p)) for p in shown]
        lines.append(f"| {m['label']} ({m['unit']}) | " + " | ".join(cells) + " |")
    if tr := report["translators"]:
        lines += ["", "| pure translator, events/s per core | median [min–max] |", "|---|---:|"]
        lines += [f"| {route} | {s['median']:,.0f} [{s['min']:,.0f}–{s['max']:,.0f}] |" for route, s in tr.items()]
    mem = report["memory"]
    if mem:
        lines += [
            "",
            f"cliproxy RSS over {mem['requests']:,} requests (10 at once, after {mem['warm-up']} to warm up): "
            f"{mem['before']:.1f} → {mem['after']:.1f} MB ({mem['growth']:+.1f} MB).",
        ]
    lines += ["", "| target | measured | met |", "|---|---:|:---:|"]
    lines += [f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |" for t in report["targets"]]
    errors = report["errors"]
    lines += ["", "Errors: " + (", ".join(f"{s} {n}" for s, n in errors.items()) if any(errors.values()) else "none") + "."]
    for s, problems in report["problems"].items():
        lines += [f"- {s}: {p}" for p in problems]
    lines += ["", "Environment: " + "; ".join(f"{k} {v}" for k, v in env.items()) + "."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The run


async def run(args: argparse.Namespace) -> int:
    scale = QUICK if args.quick else FULL
    if args.rounds:
        scale = dataclasses.replace(scale, rounds=args.rounds)
    python = chatmock_python(True, args.chatmock_version) if args.peers else None
    variants = [parse_variant("no-ledger=--config usage-retention-days=0"), *args.variant]
    env = environment()
    systems: list[System] = []
    with tempfile.TemporaryDirectory(prefix="cliproxy-bench-") as tmpdir:
        tmp = Path(tmpdir)
        backend = start_backend()
        systems.append(backend)
        try:
            with ThreadPoolExecutor(4) as pool:  # the proxies start side by side
                futures = [pool.submit(start_bare, tmp, backend.port), pool.submit(start_cliproxy, tmp, "cliproxy", backend.port, {}, [])]
                futures += [pool.submit(start_cliproxy, tmp, name, backend.port, cfg, extra) for name, cfg, extra in variants]
                if python is not None:
                    futures.append(pool.submit(start_chatmock, tmp, python, backend.port))
                for f in futures:
                    systems.append(f.result())
            names = [s.name for s in systems]
            log("systems: " + ", ".join(f"{s.name} :{s.port}" for s in systems))
            values: dict[str, dict[str, list[float | None]]] = {}
            translators: dict[str, list[float]] = {r: [] for r in ROUTES}
            for r in range(scale.rounds):
                log(f"round {r + 1}/{scale.rounds}")
                for part, runner in RUNNERS.items():
                    if part not in args.only:
                        continue
                    log(f"round {r + 1}: {part}")
                    order = systems[r % len(systems) :] + systems[: r % len(systems)]
                    for system in order:
                        if not system.alive():
                            continue
                        got = await runner(system, scale)
                        system.alive()
                        for key, value in got.items():
                            values.setdefault(key, {}).setdefault(system.name, [None] * scale.rounds)[r] = value
                if "translators" in args.only:
                    for route, speed in translator_speed(scale.translator_events).items():
                        translators[route].append(speed)
            cli = next(s for s in systems if s.name == "cliproxy")
            memory: dict[str, Any] = {}
            if "memory" in args.only and cli.alive():
                log(f"cliproxy RSS over {scale.rss_requests:,} requests")
                memory = await rss_growth(cli, scale.rss_requests)
                cli.alive()
        finally:
            for s in systems:
                s.stop()
    own = [name for name, _, _ in args.variant]
    summary = summarize(values, names, own, scale.rounds)
    tr = {route: spread(v) for route, v in translators.items() if v}
    metric_list = [m for m in metrics_for(scale) if m.key in values]
    report = {
        "quick": args.quick,
        "rounds": scale.rounds,
        "systems": names,
        "own variants": own,
        "environment": env | {"load average after": " ".join(f"{x:.1f}" for x in os.getloadavg())},
        "metrics": [vars(m) for m in metric_list],
        "values": values,
        "summary": summary,
        "translators": tr,
        "memory": memory,
        "targets": targets(summary, tr, memory, scale),
        "errors": {s.name: s.errors for s in systems},
        "problems": {s.name: s.problems for s in systems if s.problems},
    }
    text = json.dumps(report, indent=1) if args.json else markdown(report)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 1 if any(s.errors for s in systems) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every metric on a tiny scale, 1 round: fails on errors, never on timings")
    parser.add_argument("--peers", action="store_true", help=f"also ChatMock (installed once into {CHATMOCK_VENV})")
    parser.add_argument("--chatmock-version", default=CHATMOCK_VERSION)
    parser.add_argument("--rounds", type=int, default=0, help="rounds (default 5, --quick 1)")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        type=parse_variant,
        metavar="NAME='ARGS'",
        help="another cliproxy: mitmdump arguments (--set opt=val) and --config key=value for its cliproxy.yaml",
    )
    parser.add_argument(
        "--only",
        type=lambda text: set(text.split(",")),
        default=set(PARTS),
        metavar="PART,...",
        help="run only these parts: " + ",".join(PARTS),
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of markdown")
    parser.add_argument("--out", help="also write the report to this file")
    parser.add_argument("--render", metavar="JSON", help="print the markdown of a report saved with --json, and run nothing")
    args = parser.parse_args(argv)
    if args.render:
        print(markdown(json.loads(Path(args.render).read_text())), end="")
        return 0
    if unknown := args.only - set(PARTS):
        parser.error(f"--only: no part {', '.join(sorted(unknown))} (parts: {', '.join(PARTS)})")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
