"""Per-flow cliproxy state, the one dispatch of hooks to claimed flows, and the safety net that turns
any failure into a clean client error.

State lives in `flow.metadata["cliproxy"]` as plain values (a `FlowState`), so flows saved with `-w`
stay readable. A flow with that key is *claimed*: cliproxy answers it or rewrites it, and never lets
it leave for its original host unmodified.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Callable
from typing import Any, Literal, TypedDict

from mitmproxy import http

from cliproxy.addons.translate import client_json, errors
from cliproxy.addons.translate import encoding as content_encoding
from cliproxy.addons.translate.codex_body import CodexCall

logger = logging.getLogger(__name__)

KEY = "cliproxy"
CLIENT_HOST = "cliproxy_client_host"  # metadata key: the Host a base-URL client sent (hooks.listener keeps it)
_dumps = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(…, ensure_ascii=False) without building an encoder per call
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024  # for flows claimed without a limit of their own (the config's default)


class FlowState(TypedDict, total=False):
    """What cliproxy knows about one claimed flow. Plain values only (mitmproxy serialises metadata)."""

    # claimed (Router)
    route: str  # chat | responses | messages | codex | models | amp_provider | amp_proxy | ... (see core.routes)
    format: Literal["openai", "anthropic"]  # the client's wire format, for errors
    t0: float  # time the request was claimed
    model_id: str  # GET /v1/models/{id}
    max_request_bytes: int  # the body limit in force, counted by mitm.http_framing as the body arrives
    body_refused: bool  # answered 413 while the body was still arriving; the rest is drained
    cors_origin: str  # the request's Origin, when `cors-origins` lists it
    ids: list[str]  # stored responses and conversations: the ids in the path
    # the two sides of the exchange, for mitmweb (hooks.notes); request/response states with secrets masked
    door: str  # base URL | proxy: the listener the client came through
    client_request: dict[str, Any]  # the request as the client sent it, put back on the flow once it is answered
    upstream_request: dict[str, Any]  # the rewritten request, as last sent upstream
    upstream_answer: dict[str, Any]  # the upstream's answer as it arrived (status, headers, body; streams when stored)
    shown: bool  # the client's request is back on the flow
    rest: str  # a 429's cause for the comment: the accounts resting for the model, why and until when
    # translated (client API hooks)
    ready: bool  # a Codex body is in place; CodexUpstream takes it from here
    stream: bool  # the client asked for a stream
    client_model: str | None  # the model name the client sent (None: a WebSocket turn that named none)
    model: str  # the upstream model slug
    effort: str
    effort_clamped: str  # the effort asked for, when the model's levels did not hold it (the comment says so)
    options: dict[str, Any]  # plain values for the route's stream translator and aggregator
    cache_key: str | None  # prompt_cache_key: keeps a conversation on one account
    extra_headers: list[tuple[str, str]]  # upstream headers the body's form needs (the Responses Lite header)
    passthrough: bool  # forwarded as it is (Amp upstream, unpooled Codex CLI)
    book: dict[str, Any]  # /v1/responses: how to keep the answer (owner, store, previous, conversation, context length)
    booked: bool  # the answer was handed to the store
    images_path: str  # /v1/images/*: native (the backend's image endpoints) | responses (the image tool forced)
    tier_asked: str  # the body's service_tier, when the client asked for one (the ledger)
    # upstream (CodexUpstream)
    upstream: bool  # pointed at the backend
    forwarded_headers: list[tuple[str, str]]  # client headers kept upstream, checked once
    account: str  # label of the member serving it
    account_key: str
    tried: list[str]  # member keys tried, in order
    tried_labels: list[str]
    failover: int  # how many times another account was tried
    answered: bool  # the proxy read the upstream itself (non-stream clients) and answered
    streamed: bool  # a stream translator is installed on the response
    status: int  # the upstream's status
    quota: str  # the account's quota use, for the comment
    t_headers: float  # time the response headers arrived
    timed_out: int  # the deadline (seconds) that gave up on the upstream
    request_id: str  # the upstream's x-request-id, passed on to the client
    ended_locally: str  # stop | length: cliproxy ended the answer at the client's stop sequence or token limit
    # Responses over WebSocket (hooks.responses_ws)
    websocket: bool  # a Responses WebSocket: the handshake was pointed at the backend, frames are relayed
    ws_close_as: list[Any]  # [code, reason] the client gets when the upstream ends the socket (mitm.websocket_relay)
    ws_quiet_deltas: bool  # the backend's delta messages are relayed without the websocket_message hook (mitm.websocket_relay)
    turns: list[dict[str, Any]]  # one entry per finished turn on the socket: model, effort, usage, ttfe, seconds, error
    # outcome
    usage: dict[str, Any]
    image_usage: dict[str, Any]  # image generation's own usage (the Images answer's, or a Responses answer's `tool_usage.image_gen`)
    service_tier: str  # the tier that served, as the answer's `response.service_tier` says
    complete: bool  # the answer ended with its terminal event
    error: str  # what went wrong, for the comment
    # usage ledger (hooks.ledger)
    client_key: str  # the client key's identity (`key:<hash>` or `loopback`), taken before the headers are rewritten
    ledgered: bool  # the flow's row was queued
    turns_ledgered: int  # WebSocket turns queued so far
    # Amp
    amp: str  # local | mapped | upstream
    amp_kind: str
    amp_model: str | None
    amp_note: str
    amp_casing: dict[str, str | None]


def state(flow: http.HTTPFlow) -> FlowState | None:
    return flow.metadata.get(KEY)


def claim(flow: http.HTTPFlow, route: str, fmt: Literal["openai", "anthropic"]) -> FlowState:
    st: FlowState = {"route": route, "format": fmt}
    flow.metadata[KEY] = st
    return st


def reply_json(flow: http.HTTPFlow, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    flow.response = http.Response.make(status, body, {"content-type": "application/json", **(headers or {})})


def reply_error(flow: http.HTTPFlow, err: errors.ProxyError) -> None:
    st = state(flow) or {}
    status, headers, body = errors.render(err, st.get("format", "openai"))
    flow.response = http.Response.make(status, body, headers)
    st["error"] = f"{status} {err.message[:200]}"
    flow.marked = ":warning:"


def read_json(flow: http.HTTPFlow) -> Any:
    """The request body as JSON, or a 400 that says what is wrong with it."""
    encoding = flow.request.headers.get("content-encoding", "")
    limit = (state(flow) or {}).get("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES)
    try:  # decoded with a bound: a small compressed body can expand to gigabytes
        raw = content_encoding.decode(flow.request.raw_content or b"", encoding, limit)
    except content_encoding.TooLarge:
        raise errors.request_too_large(limit) from None
    except ValueError:
        raise errors.bad_request(
            f"the request body cannot be decoded as content-encoding {encoding[:40]!r}; send it as {', '.join(content_encoding.ENCODINGS)}"
        ) from None
    if not raw.strip():
        raise errors.bad_request("the request body is empty; send a JSON object")
    return client_json.parse(raw, "the request body")


def set_codex_body(flow: http.HTTPFlow, st: FlowState, call: CodexCall) -> None:
    """Hand a translated request over to CodexUpstream (shared by every client format)."""
    flow.request.headers.pop("content-encoding", None)
    try:
        flow.request.content = _dumps(call.body).encode()
    except RecursionError:
        raise errors.bad_request("the request body is nested too deeply") from None
    st.update(
        {
            "ready": True,
            "stream": call.stream,
            "model": call.model,
            "effort": call.effort,
            "options": call.options,
            "cache_key": call.body.get("prompt_cache_key"),
            "extra_headers": list(call.headers.items()),
        }
    )
    if call.clamped_from:
        st["effort_clamped"] = call.clamped_from
    if isinstance(tier := call.body.get("service_tier"), str):
        st["tier_asked"] = tier


def guarded(hook):
    """Wrap a hook: a ProxyError becomes that error; any other exception a 500, for claimed flows."""

    def handle(flow: http.HTTPFlow, exc: Exception) -> None:
        if isinstance(exc, errors.ProxyError):
            reply_error(flow, exc)
            return
        if isinstance(exc, (RecursionError, UnicodeEncodeError)) and state(flow) is not None:
            # Only client input reaches these: JSON nested past Python's limit, a lone surrogate escape.
            what = "nested too deeply" if isinstance(exc, RecursionError) else "not encodable as UTF-8 (an unpaired surrogate)"
            reply_error(flow, errors.bad_request(f"the request is {what}"))
            return
        logger.exception("cliproxy: %s hook failed", hook.__name__)
        if state(flow) is not None:
            reply_error(
                flow,
                errors.ProxyError(
                    500, f"cliproxy internal error ({type(exc).__name__}); see the proxy log", "server_error", "internal_error"
                ),
            )

    if inspect.iscoroutinefunction(hook):

        @functools.wraps(hook)
        async def async_wrapper(self, flow: http.HTTPFlow) -> None:
            try:
                await hook(self, flow)
            except Exception as exc:
                handle(flow, exc)

        return async_wrapper

    @functools.wraps(hook)
    def wrapper(self, flow: http.HTTPFlow) -> None:
        try:
            hook(self, flow)
        except Exception as exc:
            handle(flow, exc)

    return wrapper


ClaimedHook = Callable[[Any, http.HTTPFlow, FlowState], Any]


def on_claimed(*routes: str, answered: bool = False) -> Callable[[ClaimedHook], Callable[[Any, http.HTTPFlow], Any]]:
    """The one dispatch of a hook to the flows it serves: claimed flows on one of `routes` (any route
    when none is named) that have no answer yet (or any, with `answered=True`). The hook receives the
    flow's state; its failures become client errors as with `guarded`."""

    def wrap(hook: ClaimedHook) -> Callable[[Any, http.HTTPFlow], Any]:
        def applies(flow: http.HTTPFlow) -> FlowState | None:
            st = state(flow)
            if st is None or (flow.response is not None and not answered) or (routes and st.get("route") not in routes):
                return None
            return st

        if inspect.iscoroutinefunction(hook):

            async def run_async(self: Any, flow: http.HTTPFlow) -> None:
                if (st := applies(flow)) is not None:
                    await hook(self, flow, st)

            return guarded(functools.wraps(hook)(run_async))

        def run(self: Any, flow: http.HTTPFlow) -> None:
            if (st := applies(flow)) is not None:
                hook(self, flow, st)

        return guarded(functools.wraps(hook)(run))

    return wrap
