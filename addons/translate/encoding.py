"""Request bodies sent compressed (`content-encoding`), decoded with a bound (pure; no mitmproxy import).

`max-request-bytes` counts the bytes on the wire; a few kilobytes of gzip, brotli or zstd can expand to
gigabytes (a "zip bomb"), so the decoded size is bounded too: decoding stops as soon as it passes the limit.
The Codex CLI sends zstd; SDKs send identity.
"""

from __future__ import annotations

import sys
import zlib

import brotli

if sys.version_info >= (3, 14):  # pragma: no cover
    from compression import zstd
else:
    from backports import zstd  # a mitmproxy dependency before Python 3.14

ENCODINGS = ("identity", "gzip", "deflate", "br", "zstd")


class TooLarge(ValueError):
    """The decoded body passes the limit."""


def decode(raw: bytes, encoding: str, limit: int) -> bytes:
    """`raw` decoded per `encoding` (one coding, case-insensitive), at most `limit` bytes.

    Raises TooLarge past the limit, ValueError for an unknown coding or data that does not decode."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return raw
    try:
        if coding in ("gzip", "x-gzip"):
            out = _zlib(raw, 31, limit)
        elif coding == "deflate":
            try:
                out = _zlib(raw, zlib.MAX_WBITS, limit)  # zlib-wrapped, as RFC 9110 defines it
            except zlib.error:
                out = _zlib(raw, -zlib.MAX_WBITS, limit)  # raw deflate, as some clients send it
        elif coding == "br":
            out = _brotli(raw, limit)
        elif coding == "zstd":
            out = _zstd(raw, limit)
        else:
            raise ValueError(f"unknown content-encoding {encoding[:40]!r}")
    except (zlib.error, brotli.error, zstd.ZstdError, EOFError) as exc:
        raise ValueError(f"the body does not decode as {coding}: {exc}") from None
    if len(out) > limit:
        raise TooLarge(f"the decoded body is larger than {limit} bytes")
    return out


def _zlib(raw: bytes, wbits: int, limit: int) -> bytes:
    d = zlib.decompressobj(wbits=wbits)
    out = d.decompress(raw, limit + 1)
    if not d.eof and not d.unconsumed_tail and len(out) <= limit:
        raise zlib.error("truncated data")
    return out


def _brotli(raw: bytes, limit: int) -> bytes:
    d = brotli.Decompressor()
    out = bytearray(d.process(raw, output_buffer_limit=limit + 1))
    while len(out) <= limit and not d.can_accept_more_data() and not d.is_finished():
        out += d.process(b"", output_buffer_limit=limit + 1 - len(out))
    if len(out) <= limit and not d.is_finished():
        raise EOFError("truncated data")
    return bytes(out)


def _zstd(raw: bytes, limit: int) -> bytes:
    d = zstd.ZstdDecompressor()
    out = bytearray(d.decompress(raw, max_length=limit + 1))
    while len(out) <= limit and not d.eof and d.needs_input is False:
        out += d.decompress(b"", max_length=limit + 1 - len(out))
    if len(out) <= limit and not d.eof:
        raise EOFError("truncated data")
    return bytes(out)
