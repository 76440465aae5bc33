"""The version fence of cliproxy's patches of mitmproxy internals: the one major version they were written
against, and a refusal that says how to install it."""

from __future__ import annotations

from mitmproxy import version

SUPPORTED_MAJOR = 12


def supported(found: str = version.VERSION) -> bool:
    """The running mitmproxy is the major version the patches were written against."""
    return found.split(".", 1)[0] == str(SUPPORTED_MAJOR)


class UnsupportedMitmproxy(RuntimeError):
    """mitmproxy is not the version these internals were written against."""


def require(owner: type, internals: tuple[str, ...], purpose: str, found: str = version.VERSION) -> None:
    """Refuse another major version, or a `owner` that lacks one of the `internals` a patch wraps."""
    if not supported(found) or any(not hasattr(owner, name) for name in internals):
        raise UnsupportedMitmproxy(
            f"cliproxy needs mitmproxy {SUPPORTED_MAJOR}.x (found {found}): it adapts a few of its internals "
            f"{purpose}. Install with: pip install 'mitmproxy>={SUPPORTED_MAJOR},<{SUPPORTED_MAJOR + 1}'"
        )
