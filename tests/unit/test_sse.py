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
