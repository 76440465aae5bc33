"""Client JSON (request bodies, WebSocket frames) parsed into Python, or a 400 that says what is wrong (pure)."""

from __future__ import annotations

import json
from typing import Any

from cliproxy.addons.translate import errors


def parse(raw: bytes, what: str) -> Any:
    """`raw` as JSON; `what` names it in errors ("the request body", "the WebSocket frame").

    Refused: bytes that are not UTF-8, invalid JSON, nesting past Python's recursion limit, and
    unpaired UTF-16 surrogate escapes (`\\ud800` alone), which JSON allows but UTF-8 cannot carry upstream."""
    try:
        value = json.loads(raw)
    except UnicodeDecodeError:
        raise errors.bad_request(f"{what} is not UTF-8 text") from None
    except ValueError as exc:
        raise errors.bad_request(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise errors.bad_request(f"{what} is nested too deeply") from None
    if b"\\ud" in raw or b"\\uD" in raw:  # escaped surrogates: fine in pairs, unencodable alone
        try:
            json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise errors.bad_request(f"{what} contains an unpaired UTF-16 surrogate (\\ud800-\\udfff) in a string") from None
    return value
