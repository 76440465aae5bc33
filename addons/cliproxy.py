"""cliproxy: serve OpenAI, Anthropic and Amp clients from a ChatGPT subscription, inside mitmproxy.

    mitmdump -s addons/cliproxy.py        (or mitmweb -s addons/cliproxy.py, or `cliproxy run`)

Gives mitmproxy's regular proxy on :8080 (for HTTPS_PROXY users) and a base-URL endpoint on
127.0.0.1:8317 (`cliproxy_listen`). The addons below run in this order for every flow; each one
handles one concern and lives in `addons/hooks/`. What they decide with is pure and mitmproxy-free:
protocol translation in `addons/translate/`, config, routes, access and failover rules in
`addons/core/`, accounts and the pool in `auth/`.
"""

import sys
from pathlib import Path

# mitmproxy puts this script's folder first on sys.path (and leaves it there); this file's name would
# then shadow the installed `cliproxy` package it imports from.
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != Path(__file__).resolve().parent]

from cliproxy.addons.core.runtime import Runtime  # noqa: E402
from cliproxy.addons.hooks.amp import Amp, AmpAnswers  # noqa: E402
from cliproxy.addons.hooks.catalog import ModelCatalog  # noqa: E402
from cliproxy.addons.hooks.client_access import ClientAccess  # noqa: E402
from cliproxy.addons.hooks.client_api import ClientApis  # noqa: E402
from cliproxy.addons.hooks.codex_cli import CodexCliPooling  # noqa: E402
from cliproxy.addons.hooks.codex_upstream import CodexUpstream  # noqa: E402
from cliproxy.addons.hooks.conventions import HttpConventions  # noqa: E402
from cliproxy.addons.hooks.conversations import Conversations  # noqa: E402
from cliproxy.addons.hooks.deadline import UpstreamDeadline  # noqa: E402
from cliproxy.addons.hooks.guard import Guard, HeadWithoutBody  # noqa: E402
from cliproxy.addons.hooks.heap import StartupHeap  # noqa: E402
from cliproxy.addons.hooks.images import Images  # noqa: E402
from cliproxy.addons.hooks.ledger import UsageLedger  # noqa: E402
from cliproxy.addons.hooks.listener import Listener  # noqa: E402
from cliproxy.addons.hooks.notes import ClientSide, FlowNotes  # noqa: E402
from cliproxy.addons.hooks.quota_probe import QuotaProbe  # noqa: E402
from cliproxy.addons.hooks.responses_ws import ResponsesWebsocket  # noqa: E402
from cliproxy.addons.hooks.router import Router  # noqa: E402
from cliproxy.addons.hooks.settings import Settings  # noqa: E402
from cliproxy.addons.hooks.status import StatusPage  # noqa: E402
from cliproxy.addons.mitm import hook_dispatch, http_framing, stream_reads, upstream_failures, websocket_relay  # noqa: E402

upstream_failures.install()  # upstream failures end in the client's format, not mitmproxy's HTML
http_framing.install()  # so do HTTP/1 framing faults; request bodies are counted as they arrive
stream_reads.install()  # a streamed answer's translator gets each upstream read in one call
websocket_relay.install()  # Responses WebSockets can be closed with a code (1012 replay, 1003, 1008, 1009)
hook_dispatch.install()  # an event visits only the addons that handle it

runtime = Runtime()
conversations = Conversations(runtime)

addons = [
    Listener(),  # base-URL listener, lazy connections, TLS pass-through for other hosts
    Settings(runtime),  # config file + auth dir, hot reload
    ModelCatalog(runtime),  # each account's live model catalog, read at start and kept current
    QuotaProbe(runtime),  # accounts resting on a usage limit: wham/usage re-read, rest lifted when there is room; `rest clear`
    ClientAccess(runtime),  # peers beyond loopback need a client key on every flow (407/401): no open relay
    Router(runtime),  # claims cliproxy's requests, local answers
    StatusPage(runtime),  # GET / on the base-URL listener: the status page; /cliproxy/status.json its data
    ClientSide(),  # keeps the client's request as sent (and the upstream's raw answer) for mitmweb
    Amp(runtime),  # Amp CLI: provider calls served locally or sent to ampcode.com, control plane proxied
    conversations,  # /v1/responses state (previous_response_id, item references, conversations) and stored-state routes
    ClientApis(runtime),  # /v1/chat/completions, /v1/responses, /v1/messages → Codex bodies; count_tokens answered
    CodexCliPooling(runtime),  # the official Codex CLI on chatgpt.com, when pooling is switched on
    Images(runtime),  # /v1/images/*: the backend's native image endpoints, else the `/responses` form (CodexUpstream)
    ResponsesWebsocket(runtime),  # Responses over WebSocket: a pinned pool account, frames translated both ways
    CodexUpstream(runtime, conversations),  # account choice, rewrite onto the backend, answer translation
    UpstreamDeadline(runtime),  # an upstream silent for request-timeout-seconds is given up (and failed over)
    HttpConventions(runtime),  # OPTIONS preflights and CORS for cors-origins; x-request-id on every answer
    Guard(),  # a claimed flow never leaves unmodified
    FlowNotes(runtime),  # flow comments, the client's request back on the flow, content views, CA hints
    AmpAnswers(),  # Amp fix-ups of local answers (wraps CodexUpstream's stream), Amp's flow notes
    HeadWithoutBody(),  # answers to HEAD carry headers only (keep-alive stays in step)
    UsageLedger(runtime),  # one ledger row per finished request or WebSocket turn, written off the request path
    StartupHeap(),  # once running: start-up objects leave the garbage collector's generations (less CPU per request)
]
