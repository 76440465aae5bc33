"""The incremental SSE parser: any chunking gives the same events."""

from hypothesis import given, settings
from hypothesis import strategies as st

from cliproxy.addons.translate.sse import COMMENT, SSEParser, encode

STREAM = (
    b'event: response.created\r\ndata: {"a":1}\r\n\r\n'
    + b": keep-alive\n\n"
    + 'event: response.output_text.delta\ndata: {"delta":"h\u00e9llo \u4e16\u754c"}\n\n'.encode()
    + b"data: line1\ndata: line2\n\n"
    + b"id: 7\nretry: 10\nevent: x\ndata:nospace\n\n"
)


def parse_all(chunks):
    p = SSEParser()
    out = []
    for c in chunks:
        out += p.feed(c)
    return out + p.close()


def test_parses_events_comments_crlf_and_multiline_data():
    events = parse_all([STREAM])
    assert [(e.event, e.data) for e in events] == [
        ("response.created", b'{"a":1}'),
        (COMMENT.event, b""),
        ("response.output_text.delta", '{"delta":"h\u00e9llo \u4e16\u754c"}'.encode()),
        (None, b"line1\nline2"),
        ("x", b"nospace"),
    ]


@settings(max_examples=300)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_any_chunking_gives_the_same_events(cuts):
    cuts = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)])]
    assert parse_all(chunks) == parse_all([STREAM])


def test_unterminated_last_event_is_dispatched_at_close():
    assert [(e.event, e.data) for e in parse_all([b"event: e\ndata: {}"])] == [("e", b"{}")]


def test_one_byte_chunks_of_a_long_line_stay_linear():
    p = SSEParser()
    line = b"data: " + b"x" * 200_000 + b"\n\n"
    for i in range(len(line)):
        out = p.feed(line[i : i + 1])
    assert out[0].data == b"x" * 200_000
    assert p.pending == 0


def test_encode():
    assert encode({"a": "é"}, "ev") == 'event: ev\ndata: {"a":"é"}\n\n'.encode()
    assert encode(b"[DONE]") == b"data: [DONE]\n\n"


DELTA = b'event: response.output_text.delta\ndata: {"delta":"x"}\n\n'


def frames_taken_whole(chunks: list[bytes]) -> tuple[list[bytes], list[tuple[str | None, bytes]]]:
    """Feed `chunks` with a `run` that takes every whole DELTA frame offered to it; returns what it took
    and the events that came out otherwise."""
    p, taken, events = SSEParser(), [], []

    def run(data: bytes, pos: int) -> int:
        while data.startswith(DELTA, pos):
            taken.append(DELTA)
            pos += len(DELTA)
        return pos

    for c in chunks:
        p.feed_into(c, lambda e: events.append((e.event, e.data)), run)
    return taken, events + [(e.event, e.data) for e in p.close()]


def test_a_short_frame_cut_by_a_read_is_held_and_taken_whole():
    """A read boundary inside a frame used to send that frame down the line-by-line path."""
    stream = DELTA * 5
    for cut in range(1, len(stream)):
        taken, events = frames_taken_whole([stream[:cut], stream[cut:]])
        assert (taken, events) == ([DELTA] * 5, []), cut


def test_only_short_partial_frames_are_held():
    long_frame = b"event: big\ndata: " + b"y" * 5000 + b"\n\n"
    p = SSEParser()
    assert p.feed(long_frame[:4000]) == [] and p.pending < 4000  # its event line was parsed as it came
    assert [(e.event, len(e.data)) for e in p.feed(long_frame[4000:])] == [("big", 5000)]


def test_holding_delays_no_event_or_comment():
    """What is held cannot be dispatched yet anyway: a comment goes out on its line, CRLF frames at their blank line."""
    p = SSEParser()
    assert p.feed(b": keep-alive\n") == [COMMENT]
    assert p.feed(b"\n") == []
    assert [(e.event, e.data) for e in p.feed(b"event: a\r\ndata: 1\r\n\r\nevent: b\r\ndata: 2")] == [("a", b"1")]
    assert [(e.event, e.data) for e in p.feed(b"\r\n\r\n")] == [("b", b"2")]


def test_a_held_frame_without_its_blank_line_is_dispatched_at_close():
    p = SSEParser()
    assert p.feed(b"event: e\r\ndata: {}\n") == [] and p.pending > 0
    assert [(e.event, e.data) for e in p.close()] == [("e", b"{}")]
