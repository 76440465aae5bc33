"""The streaming fast paths give what the general paths give.

Shortcuts keep long streams cheap: the SSE parser takes a whole `event:`/`data:` frame in one step,
the Chat and Messages translators copy a text or reasoning delta's JSON string literal into their
frame instead of decoding the event and encoding the delta again, and runs of whole text-delta frames
are translated in one loop (passed on as one slice by Responses). Each test here runs the same
upstream bytes through the translators with the shortcuts on and off (`SSEParser.FRAMES`,
`RAW_DELTAS` and `TEXT_RUNS` off) and compares what the client would receive:
byte for byte when the upstream writes UTF-8 as it is (as the backend does), as JSON when it
escapes (`\\u00e9` and `é` are the same string), for any chunking of the input.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cliproxy.addons.translate import registry
from cliproxy.addons.translate.anthropic_stream import MessagesStream
from cliproxy.addons.translate.chat import ChatStream
from cliproxy.addons.translate.sse import SSEParser, delta_literal
from cliproxy.addons.translate.stream import TEXT_DELTA_FRAME, CodexStream
from tests.fakes.codex_backend import turn

AWKWARD = ["hé", 'llo "w', 'örld" \\', " 😀", "\u2028\t\n", "</think>", '{"delta":"x"}', "\\u0041", "末尾"]


def turns() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    return {
        "text": turn().text("".join(AWKWARD), deltas=AWKWARD).events(),
        "reasoning then text": turn().reasoning("first thought", "second — thought 🤔").text("done ✓", deltas=["do", "ne ✓"]).events(),
        "text, tool call, text": turn().text("a", deltas=["a"]).tool_call("get_weather", {"city": "Zürich"}).text("b\nc").events(),
        "empty deltas": turn().text("xy", deltas=["", "x", "", "y"]).events(),
        "incomplete": turn().text("cut", deltas=["c", "u", "t"]).incomplete().events(),
    }


def wire(events: list[tuple[str, dict[str, Any]]], style: str) -> bytes:
    """The upstream body: compact UTF-8 (the backend's), `json.dumps` defaults (spaces, \\u escapes),
    CRLF line ends, data-only frames (the type inside), or keep-alive comments between frames."""
    frames = []
    for kind, payload in events:
        if style == "compact":
            frames.append(
                b"event: " + kind.encode() + b"\ndata: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
            )
        elif style == "escaped":
            frames.append(f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode())
        elif style == "crlf":
            frames.append(f"event: {kind}\r\ndata: {json.dumps(payload, ensure_ascii=False)}\r\n\r\n".encode())
        elif style == "data only":
            frames.append(f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode())
        else:
            frames.append(f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n: keep-alive\n\n".encode())
    return b"".join(frames)


def limit(max_tokens: int | None, stop: list[str] | None = None) -> dict[str, Any]:
    return {"stop": stop or [], "max_tokens": max_tokens, "input_tokens": 3}


TRANSLATORS = {
    "chat": lambda: ChatStream("gpt-5.5", include_usage=True),
    "chat think-tags": lambda: ChatStream("gpt-5.5", reasoning="think-tags"),
    "chat hidden reasoning": lambda: ChatStream("gpt-5.5", reasoning="hidden"),
    "messages": lambda: MessagesStream("gpt-5.5", input_tokens=3, clock=lambda: 0.0),
    "messages without thinking": lambda: MessagesStream("gpt-5.5", thinking=False, clock=lambda: 0.0),
    "responses": lambda: registry.stream_translator("responses", "gpt-5.5", {}),
    # client-set limits: a token budget that holds, one that cuts the answer short, stop sequences
    "chat max_tokens": lambda: ChatStream("gpt-5.5", limits=limit(1000)),
    "chat cut short": lambda: ChatStream("gpt-5.5", limits=limit(3)),
    "chat stop": lambda: ChatStream("gpt-5.5", limits=limit(None, ["wö", "ne"])),
    "messages max_tokens": lambda: MessagesStream("gpt-5.5", clock=lambda: 0.0, limits=limit(1000)),
    "messages cut short": lambda: MessagesStream("gpt-5.5", clock=lambda: 0.0, limits=limit(2)),
    "responses max_output_tokens": lambda: registry.stream_translator("responses", "gpt-5.5", {"limits": limit(1000)}),
    "responses cut short": lambda: registry.stream_translator("responses", "gpt-5.5", {"limits": limit(2)}),
}


def run(make, chunks: list[bytes], fast: bool, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """What the client receives, and the count of upstream events (kept for the flow's notes)."""
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(SSEParser, "FRAMES", False)
        tr: CodexStream = make()
        if not fast:
            tr.RAW_DELTAS, tr.TEXT_RUNS = frozenset(), False
        out = [piece for chunk in chunks for piece in tr(chunk)] + tr(b"")
    return b"".join(out) + b"events: %d" % tr.events


def frames(body: bytes) -> list[Any]:
    """The client's frames, each `data:` parsed as JSON (where it is JSON)."""
    out: list[Any] = []
    for frame in body.split(b"\n\n"):
        lines = [(json.loads(x[6:]) if x.startswith(b"data: {") else x) for x in frame.split(b"\n")]
        out.append(lines)
    return out


def cut(data: bytes, how: str, seed: int = 7) -> list[bytes]:
    if how == "whole":
        return [data]
    if how == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    pieces, i = [], 0
    while i < len(data):
        n = rng.choice((1, 2, 3, 5, 17, 40, 301))
        pieces.append(data[i : i + n])
        i += n
    return pieces


@pytest.mark.parametrize("how", ["whole", "awkward", "bytes"])
@pytest.mark.parametrize("style", ["compact", "escaped", "crlf", "data only", "keep-alives"])
@pytest.mark.parametrize("scenario", list(turns()))
@pytest.mark.parametrize("translator", list(TRANSLATORS))
def test_fast_paths_give_what_the_general_paths_give(translator, scenario, style, how, monkeypatch):
    data = wire(turns()[scenario], style)
    make = TRANSLATORS[translator]
    fast = run(make, cut(data, how), True, monkeypatch)
    slow = run(make, [data], False, monkeypatch)
    assert b"translation_error" not in slow
    if style == "escaped":
        assert frames(fast) == frames(slow)
    else:
        assert fast == slow


def test_the_fast_paths_are_taken(monkeypatch):
    """A guard for the test above: with the backend's own framing, text deltas go by whole runs of frames
    and reasoning deltas the raw way (else the comparison compares the general path with itself)."""
    data = wire(turns()["reasoning then text"], "compact")
    for name in ("chat", "messages", "responses", "chat max_tokens", "messages max_tokens", "responses max_output_tokens"):
        taken: list[str] = []
        tr = TRANSLATORS[name]()
        cls = type(tr)
        raw, run = cls.on_raw_delta, cls.on_text_run

        def raw_spy(self, kind, event, m, raw=raw, taken=taken):
            frame = raw(self, kind, event, m)
            taken.extend([kind] if frame is not None else [])
            return frame

        def run_spy(self, chunk, pos, out, run=run, taken=taken):
            end = run(self, chunk, pos, out)
            taken.extend(["run"] if end != pos else [])
            return end

        monkeypatch.setattr(cls, "on_raw_delta", raw_spy)
        monkeypatch.setattr(cls, "on_text_run", run_spy)
        tr(data)
        assert "run" in taken, name
        assert name.startswith("responses") or "response.reasoning_summary_text.delta" in taken, name
    lines: list[bytes] = []
    with monkeypatch.context() as m:
        m.setattr(SSEParser, "_line", lambda self, line, out: lines.append(line))
        SSEParser().feed(data)
    assert lines == []  # every frame was taken whole


@settings(max_examples=150, deadline=None)
@given(
    deltas=st.lists(st.text(max_size=6), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=30),
    translator=st.sampled_from(["chat", "messages"]),
)
def test_any_text_and_any_chunking(deltas, cuts, translator):
    data = wire(turn().text("".join(deltas), deltas=deltas).events(), "compact")
    cuts = sorted({c for c in cuts if 0 < c < len(data)})  # an empty chunk would be the end of the body
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    make = TRANSLATORS[translator]
    with pytest.MonkeyPatch.context() as mp:
        assert run(make, chunks, True, mp) == run(make, [data], False, mp)


# -- delta_literal: when the raw literal may be used -------------------------------------------------


@pytest.mark.parametrize(
    "data,literal",
    [
        (b'{"type":"t","item_id":"m","output_index":0,"delta":"hi","logprobs":[]}', b'"hi"'),
        (b'{"type": "t", "delta" : "a\\"b\\\\c\\n\\u00e9\\/"}', b'"a\\"b\\\\c\\n\\u00e9\\/"'),
        (b'{"delta":"\\ud83d\\ude00"}', b'"\\ud83d\\ude00"'),  # an escaped surrogate pair
        ('{"delta":"é 世界 😀"}'.encode(), '"é 世界 😀"'.encode()),
        (b'{"delta":""}', b'""'),
        (b'{"obfuscation":"x{y","delta":"z"}', None),  # a brace before it: could be a nested object
        (b'{"a":{"delta":"inner"},"delta":"outer"}', None),  # nested
        (b'{"a":"\\"","delta":"x"}', None),  # a backslash before it: quotes there cannot be counted
        (b'{"a":"x\\"delta\\":\\"y","delta":"z"}', None),
        (b'{"delta":"x","delta":"y"}', None),  # a second one (a parse keeps the last)
        (b'{"delta":"x","b":{"delta":"y"}}', None),
        (b'{"delta":"\\ud83d"}', None),  # a lone surrogate escape
        (b'{"delta":"\\ude00\\ud83d"}', None),  # a low one first
        (b'{"delta":"\\x"}', None),  # not a JSON escape
        (b'{"delta":"a\tb"}', None),  # a raw control character
        (b'{"delta":"\xff"}', None),  # not UTF-8
        (b'{"a":"\xc3","delta":"x"}', None),  # not UTF-8 elsewhere in the event
        (b'{"delta":5}', None),
        (b'["delta","x"]', None),
        (b'{"delta":"x"', None),  # cut short
    ],
)
def test_delta_literal(data, literal):
    m = delta_literal(data)
    assert (m[1] if m else None) == literal
    if m is not None:
        assert json.loads(data)["delta"] == json.loads(m[1])


@pytest.mark.parametrize("tail", [b',"logprobs":[{"x":1}]}\n\n', b"}\n", b""])
def test_a_near_miss_frame_fails_in_linear_time(tail):
    """A long delta in a frame the fast path does not take (an unknown field after it, a frame cut short) must
    fail to match at once: nested greedy quantifiers made this exponential and froze the proxy's event loop."""
    frame = (
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"m","output_index":0,'
        b'"content_index":0,"delta":"' + b"a b " * 50_000 + b'"' + tail
    )
    started = time.process_time()
    assert TEXT_DELTA_FRAME.match(frame) is None
    assert time.process_time() - started < 0.5
