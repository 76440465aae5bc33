"""One place that knows which translator serves which client route."""

from __future__ import annotations

from typing import Any

from cliproxy.addons.translate import anthropic_stream, chat, errors, responses
from cliproxy.addons.translate.stream import CodexStream, Collector, disconnected_error


def stream_translator(route: str, model: str, options: dict[str, Any]) -> CodexStream:
    """A fresh per-flow stream translator for a client route."""
    if route == "chat":
        return chat.ChatStream(model, **options)
    if route in ("responses", "codex"):
        return responses.ResponsesStream()
    if route == "messages":
        return anthropic_stream.MessagesStream(model, **options)
    raise ValueError(f"no stream translator for route {route!r}")


def aggregate(route: str, collector: Collector, model: str, options: dict[str, Any]) -> dict[str, Any]:
    """The non-stream answer for a client route, from a finished Codex stream.

    Raises ProxyError when the stream failed or ended before its terminal event.
    """
    if collector.error is not None:
        raise collector.error
    if not collector.terminal:
        raise disconnected_error()
    if route == "chat":
        return chat.completion_from(collector, model, options.get("reasoning", "reasoning_content"), options.get("tool_names"))
    if route in ("responses", "codex"):
        return collector.final_response()
    if route == "messages":
        return anthropic_stream.message_from(collector, model, **options)
    raise errors.ProxyError(500, f"no aggregator for route {route!r}")
