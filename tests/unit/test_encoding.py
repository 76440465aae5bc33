"""Compressed request bodies are decoded with a bound: a small bomb never expands past the limit."""

import gzip
import zlib

import brotli
import pytest
from backports import zstd

from cliproxy.addons.translate.encoding import TooLarge, decode

BODY = b'{"model": "gpt-5.5", "input": "hi"}'


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


CODINGS = {"gzip": gzip.compress, "deflate": zlib.compress, "deflate-raw": raw_deflate, "br": brotli.compress, "zstd": zstd.compress}


@pytest.mark.parametrize("name", sorted(CODINGS))
def test_each_coding_decodes_and_a_bomb_stops_at_the_limit(name):
    coding = name.split("-")[0]
    assert decode(CODINGS[name](BODY), coding.upper(), 1000) == BODY
    bomb = CODINGS[name](b"0" * 40_000_000)
    assert len(bomb) < 50_000  # tens of kilobytes on the wire ...
    with pytest.raises(TooLarge):
        decode(bomb, coding, 1_000_000)  # ... refused once past a megabyte, never expanded whole


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_garbage_or_truncated_data_is_refused(coding):
    with pytest.raises(ValueError):
        decode(b"not compressed at all", coding, 1000)
    whole = CODINGS[coding](BODY * 50)
    with pytest.raises(ValueError):
        decode(whole[: len(whole) // 2], coding, 100_000)


@pytest.mark.parametrize("encoding", ["", "identity", " Identity "])
def test_identity_passes_as_it_is(encoding):
    assert decode(BODY, encoding, 10) == BODY  # the wire size is checked elsewhere, as the body arrives


def test_unknown_codings_are_refused():
    with pytest.raises(ValueError, match="unknown content-encoding"):
        decode(BODY, "compress", 1000)
    with pytest.raises(ValueError):
        decode(BODY, "gzip, br", 1000)
