"""What may reach an upstream HTTP header (pure; no mitmproxy import).

A value copied into a header is written onto the wire as it is, so a CR or LF in it starts a new
header, or a new request (RFC 9112 §2.2 forbids both; obs-folding, a line break followed by a
space, is deprecated by RFC 9110 §5.5 and mitmproxy keeps it as `\\r\\n `). Every value cliproxy
sends upstream is checked here: visible ASCII, space and tab only, and not too long. Client values
that fail get a 400 in the client's format; a prompt-cache key that is fine as JSON but not as a
header (non-ASCII, long) is turned into a derived token instead.
"""

from __future__ import annotations

import functools
import hashlib
import platform
import re
import uuid
from collections.abc import Iterable

from cliproxy.addons.translate import errors

MAX_VALUE = 1024  # longest client value forwarded into one header
MAX_TOKEN = 256  # longest cache key copied into `session-id` as it is
_VALUE = re.compile(r"[\t\x20-\x7e]*")
_TOKEN = re.compile(r"[\x21-\x7e]+")
_BREAK = re.compile(r"[\r\n\x00]")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")
_NAMESPACE = uuid.UUID("9d0c2a8e-5a77-4f0e-8f4e-2c7c1f3b6a90")


def safe_value(value: str, limit: int = MAX_VALUE) -> bool:
    """True when `value` can be written into a header as it is."""
    return len(value) <= limit and _VALUE.fullmatch(value) is not None


def check_line_breaks(fields: Iterable[tuple[str, str]]) -> None:
    """Refuse any header with a CR, LF or NUL in its name or value (a folded or smuggled line), 400."""
    for name, value in fields:
        if _BREAK.search(name) or _BREAK.search(value):
            raise errors.bad_request(
                f"header {name.strip()[:40]!r} contains a line break or NUL; folded header lines are not accepted", code="invalid_header"
            )


def check_client_headers(fields: Iterable[tuple[str, str]]) -> None:
    """Refuse client header values that would change the upstream request's framing (400)."""
    for name, value in fields:
        if not safe_value(value):
            raise errors.bad_request(
                f"header {name!r} must be printable ASCII of at most {MAX_VALUE} characters (no CR, LF or other control characters)",
                code="invalid_header",
            )


def check_text(value: str, param: str) -> str:
    """A client string that will be sent upstream: no control characters, no lone surrogates (400)."""
    if _CONTROL.search(value):
        raise errors.bad_request(f"`{param}` must not contain control characters or unpaired UTF-16 surrogates", param)
    return value


def session_token(cache_key: str) -> str:
    """The `session-id` header for a prompt-cache key: the key itself when it is a short visible-ASCII
    token, else a stable UUID derived from it (the same key always gives the same header)."""
    if len(cache_key) <= MAX_TOKEN and _TOKEN.fullmatch(cache_key):
        return cache_key
    return str(uuid.uuid5(_NAMESPACE, hashlib.sha256(cache_key.encode("utf-8", "surrogatepass")).hexdigest()))


_CODEX_ORIGINATOR = re.compile(r"codex_[a-z0-9_]+")


def codex_client(originator: str) -> bool:
    """Whether a client's `originator` names a Codex client (`codex_exec`, `codex_cli_rs`, `codex_vscode`, ...),
    whose own `originator`/`user-agent` then go upstream as they are."""
    return _CODEX_ORIGINATOR.fullmatch(originator.strip()) is not None


def codex_user_agent(originator: str, version: str) -> str:
    """The user-agent the official Codex CLI sends, for this machine:
    `codex_cli_rs/0.169.0 (Debian 12.0.0; x86_64) unknown` (the last word is the terminal, unknown when
    not run in one)."""
    return f"{originator}/{version} ({_os_part()}) unknown"


@functools.cache
def _os_part() -> str:
    """`<OS> <version>; <arch>` as the CLI's os_info crate spells it: `Debian 12.0.0; x86_64`, `Mac OS 14.5.0; arm64`."""
    system, arch = platform.system(), platform.machine() or "unknown"
    name, version = system, platform.release()
    if system == "Linux":
        try:
            release = platform.freedesktop_os_release()
            name = release.get("NAME", "Linux").split(" ")[0]
            version = release.get("VERSION_ID", "")
        except OSError:
            name, version = "Linux", ""
    elif system == "Darwin":
        name, version = "Mac OS", platform.mac_ver()[0]
    parts = [p for p in version.split(".") if p.isdigit()][:3]
    version = ".".join(parts + ["0"] * (3 - len(parts))) if parts else "unknown"
    text = f"{name} {version}; {arch}"
    return text if safe_value(text) else f"unknown; {arch}" if safe_value(arch) else "unknown"
