"""Checks shared by every part of the config file (pure; no mitmproxy import).

Every error names the key and says what was expected, so a user can fix the file from one log line.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """The config file is unusable; the message names the key and what is expected."""


def expect(value: Any, kind: type | tuple[type, ...], key: str, what: str) -> Any:
    """`value` when it is of `kind`; YAML's booleans never pass for numbers or strings (bool is an int in Python)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ConfigError(f"{key}: expected {what}, got {type(value).__name__} {value!r}")
    return value


def non_negative(value: Any, key: str, what: str) -> float:
    """A number ≥ 0 (whole or not)."""
    expect(value, (int, float), key, what)
    if value < 0:
        raise ConfigError(f"{key}: expected {what} (0 or more), got {value!r}")
    return value


def url(value: Any, key: str) -> str:
    expect(value, str, key, "a URL string")
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def str_list(value: Any, key: str) -> tuple[str, ...]:
    expect(value, list, key, "a list of strings")
    for i, item in enumerate(value):
        expect(item, str, f"{key}[{i}]", "a string")
    return tuple(value)
