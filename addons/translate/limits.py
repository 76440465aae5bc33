"""Client-set output limits the Codex backend refuses (`stop`, `max_tokens` and kin), honoured locally.

The backend rejects every token limit and has no stop sequences, so cliproxy strips them from the
upstream body and watches the answer's visible text instead (`Limiter`): text is released as soon as
it cannot be the start of a stop sequence, and the answer ends at the first stop sequence (the
sequence and what follows are never sent) or when the estimated tokens of the text reach the limit.

Tokens are the local o200k estimate of `anthropic.text_tokens` (about ±15% on prose), summed per
delta: the estimate is linear in character counts, so the sum over deltas equals the estimate of the
whole text. Only visible text counts: reasoning tokens are hidden until the backend's final usage,
which a locally ended answer never receives; tool-call arguments are not cut.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

from cliproxy.addons.translate import anthropic, errors  # anthropic holds the token estimate (and imports this module)

MAX_STOP_SEQUENCES = 4  # OpenAI's limit for chat `stop`


@functools.lru_cache(maxsize=4096)
def _short_tokens(text: str) -> float:
    return anthropic.text_tokens(text)


def _tokens(text: str) -> float:
    """`anthropic.text_tokens`, remembered for short strings: a stream's deltas are tokens, and they repeat."""
    return _short_tokens(text) if len(text) <= 24 else anthropic.text_tokens(text)


def positive_int(value: Any, param: str) -> int | None:
    """A token limit from the client: None when absent, else a positive integer (400 otherwise)."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise errors.bad_request(f"`{param}` must be a positive integer", param)
    return value


def stop_list(value: Any, param: str, most: int | None = MAX_STOP_SEQUENCES, single: bool = True) -> list[str]:
    """Stop sequences from the client: a list of strings, or (`single`, OpenAI's) one string; empty ones are ignored."""
    if value is None:
        return []
    if isinstance(value, str) and single:
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise errors.bad_request(f"`{param}` must be {'a string or ' if single else ''}an array of strings", param)
    if most is not None and len(value) > most:
        raise errors.bad_request(f"`{param}` takes at most {most} sequences", param)
    return [s for s in dict.fromkeys(value) if s]


def options(codex: dict[str, Any], stop: list[str], max_tokens: int | None) -> dict[str, Any] | None:
    """The plain `limits` option a stream translator takes, or None when the client set none."""
    if not stop and max_tokens is None:
        return None
    return {"stop": stop, "max_tokens": max_tokens, "input_tokens": anthropic.estimate_tokens(codex)}


@dataclass(slots=True)
class Limiter:
    """Watches the output text of one answer; `text()` says what may be sent and whether it ends there."""

    stop: list[str] = field(default_factory=list)
    max_tokens: int | None = None
    input_tokens: int = 0
    used: float = 0.0  # estimated tokens of the text released so far
    held: str = ""  # text that may be the start of a stop sequence
    ended: str | None = None  # "stop" | "length" once the answer is over
    stop_sequence: str | None = None  # the sequence that ended it
    item_id: str | None = None  # the message item being written
    output_index: int | None = None
    item_text: list[str] = field(default_factory=list)  # text released for that item

    @classmethod
    def from_options(cls, limits: dict[str, Any] | None) -> Limiter | None:
        if not limits:
            return None
        return cls(list(limits.get("stop") or []), limits.get("max_tokens"), int(limits.get("input_tokens") or 0))

    def begin(self, item_id: str | None, output_index: int | None) -> None:
        """A new message item starts: stop sequences are looked for within one item's text."""
        self.item_id, self.output_index, self.item_text, self.held = item_id, output_index, [], ""

    def text(self, delta: str) -> str:
        """The part of `delta` (after any held text) that may be sent now; sets `ended` when the answer ends."""
        if self.ended:
            return ""
        buf = self.held + delta
        self.held = ""
        cut = -1
        for seq in self.stop:
            at = buf.find(seq)
            if at >= 0 and (cut < 0 or at < cut):
                cut, self.stop_sequence = at, seq
        if cut >= 0:
            out = self._budget(buf[:cut])
            if not self.ended:
                self.ended = "stop"
            else:
                self.stop_sequence = None
            return out
        keep = self._open_prefix(buf)
        out, self.held = buf[: len(buf) - keep], buf[len(buf) - keep :]
        return self._budget(out)

    def take(self, delta: str) -> bool:
        """Release `delta` whole when `text()` certainly would (no stop sequences to watch, nothing held,
        within the token budget), booking it as `text()` does; False, with nothing changed, otherwise."""
        if self.stop or self.held or self.ended:
            return False
        if not delta:
            return True
        cost = _tokens(delta)
        room = math.inf if self.max_tokens is None else self.max_tokens - self.used
        if cost <= room and room > 0:  # as `_budget` decides
            self.used += cost
            self.item_text.append(delta)
            return True
        return False

    def flush(self) -> str:
        """The item's text is complete: held text was no stop sequence after all."""
        held, self.held = self.held, ""
        return self._budget(held) if held and not self.ended else ""

    def _open_prefix(self, buf: str) -> int:
        """Length of the longest end of `buf` that is the start of some stop sequence."""
        best = 0
        for seq in self.stop:
            for n in range(min(len(seq) - 1, len(buf)), best, -1):
                if buf.endswith(seq[:n]):
                    best = n
                    break
        return best

    def _budget(self, text: str) -> str:
        """`text` as far as the token limit allows; at the limit the answer ends with `length`."""
        if not text:
            return ""
        cost = _tokens(text)
        room = math.inf if self.max_tokens is None else self.max_tokens - self.used
        if cost <= room and room > 0:
            self.used += cost
            self.item_text.append(text)
            return text
        lo, hi = 0, len(text)  # the longest prefix that fits (the estimate grows with the prefix)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if anthropic.text_tokens(text[:mid]) <= room:
                lo = mid
            else:
                hi = mid - 1
        out = text[:lo]
        self.used += anthropic.text_tokens(out)
        self.ended = "length"
        if out:
            self.item_text.append(out)
        return out

    def usage(self) -> dict[str, Any]:
        """Responses-shaped usage of a locally ended answer (the backend's own never arrives)."""
        used = math.ceil(self.used)
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": used,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + used,
        }
