"""cliproxy: serve OpenAI, Anthropic and Amp clients from a ChatGPT subscription, inside mitmproxy.

    mitmdump -s addons/cliproxy.py        (or mitmweb -s addons/cliproxy.py)

Gives mitmproxy's regular proxy on :8080 (for HTTPS_PROXY users) and a base-URL endpoint on
127.0.0.1:8317 (`cliproxy_listen`). The addons below run in this order for every flow; each one
handles one concern. The protocol translators they use live in `addons/translate/` and the
account logic in `auth/`; neither imports mitmproxy.
"""

from addons import http_framing, upstream_failures
from addons.amp import Amp, AmpAnswers
from addons.anthropic_api import AnthropicApi
from addons.codex_cli import CodexCliPooling
from addons.codex_upstream import CodexUpstream
from addons.deadline import UpstreamDeadline
from addons.flowstate import Guard
from addons.listener import Listener
from addons.notes import FlowNotes
from addons.openai_api import OpenAIApi
from addons.router import Router
from addons.runtime import Runtime
from addons.settings import Settings

upstream_failures.install()  # upstream failures end in the client's format, not mitmproxy's HTML
http_framing.install()  # so do HTTP/1 framing faults; request bodies are counted as they arrive

runtime = Runtime()

addons = [
    Listener(),  # base-URL listener, lazy connections, TLS pass-through for other hosts
    Settings(runtime),  # config file + auth dir, hot reload
    Router(runtime),  # claims cliproxy's requests, client keys, local answers
    Amp(runtime),  # Amp CLI: provider calls served locally or sent to ampcode.com, control plane proxied
    OpenAIApi(runtime),  # /v1/chat/completions, /v1/responses → Codex bodies
    AnthropicApi(runtime),  # /v1/messages → Codex bodies, /v1/messages/count_tokens answered locally
    CodexCliPooling(runtime),  # the official Codex CLI on chatgpt.com, when pooling is switched on
    CodexUpstream(runtime),  # account choice, rewrite onto the backend, answer translation
    UpstreamDeadline(runtime),  # an upstream silent for request-timeout-seconds is given up (and failed over)
    Guard(),  # a claimed flow never leaves unmodified
    FlowNotes(),  # flow comments, masked secrets, SSE content view, CA hints
    AmpAnswers(),  # Amp fix-ups of local answers (wraps CodexUpstream's stream), Amp's flow notes
]
