"""addons/mitm/chunked_reader.py: h11's chunked reader with trailers dropped and complete chunks joined.

Table-driven against h11's own reader: for every body and every way of cutting it into reads, the same
bytes come out (in far fewer events), and a malformed body fails with h11's own error."""

from __future__ import annotations

import random

import h11
import pytest
from h11._readers import ChunkedReader
from h11._receivebuffer import ReceiveBuffer

from cliproxy.addons.mitm import chunked_reader
from cliproxy.addons.mitm.chunked_reader import JoiningChunkedReader


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)


def run(reader, reads: list[bytes]) -> tuple[list[bytes], bool, str | None]:
    """(the data events, whether the end was reached, the error) after feeding `reads` one by one."""
    buf, data, ended = ReceiveBuffer(), [], False
    try:
        for read in reads:
            buf += read
            while (event := reader(buf)) is not None:
                if isinstance(event, h11.EndOfMessage):
                    ended = True
                    break
                data.append(bytes(event.data))
            if ended:
                break
    except h11.ProtocolError as exc:
        return data, ended, type(exc).__name__ + ": " + str(exc)
    return data, ended, None


def cuts(body: bytes, seed: int) -> list[list[bytes]]:
    """The body whole, byte by byte, and cut at random points."""
    rng = random.Random(seed)
    points = sorted(rng.sample(range(1, len(body)), min(8, len(body) - 1)))
    return [[body], [body[i : i + 1] for i in range(len(body))], [body[a:b] for a, b in zip([0, *points], [*points, len(body)])]]


BODIES = {
    "frames": chunked(b"event: a\ndata: 1\n\n", b"x", b"y" * 300) + b"0\r\n\r\n",
    "extension and spaces": b"3;name=value\r\nabc\r\n2 \r\nde\r\n0\r\n\r\n",
    "upper-case hex": b"A\r\n0123456789\r\n0\r\n\r\n",
    "trailers": chunked(b"ab") + b"0\r\nX-Sum: 1\r\n\r\n",
    "unfinished": chunked(b"ab", b"cd")[:-3],
    "bad footer": b"2\r\nabXY3\r\ncde\r\n0\r\n\r\n",
    "bad size": chunked(b"ab") + b"zz\r\nabc\r\n",
    "empty": b"0\r\n\r\n",
}


@pytest.mark.parametrize("name", list(BODIES))
@pytest.mark.parametrize("seed", [1, 2])
def test_same_bytes_and_errors_as_h11_in_fewer_events(name: str, seed: int) -> None:
    body = BODIES[name]
    for reads in cuts(body, seed):
        want_data, want_end, want_error = run(ChunkedReader(), reads)
        got_data, got_end, got_error = run(JoiningChunkedReader(), reads)
        assert (b"".join(got_data), got_end, got_error) == (b"".join(want_data), want_end, want_error), (name, reads)
        assert len(got_data) <= len(want_data)


def test_the_complete_chunks_of_a_read_are_one_event() -> None:
    pieces = [bytes([65 + i % 26]) * (1 + i % 40) for i in range(500)]
    body = chunked(*pieces)
    data, ended, error = run(JoiningChunkedReader(), [body[:7000], body[7000:] + b"0\r\n\r\n"])
    assert b"".join(data) == b"".join(pieces) and ended and error is None
    assert len(data) <= 4  # the complete chunks of each read, and the two parts of the chunk cut between them


def test_a_long_chunk_size_line_is_left_to_h11() -> None:
    """It is refused as h11 refuses it, and costs no scan beyond MAX_HEADER bytes per step."""
    body = b"1" * 5000 + b"\r\n"
    assert run(JoiningChunkedReader(), [body]) == run(ChunkedReader(), [body])


def test_trailers_are_read_and_dropped() -> None:
    reader, buf = JoiningChunkedReader(), ReceiveBuffer()
    buf += chunked(b"ab") + b"0\r\nX-Sum: 1\r\n\r\n"
    assert bytes(reader(buf).data) == b"ab"
    end = reader(buf)
    assert isinstance(end, h11.EndOfMessage) and not end.headers


def test_the_h11_internals_relied_on() -> None:
    """When this fails, h11 changed: the fence turns joining off and the reader is h11's own."""
    assert chunked_reader.SUPPORTED, h11.__version__
    reader = ChunkedReader()
    assert (reader._bytes_in_chunk, reader._bytes_to_discard, reader._reading_trailer) == (0, b"", False)
    assert chunked_reader.chunk_header_re.fullmatch(b"1f;x=y \r\n")["chunk_size"] == b"1f"
    buf = ReceiveBuffer()
    buf += b"2\r\nab"
    assert isinstance(buf._data, bytearray) and buf._data == b"2\r\nab"
    assert bytes(reader(buf).data) == b"ab" and reader._bytes_to_discard == b"\r\n"  # a chunk read, its footer due
