"""The chunked-body reader cliproxy gives mitmproxy's HTTP/1 layer (installed by `http_framing`).

It is h11's `ChunkedReader` with two changes:

- trailers are read (and checked) but dropped: mitmproxy 12 raises NotImplementedError on them and
  would leave the client without an answer;
- the chunks already complete in the receive buffer come out as one `Data` event: h11 makes one
  event per chunk, so a socket read of a stream cut into 1–40-byte chunks cost thousands of steps.
  The bytes, their order and what is refused are h11's; a chunk not yet complete, the last chunk and
  anything malformed are left to h11's own step, which raises its own errors.

Relies on h11 0.16 internals (the reader's state fields, `chunk_header_re`, the receive buffer's
bytearray, read in place so that a buffer that holds no complete chunk costs no copy):
tests/unit/test_chunked_reader.py checks them.
"""

from __future__ import annotations

import logging

import h11

try:  # private: another layout means another h11, and the reader is then h11's own
    from h11._readers import ChunkedReader, chunk_header_re
except ImportError:  # pragma: no cover
    ChunkedReader, chunk_header_re = object, None  # type: ignore[assignment,misc]

logger = logging.getLogger(__name__)

SUPPORTED = h11.__version__.startswith("0.16.") and chunk_header_re is not None
#: A chunk-size line longer than this is left to h11 (which refuses it), so a malformed head costs no long scans.
MAX_HEADER = 1024


class JoiningChunkedReader(ChunkedReader):
    """h11's chunked reader, with trailers dropped and the complete chunks of the buffer joined."""

    def __call__(self, buf):
        if SUPPORTED and not (self._reading_trailer or self._bytes_in_chunk) and self._bytes_to_discard in (b"", b"\r\n"):
            if (joined := self._complete_chunks(buf)) is not None:
                return h11.Data(data=joined)
        event = super().__call__(buf)
        if isinstance(event, h11.EndOfMessage) and event.headers:
            logger.debug("cliproxy: dropped HTTP/1 trailers %s", [bytes(name) for name, _ in event.headers])
            return h11.EndOfMessage()
        return event

    def _complete_chunks(self, buf) -> bytes | None:
        """The data of the complete chunks at the head of `buf` (consumed, footers included), or None."""
        data: bytearray = buf._data  # read in place; consumed below through the buffer's own method
        pos = len(self._bytes_to_discard)
        if data[:pos] != self._bytes_to_discard:
            return None  # h11's step names the malformed footer
        pieces = []
        end_of_data = len(data)
        while (eol := data.find(b"\r\n", pos, pos + MAX_HEADER)) >= 0:
            header = chunk_header_re.fullmatch(data, pos, eol + 2)
            if header is None:
                break
            size = int(header["chunk_size"], 16)
            start = eol + 2
            stop = start + size
            if size == 0 or stop + 2 > end_of_data or data[stop : stop + 2] != b"\r\n":
                break  # the last chunk, one still arriving, or a bad footer: h11's step takes it
            pieces.append(data[start:stop])
            pos = stop + 2
        if not pieces:
            return None
        buf.maybe_extract_at_most(pos)
        self._bytes_to_discard = b""
        return b"".join(pieces)
