"""The benchmark's own parts: its answer checks, its client's end-of-body detection, the fake's tiny
chunks, variants, and ratios taken inside each round (scripts/bench.py, tests/fakes/bench_backend.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from cliproxy.addons.translate import registry
from cliproxy.scripts import bench
from tests.fakes.bench_backend import SEGMENT, BenchBackend, bench_events, encode, prepared, tiny_pieces


def client_stream(route: str, events: int) -> bytes:
    """What cliproxy's translator makes of the fake's stream for `route` (SSE bytes, not chunk-framed)."""
    tr = registry.stream_translator(route, bench.MODEL, {})
    out = []
    for piece in [*encode(bench_events(events)), b""]:
        got = tr(piece)
        out.append(b"".join(got) if isinstance(got, list) else got)
    return b"".join(out)


def framed(data: bytes, size: int = 50) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(data[i : i + size]), data[i : i + size]) for i in range(0, len(data), size)) + b"0\r\n\r\n"


CODEX = b"".join(encode(bench_events(7)))


@pytest.mark.parametrize(
    "wire, body, chunked, status, problem",
    [
        ("codex", framed(CODEX), True, 200, None),
        ("responses", CODEX, False, 200, None),
        ("chat", framed(client_stream("chat", 7)), True, 200, None),
        ("messages", framed(client_stream("messages", 7)), True, 200, None),
        ("responses", framed(client_stream("responses", 7)), True, 200, None),
        ("chat", client_stream("chat", 7).rsplit(b"data: [DONE]", 1)[0], False, 200, "did not finish"),
        ("messages", client_stream("messages", 7).replace(b'"text":"x"', b'"text":""', 1), False, 200, "wrong text"),
        ("codex", CODEX.replace(b'"delta": "x"', b'"delta": "y"', 1), False, 200, "wrong text"),
        ("chat", b'{"error": {"message": "no"}}', False, 502, "HTTP 502"),
        ("chat", b"data: {not json\n\n", False, 200, "unreadable"),
        ("codex", b"5\r\nevent", True, 200, "unreadable"),  # a chunked body cut short
    ],
)
def test_check_accepts_only_a_whole_right_stream(wire: str, body: bytes, chunked: bool, status: int, problem: str | None) -> None:
    got = bench.check(bench.Answer(status, 0.0, 0.0, body, chunked), wire, 7)
    assert (got is None) if problem is None else (got is not None and problem in got), got


def test_tiny_pieces_are_1_to_40_bytes_and_rebuild_the_stream() -> None:
    data = b"".join(encode(bench_events(300)))
    pieces = tiny_pieces(data)
    assert b"".join(pieces) == data
    assert all(1 <= len(p) <= 40 for p in pieces)
    assert len({len(p) for p in pieces}) > 30  # sizes vary: frames split anywhere, not on boundaries
    sends = prepared(300, "tiny")
    assert sends[-1].endswith(b"0\r\n\r\n") and all(len(s) <= SEGMENT for s in sends[:-1])
    assert len(sends) < len(pieces) / 10  # packed: the backend makes few sends of many chunks
    assert bench.dechunk(b"".join(sends)) == data
    assert b"".join(sends).count(b"\r\n") == 2 * len(pieces) + 2  # one HTTP chunk per piece, then the last chunk
    frames = prepared(300, "frames")
    assert len(frames) == len(encode(bench_events(300))) + 1 and bench.dechunk(b"".join(frames)) == data


@pytest.mark.parametrize("chunks", ["frames", "tiny"])
def test_client_reads_whole_streams_from_the_fake_on_one_connection(chunks: str) -> None:
    """The client's end-of-body detection against the real fake: several answers on one keep-alive connection."""
    system = bench.System("direct", "direct", 0, None)
    with BenchBackend() as backend:
        system.port = backend.port

        async def go() -> list[str | None]:
            conn = bench.Conn(backend.port)
            answers = [await conn.send(system.request("chat", n, chunks)) for n in (1, 500, 3)]
            conn.close()
            return [bench.check(a, "codex", n) for a, n in zip(answers, (1, 500, 3))]

        assert asyncio.run(go()) == [None, None, None]


def test_a_failed_request_counts_as_an_error() -> None:
    system = bench.System("dead", "cliproxy", 9, None)  # nothing listens on port 9
    got = asyncio.run(bench.one(system, bench.Conn(9), "chat", 5))
    assert got is None and system.errors == 1 and "chat" in system.problems[0]


def test_a_crashed_process_is_an_error() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], stdout=subprocess.PIPE, text=True)
    system = bench.System("cliproxy", "cliproxy", 1, proc.pid, proc)
    bench.drain(proc, system.lines)
    proc.wait(10)
    time.sleep(0.2)  # the drain thread reads the last line
    assert not system.alive() and not system.alive()
    assert system.errors == 1 and "exited (3)" in system.problems[0] and "boom" in system.problems[0]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("no-ledger=--config usage-retention-days=0", ("no-ledger", {"usage-retention-days": 0}, [])),
        (
            "pg=--set stream_large_bodies=1 --config usage-db=postgresql://x/y",
            ("pg", {"usage-db": "postgresql://x/y"}, ["--set", "stream_large_bodies=1"]),
        ),
        ("plain=", ("plain", {}, [])),
    ],
)
def test_variant_spec(spec: str, expected: tuple) -> None:
    assert bench.parse_variant(spec) == expected


@pytest.mark.parametrize("spec", ["noequals", "=--set a=b", "bare=--set a=b", "cliproxy="])
def test_variant_spec_refused(spec: str) -> None:
    with pytest.raises(Exception, match="NAME"):
        bench.parse_variant(spec)


def test_ratios_are_taken_inside_each_round() -> None:
    values: dict[str, dict[str, list[float | None]]] = {
        "stream_chat": {"cliproxy": [2.0, 8.0, 3.0], "bare": [1.0, 8.0, None], "no-ledger": [2.0, 4.0, 3.0]},
    }
    summary = bench.summarize(values, ["direct", "bare", "cliproxy", "no-ledger"], [], 3)
    inside = summary["ratios"]["stream_chat"]
    assert inside["cliproxy/bare"] == {"median": 1.5, "min": 1.0, "max": 2.0, "n": 2}  # not 13/9 from pooled figures
    assert inside["cliproxy/no-ledger"]["median"] == 1.0 and inside["cliproxy/no-ledger"]["max"] == 2.0
    assert "no-ledger/bare" not in inside  # built-in variants are compared to cliproxy only
    assert summary["absolute"]["stream_chat"]["cliproxy"]["median"] == 3.0


def test_websocket_turns_against_the_fake_on_one_socket() -> None:
    """The WebSocket client and the fake's WebSocket responder: turns of the asked length on one socket."""
    system = bench.System("direct", "direct", 0, None)
    with BenchBackend() as backend:
        system.port = backend.port

        async def go() -> list[float | None]:
            conn = bench.WSConn(backend.port, *system.ws_target())
            got = [await bench.ws_one(system, conn, n) for n in (1, 500, 3)]
            conn.close()
            return got

        got = asyncio.run(go())
    assert all(t is not None and t > 0 for t in got) and system.errors == 0, system.problems


def test_a_websocket_turn_with_the_wrong_text_is_an_error() -> None:
    system = bench.System("direct", "direct", 0, None)
    with BenchBackend() as backend:
        system.port = backend.port

        async def go() -> float | None:
            conn = bench.WSConn(backend.port, *system.ws_target())
            backend.ws_responder = lambda frame: bench_events(4)  # four deltas where five are asked for
            got = await bench.ws_one(system, conn, 5)
            conn.close()
            return got

        assert asyncio.run(go()) is None
    assert system.errors == 1 and "4 characters, 5 expected" in system.problems[0]
