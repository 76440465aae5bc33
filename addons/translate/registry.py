"""The client APIs cliproxy serves, as one table: for each route, the client's wire format and the
three translators that serve it (request → Codex body, Codex events → client stream, finished
stream → client JSON). Hooks look routes up here instead of branching on route names."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cliproxy.addons.translate import anthropic, anthropic_stream, chat, compact, images, responses
from cliproxy.addons.translate.codex_body import CodexCall, Settings
from cliproxy.addons.translate.stream import CodexStream, Collector, disconnected_error

ClientFormat = Literal["openai", "anthropic"]
#: body, translation settings, the client's headers (lower-case names) → the Codex call
RequestTranslator = Callable[[Any, Settings, Mapping[str, str]], CodexCall]


@dataclass(frozen=True, slots=True)
class ClientApi:
    route: str
    format: ClientFormat
    to_codex: RequestTranslator
    stream: Callable[[str, dict[str, Any]], CodexStream]  # (upstream model, options) → per-flow translator
    aggregate: Callable[[Collector, str, dict[str, Any]], dict[str, Any]]  # (finished stream, model, options) → JSON answer


def _codex_call(body: Any, settings: Settings, headers: Mapping[str, str]) -> CodexCall:
    """The Codex CLI's own body (pooled): the same faithful pass-through as `/v1/responses`; it streams
    unless it says otherwise."""
    return responses.request_to_codex(body, settings, headers, stream_default=True)


APIS: dict[str, ClientApi] = {
    api.route: api
    for api in (
        ClientApi(
            "chat",
            "openai",
            lambda body, settings, headers: chat.request_to_codex(body, settings),
            lambda model, options: chat.ChatStream(model, **options),
            lambda c, model, options: chat.completion_from(
                c, model, options.get("reasoning", "reasoning_content"), options.get("tool_names")
            ),
        ),
        ClientApi(
            "responses",
            "openai",
            lambda body, settings, headers: responses.request_to_codex(body, settings, headers),
            lambda model, options: responses.ResponsesStream(options.get("limits")),
            lambda c, model, options: c.final_response(),
        ),
        ClientApi(
            "messages",
            "anthropic",
            lambda body, settings, headers: anthropic.request_to_codex(body, settings, session=headers.get("x-claude-code-session-id")),
            lambda model, options: anthropic_stream.MessagesStream(model, **options),
            lambda c, model, options: anthropic_stream.message_from(c, model, **options),
        ),
        ClientApi(
            "codex", "openai", _codex_call, lambda model, options: responses.ResponsesStream(), lambda c, model, options: c.final_response()
        ),
        # Legacy remote compaction (JSON only: the stream translator serves no client, the API table wants one).
        ClientApi(
            "compact",
            "openai",
            lambda body, settings, headers: compact.request_to_codex(body, settings),
            lambda model, options: responses.ResponsesStream(),
            lambda c, model, options: compact.answer(c),
        ),
        ClientApi(
            "codex_compact",
            "openai",
            lambda body, settings, headers: compact.codex_request_to_codex(body, settings),
            lambda model, options: responses.ResponsesStream(),
            lambda c, model, options: compact.answer(c),
        ),
        # Images through the `/responses` fallback (the native endpoints are tried first, by hooks.images):
        # JSON only, the stream translator serves no client.
        ClientApi(
            "images_generations",
            "openai",
            lambda body, settings, headers: images.responses_call(images.parse(body, edit=False)),
            lambda model, options: responses.ResponsesStream(),
            lambda c, model, options: images.answer_from_stream(c, options),
        ),
        ClientApi(
            "images_edits",
            "openai",
            lambda body, settings, headers: images.responses_call(images.parse(body, edit=True)),
            lambda model, options: responses.ResponsesStream(),
            lambda c, model, options: images.answer_from_stream(c, options),
        ),
    )
}


def stream_translator(route: str, model: str, options: dict[str, Any]) -> CodexStream:
    """A fresh per-flow stream translator for a client route."""
    return APIS[route].stream(model, options)


def aggregate(route: str, collector: Collector, model: str, options: dict[str, Any]) -> dict[str, Any]:
    """The non-stream answer for a client route, from a finished Codex stream.

    Raises ProxyError when the stream failed or ended before its terminal event.
    """
    if collector.error is not None:
        raise collector.error
    if not collector.terminal:
        raise disconnected_error()
    return APIS[route].aggregate(collector, model, options)
