"""Measure what cliproxy costs: direct-to-backend vs bare mitmproxy pass-through vs cliproxy, in one run.

    python scripts/bench.py            # full run (a few minutes on 2 cores)
    python scripts/bench.py --quick    # CI smoke run: < 1 minute, fails on errors (never on timings)

Everything runs on 127.0.0.1: the fake Codex backend from tests/fakes, a bare `mitmdump` reverse
proxy, and `mitmdump -s addons/cliproxy.py`. Reported: time to first byte (p50/p99), full-stream
time of a 5,000-event stream, requests/s and p99 at several concurrencies, errors, the proxies'
peak RSS and RSS growth, the pure translators' events/second, and cliproxy's Responses API over
HTTP against over a WebSocket (time to first event, events/second), turns interleaved, with sockets
through the bare mitmproxy and straight to the fake as baselines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
if not (REPO / "tests" / "fakes").is_dir():
    sys.exit(
        "scripts/bench.py runs from a cliproxy checkout (it drives the fake backend in tests/fakes): git clone, then python scripts/bench.py"
    )
sys.path.insert(0, str(REPO))  # the checkout's `tests` package: fakes and the proxy launcher

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.fakes.accounts import mint_account  # noqa: E402
from tests.fakes.codex_backend import PATH, CodexBackend, Received, sse, turn  # noqa: E402
from tests.proxyproc import MITMDUMP, Proxy, free_port, start_proxy  # noqa: E402
from tests.wsclient import TERMINAL, Closed, WSClient, create  # noqa: E402

CODEX_BODY = {
    "model": "gpt-5.5",
    "instructions": "",
    "store": False,
    "stream": True,
    "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "bench"}]}],
}
CHAT_BODY = {"model": "gpt-5.5", "stream": True, "messages": [{"role": "user", "content": "bench"}]}


def events_for(n_deltas: int) -> list:
    text = "x" * n_deltas
    return turn().text(text, deltas=list(text)).events()


def bench_responder(n_deltas: int):
    """Answer `n_deltas` text deltas, or as many as the prompt asks for with `events:N`."""
    events = events_for(n_deltas)

    def respond(req: Received):
        body = req.body.decode()
        n = int(body.split("events:", 1)[1].split('"', 1)[0]) if "events:" in body else 0
        return sse(events_for(n) if n else events, chunking="frames")

    return respond


def with_prompt(body: dict, text: str) -> dict:
    body = json.loads(json.dumps(body))
    if "messages" in body:
        body["messages"][0]["content"] = text
    else:
        body["input"][0]["content"][0]["text"] = text
    return body


@dataclass
class Target:
    name: str
    url: str  # full URL to POST
    body: dict
    pid: int | None = None
    rss_samples: list[int] = field(default_factory=list)


def rss_kb(pid: int | None, key: str = "VmRSS") -> int:
    if pid is None:
        return 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


async def one_stream(client: httpx.AsyncClient, t: Target, events: int = 0) -> tuple[float, float, bool]:
    """(time to first byte, total time, ok) of one streamed request."""
    body = with_prompt(t.body, f"events:{events}") if events else t.body
    start = time.perf_counter()
    ttfb = None
    ok = False
    try:
        async with client.stream("POST", t.url, json=body) as r:
            async for chunk in r.aiter_raw():
                if ttfb is None:
                    ttfb = time.perf_counter() - start
                if b"[DONE]" in chunk or b"response.completed" in chunk:
                    ok = True
            ok = ok and r.status_code == 200
    except httpx.HTTPError:
        ok = False
    total = time.perf_counter() - start
    return (ttfb if ttfb is not None else total), total, ok


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def sequential(t: Target, n: int) -> dict:
    async with httpx.AsyncClient(timeout=60) as c:
        await one_stream(c, t)  # warm-up: connections, caches
        results = [await one_stream(c, t) for _ in range(n)]
    ttfb = [r[0] * 1000 for r in results]
    return {"ttfb_p50": pct(ttfb, 0.5), "ttfb_p99": pct(ttfb, 0.99), "errors": sum(not r[2] for r in results)}


async def long_stream(t: Target, events: int) -> dict:
    async with httpx.AsyncClient(timeout=120) as c:
        _, total, ok = await one_stream(c, t, events)
    return {"stream_ms": total * 1000, "errors": int(not ok)}


async def concurrent(t: Target, concurrency: int, requests: int) -> dict:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as c:
        sem = asyncio.Semaphore(concurrency)

        async def run():
            async with sem:
                return await one_stream(c, t)

        start = time.perf_counter()
        results = await asyncio.gather(*(run() for _ in range(requests)))
        elapsed = time.perf_counter() - start
    t.rss_samples.append(rss_kb(t.pid))
    totals = [r[1] * 1000 for r in results]
    return {"rps": requests / elapsed, "p99_ms": pct(totals, 0.99), "errors": sum(not r[2] for r in results)}


async def http_turn(client: httpx.AsyncClient, url: str, events: int) -> tuple[float, float, int, bool]:
    """(time to first event, total time, events, ok) of one streamed `POST /v1/responses`."""
    body = {"model": "gpt-5.5", "stream": True, "input": f"events:{events}" if events else "bench"}
    start = time.perf_counter()
    first, n, ok = None, 0, False
    try:
        async with client.stream("POST", url, json=body) as r:
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    n += 1
                    first = first if first is not None else time.perf_counter() - start
                    ok = ok or (r.status_code == 200 and '"response.completed"' in line)
    except httpx.HTTPError:
        ok = False
    total = time.perf_counter() - start
    return (first if first is not None else total), total, n, ok


def ws_turn(ws: WSClient, backend: CodexBackend, events: int) -> tuple[float, float, int, bool]:
    """(time to first event, total time, events, ok) of one `response.create` on an open socket.

    The fake answers socket turns from `ws_replies`, not from the HTTP responder, so the same
    events are queued for it here (outside the timed part)."""
    backend.ws_replies.append(events_for(events or 20))
    start = time.perf_counter()
    ws.send_json(create("bench"))
    first, n = None, 0
    while True:
        ev = ws.recv()
        if isinstance(ev, Closed):
            total = time.perf_counter() - start
            return (first if first is not None else total), total, n, False
        n += 1
        first = first if first is not None else time.perf_counter() - start
        if ev.get("type") in TERMINAL:
            return first, time.perf_counter() - start, n, ev["type"] == "response.completed"


async def ws_vs_http(cli: Proxy, bare_port: int, backend: CodexBackend, short: int, long: int, events: int) -> dict[str, dict]:
    """cliproxy's Responses API over HTTP (keep-alive) and over one WebSocket, turn for turn, with
    sockets through the bare mitmproxy and straight to the fake backend as baselines of the relay.

    All alternate, so load from other processes falls on each alike: `short` default turns each
    for the time to first event, then `long` turns of `events` deltas each for events per second
    (the median turn)."""
    url = f"{cli.base_url}/v1/responses"
    kinds = ("http", "ws", "mitmproxy ws", "direct ws")
    ttfe: dict[str, list[float]] = {k: [] for k in kinds}
    rate: dict[str, list[float]] = {k: [] for k in kinds}
    errors = dict.fromkeys(kinds, 0)
    account = {"authorization": "Bearer bench", "chatgpt-account-id": "bench"}

    def upstream(port: int) -> WSClient:
        """A socket to the backend's own path on `port` (WSClient needs only a proxy's base_port)."""
        return WSClient(SimpleNamespace(base_port=port), "base_url", PATH, headers=account, timeout=120)

    async with httpx.AsyncClient(timeout=120) as client:
        with WSClient(cli, "base_url", timeout=120) as ws, upstream(bare_port) as bare, upstream(backend.port) as direct:
            sockets = {"ws": ws, "mitmproxy ws": bare, "direct ws": direct}

            async def one(kind: str, n: int) -> tuple[float, float, int, bool]:
                if kind == "http":
                    r = await http_turn(client, url, n)
                else:
                    r = ws_turn(sockets[kind], backend, n)
                errors[kind] += not r[3]
                return r

            for kind in kinds:
                await one(kind, 0)  # warm-up: connection, account, caches
            for _ in range(short):
                for kind in kinds:
                    ttfe[kind].append((await one(kind, 0))[0] * 1000)
            for _ in range(long):
                for kind in kinds:
                    r = await one(kind, events)
                    rate[kind].append(r[2] / r[1])
    return {
        k: {"ttfe_p50": pct(ttfe[k], 0.5), "ttfe_p99": pct(ttfe[k], 0.99), "events_s": pct(rate[k], 0.5), "errors": errors[k]}
        for k in kinds
    }


def translator_speed(events: int) -> dict[str, float]:
    from cliproxy.addons.translate import registry

    data = b"".join(f"event: {k}\ndata: {json.dumps(p)}\n\n".encode() for k, p in events_for(events))
    n = len(events_for(events))
    out = {}
    for route in ("chat", "responses", "messages"):
        opts = {"include_usage": True} if route == "chat" else {}
        best = float("inf")
        for _ in range(3):
            tr = registry.stream_translator(route, "gpt-5.5", opts)
            start = time.perf_counter()
            for i in range(0, len(data), 1400):  # TCP-segment-sized chunks
                tr(data[i : i + 1400])
            tr(b"")
            best = min(best, time.perf_counter() - start)
        out[route] = n / best
    return out


def start_passthrough(tmp: Path, backend_port: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            str(MITMDUMP),
            "--mode",
            f"reverse:http://127.0.0.1:{backend_port}@127.0.0.1:{port}",
            "--set",
            f"confdir={tmp / 'mp'}",
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
    )
    stdout = proc.stdout
    assert stdout is not None, "stdout=PIPE"
    for line in stdout:
        if "listening at" in line:
            break
    # keep draining so the pipe never fills
    import threading

    threading.Thread(target=lambda: [None for _ in stdout], daemon=True).start()
    return proc, port


async def run(args: argparse.Namespace) -> int:
    quick = args.quick
    n_seq = 30 if quick else 300
    levels = [1, 10, 50] if quick else [1, 10, 50, 200]
    per_level = (lambda c: max(20, c * 2)) if quick else (lambda c: max(200, c * 5))
    stream_events = 5000
    rss_requests = 500 if quick else 10_000
    n_ws, ws_long = (30, 2) if quick else (300, 5)
    console = Console()
    with tempfile.TemporaryDirectory() as tmpdir, CodexBackend(bench_responder(20)) as backend:
        tmp = Path(tmpdir)
        mint_account(tmp / "auth")
        cli: Proxy = start_proxy(tmp / "cliproxy", {"auth-dir": str(tmp / "auth"), "codex-base-url": backend.base_url})
        bare, bare_port = start_passthrough(tmp, backend.port)
        targets = [
            Target("direct", f"{backend.base_url}/responses", CODEX_BODY),
            Target("mitmproxy", f"http://127.0.0.1:{bare_port}/backend-api/codex/responses", CODEX_BODY, bare.pid),
            Target("cliproxy", f"{cli.base_url}/v1/chat/completions", CHAT_BODY, cli.proc.pid),
        ]
        rows: dict[str, dict] = {t.name: {} for t in targets}
        errors = 0
        try:
            for t in targets:
                console.print(f"[bold]{t.name}[/]: sequential, long stream, concurrency {levels}")
                r = rows[t.name]
                r.update(await sequential(t, n_seq))
                ls = await long_stream(t, stream_events)
                r["stream_ms"] = ls["stream_ms"]
                r["errors"] += ls["errors"]
                for c in levels:
                    res = await concurrent(t, c, per_level(c))
                    r[f"rps@{c}"], r[f"p99@{c}"] = res["rps"], res["p99_ms"]
                    r["errors"] += res["errors"]
                r["rss_peak_mb"] = rss_kb(t.pid, "VmHWM") / 1024
                errors += r["errors"]
            # memory over many requests, cliproxy only
            cl = targets[2]
            before = rss_kb(cl.pid)
            res = await concurrent(cl, 10, rss_requests)
            errors += res["errors"]
            rows["cliproxy"]["rss_growth_mb"] = (rss_kb(cl.pid) - before) / 1024
            rows["cliproxy"]["rss_requests"] = rss_requests
            console.print(
                f"[bold]cliproxy Responses[/]: HTTP and WebSocket turns interleaved ({n_ws} short, {ws_long} x {stream_events} events)"
            )
            transports = await ws_vs_http(cli, bare_port, backend, n_ws, ws_long, stream_events)
            errors += sum(t["errors"] for t in transports.values())
        finally:
            cli.stop()
            bare.terminate()
    speeds = translator_speed(stream_events)

    table = Table(title="cliproxy benchmark (127.0.0.1, fake backend)")
    table.add_column("metric")
    for name in rows:
        table.add_column(name, justify="right")
    metrics = [("TTFB p50 (ms)", "ttfb_p50"), ("TTFB p99 (ms)", "ttfb_p99"), (f"{stream_events}-event stream (ms)", "stream_ms")]
    for c in levels:
        metrics += [(f"req/s @ {c} streams", f"rps@{c}"), (f"p99 @ {c} streams (ms)", f"p99@{c}")]
    metrics += [("errors", "errors"), ("peak RSS (MB)", "rss_peak_mb")]
    for label, key in metrics:
        table.add_row(label, *[f"{rows[t].get(key, float('nan')):.1f}" if key != "errors" else str(rows[t].get(key, 0)) for t in rows])
    console.print(table)
    base = rows["direct"]["ttfb_p50"]
    over_bare, over_cli = rows["mitmproxy"]["ttfb_p50"] - base, rows["cliproxy"]["ttfb_p50"] - base
    console.print(
        f"first-byte overhead p50: mitmproxy {over_bare:.2f} ms, cliproxy {over_cli:.2f} ms "
        f"(ratio {over_cli / over_bare if over_bare > 0 else float('nan'):.2f}, target ≤ 1.5)"
    )
    console.print(
        f"cliproxy RSS growth over {rows['cliproxy']['rss_requests']} requests: {rows['cliproxy']['rss_growth_mb']:+.1f} MB (target ±10)"
    )
    ws_table = Table(title="/v1/responses: HTTP stream vs WebSocket through cliproxy; sockets via bare mitmproxy and direct (interleaved)")
    ws_table.add_column("metric")
    for kind in transports:
        ws_table.add_column(kind, justify="right")
    for label, key in [
        ("first event p50 (ms)", "ttfe_p50"),
        ("first event p99 (ms)", "ttfe_p99"),
        (f"events/s ({stream_events}-delta turn)", "events_s"),
    ]:
        ws_table.add_row(label, *[f"{transports[k][key]:,.1f}" for k in transports])
    ws_table.add_row("errors", *[str(transports[k]["errors"]) for k in transports])
    console.print(ws_table)
    http, sock = transports["http"], transports["ws"]  # the other two are the table's baselines
    console.print(
        f"websocket vs HTTP: first event p50 {sock['ttfe_p50']:.2f} ms vs {http['ttfe_p50']:.2f} ms, "
        f"events/s {sock['events_s']:,.0f} vs {http['events_s']:,.0f}"
    )
    console.print("translator events/s (one core): " + ", ".join(f"{k} {v:,.0f}" for k, v in speeds.items()) + " (target ≥ 50,000)")
    if errors:
        console.print(f"[red]{errors} request(s) failed[/]")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small CI run: fails on errors, not on timings")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
