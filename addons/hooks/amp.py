"""Addons: the Amp CLI's server — provider calls served locally when possible, the rest proxied to Amp.

`Amp` (right after the Router) handles the routes `routes.classify` marks for Amp:

- `amp_provider` (`/api/provider/<p>/…`): when the requested model — after `ampcode.model-mappings`
  — is served by cliproxy, the call becomes an ordinary local route (`chat`, `responses`,
  `messages`, `count_tokens`, `models`) for the format addons and CodexUpstream. Otherwise it goes
  to the Amp upstream untouched (Amp credits are spent, and the log says how to map the model).
- `amp_proxy` (everything else Amp calls): reverse-proxied to `ampcode.upstream-url` with the client's
  credentials replaced by the Amp key.

`AmpAnswers` (after CodexUpstream and FlowNotes) fixes up locally served answers for Amp (tool-name casing, the model name Amp asked for)
and notes on each flow which way it went. Settings are read from the runtime at request time, so
config edits apply without a restart. The pure logic lives in `amp_settings` and `amp_wire`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mitmproxy import http

from cliproxy.addons.core import access
from cliproxy.addons.core.amp_settings import Decision, decide
from cliproxy.addons.core.amp_wire import (
    LOCAL_KINDS,
    ResponseRewriter,
    SSERewriter,
    forwarded_query,
    join_url,
    provider_kind,
    repair_hidden_gzip,
    rewrite_sse,
    sanitize_body,
    strip_beta,
    tool_casing,
    upstream_headers,
)
from cliproxy.addons.core.failover import FAILURE_HEADER
from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.hooks.client_api import serve
from cliproxy.addons.mitm.flowstate import FlowState, guarded, on_claimed, reply_json, state
from cliproxy.addons.translate import encoding as content_encoding
from cliproxy.addons.translate import errors

logger = logging.getLogger(__name__)

#: Amp's own wire bodies for the control-plane routes.
NOT_CONFIGURED = {"error": "amp upstream proxy not available"}
LOCALHOST_ONLY = {"error": "Access denied: management routes restricted to localhost"}
UNREACHABLE = {"error": "amp_upstream_proxy_error", "message": "Failed to reach Amp upstream"}
_AMP_ROUTES = ("amp_provider", "amp_proxy")


def _reply(flow: http.HTTPFlow, status: int, body: dict[str, Any], note: str) -> None:
    reply_json(flow, status, json.dumps(body).encode())
    if (st := state(flow)) is not None:  # claimed in both callers; the answer stands either way
        st.update({"amp_note": note, "error": f"{status} {body.get('message') or body['error']}"})
    flow.marked = ":warning:"


def _no_upstream(kind: str, path: str, requested: str | None) -> errors.ProxyError:
    """The provider call cliproxy cannot serve, with no Amp upstream to fall back to (client's format)."""
    hint = (
        f"set ampcode.upstream-url, or map the model to a local one: "
        f'ampcode.model-mappings: [{{from: "{requested or "<model>"}", to: "gpt-6.1-sol"}}]'
    )
    if kind in LOCAL_KINDS:
        return errors.ProxyError(
            404,
            f"model {requested!r} is not served by cliproxy and no Amp upstream is configured; {hint}",
            "invalid_request_error",
            "model_not_found",
        )
    return errors.ProxyError(
        501,
        f"cliproxy cannot serve {path} itself and no Amp upstream is configured (ampcode.upstream-url)",
        "server_error",
        "not_implemented",
    )


class Amp:
    name = "cliproxy_amp"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    # -- request side --------------------------------------------------------------------------
    @on_claimed(*_AMP_ROUTES)
    def requestheaders(self, flow: http.HTTPFlow, st: FlowState) -> None:
        if st["route"] == "amp_provider":
            provider, kind, gemini_model = provider_kind(flow.request.path, flow.request.method)
            st.update({"amp_kind": kind, "amp_model": gemini_model})
            if kind == "models" and provider != "google":  # the Router answers it, in the provider's shape
                st.update(
                    {
                        "route": "models",
                        "format": "anthropic" if provider == "anthropic" else "openai",
                        "amp": "local",
                        "amp_note": "amp: local model list",
                    }
                )
                return
            if kind not in ("gemini", "passthrough"):
                return  # provider aliases skip the management checks (Google's v1beta1 route does not)
        amp = self.runtime.config.ampcode
        if not amp.enabled:
            _reply(flow, 503, NOT_CONFIGURED, "amp: no upstream configured (ampcode.upstream-url)")
            return
        peer = flow.client_conn.peername[0] if flow.client_conn.peername else None
        if amp.restrict_management_to_localhost and not access.is_loopback(peer):  # the TCP peer; X-Forwarded-For is ignored
            logger.warning(
                "amp: refused %s %s from %s: management routes are restricted to localhost",
                flow.request.method,
                flow.request.path.split("?")[0],
                peer,
            )
            _reply(flow, 403, LOCALHOST_ONLY, "amp: refused (restrict-management-to-localhost)")

    @on_claimed(*_AMP_ROUTES)
    def request(self, flow: http.HTTPFlow, st: FlowState) -> None:
        if st["route"] == "amp_proxy" or st.get("amp_kind") == "passthrough":
            self._forward(flow, st, "amp: upstream")
            logger.debug("amp: %s %s -> Amp upstream", flow.request.method, flow.request.path.split("?")[0])
            return
        self._provider(flow, st)

    def _provider(self, flow: http.HTTPFlow, st: FlowState) -> None:
        kind, path = st["amp_kind"], flow.request.path.split("?")[0]
        if kind == "unknown":
            raise errors.ProxyError(
                404, f"cliproxy does not serve {flow.request.method} {path} for Amp", "invalid_request_error", "not_found"
            )
        if kind in ("models", "gemini_models"):
            self._gemini_models(flow, st, path)
            return
        try:
            raw = content_encoding.decode(
                flow.request.raw_content or b"", flow.request.headers.get("content-encoding", ""), self.runtime.config.max_request_bytes
            )
            body = json.loads(raw) if raw.strip() else None
        except content_encoding.TooLarge:
            raise errors.request_too_large(self.runtime.config.max_request_bytes) from None
        except (ValueError, UnicodeDecodeError):
            body = None  # the local translator (or the upstream) says what is wrong with it
        if sanitize_body(body):
            self._set_body(flow, body)
        requested = body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else st.get("amp_model")
        amp = self.runtime.config.ampcode
        if kind in LOCAL_KINDS:
            decision = decide(requested, amp.mapper, self._served, amp.force_model_mappings) if requested else Decision("local", "")
            if decision.route != "upstream":
                self._local(flow, st, kind, body, requested, decision)
                return
        st["amp_model"] = requested
        if not amp.enabled:
            raise _no_upstream(kind, path, requested)
        if kind in LOCAL_KINDS:
            logger.warning(
                "amp: AMP_CREDITS model_id=%s %s: forwarding to the Amp upstream (uses Amp credits). To use a local "
                'model instead, add to config: ampcode.model-mappings: [{from: "%s", to: "<local model, e.g. gpt-6.1-sol>"}]',
                requested,
                path,
                requested,
            )
        else:
            logger.warning(
                "amp: AMP_CREDITS model_id=%s %s: forwarding to the Amp upstream (uses Amp credits); "
                "cliproxy has no local translator for this API",
                requested,
                path,
            )
        self._forward(flow, st, f"amp: upstream (amp credits){' ' + requested if requested else ''}")

    def _served(self, model: str) -> bool:
        """Whether cliproxy serves `model` itself (its catalog, aliases included, or an API-key upstream alias)."""
        config = self.runtime.config
        catalog = config.settings.catalog
        return catalog.info(catalog.resolve(model).model) is not None or any(
            alias == model for up in config.api_key_upstreams for _, alias in up.models
        )

    def _local(self, flow: http.HTTPFlow, st: FlowState, kind: str, body: Any, requested: str | None, decision: Decision) -> None:
        route, fmt, local_path = LOCAL_KINDS[kind]
        if decision.route == "mapped":
            body["model"] = decision.model
            self._set_body(flow, body)
        req = flow.request
        original, _, query = req.path.partition("?")
        req.path = local_path + (f"?{query}" if query else "")
        if beta := req.headers.get("anthropic-beta"):
            if stripped := strip_beta(beta):
                req.headers["anthropic-beta"] = stripped
            else:
                req.headers.pop("anthropic-beta")
        note = f"amp: local {decision.model or '?'}" + (f" (mapped from {requested})" if decision.route == "mapped" else "")
        st.update(
            {
                "route": route,
                "format": fmt,
                "amp": decision.route,
                "amp_model": requested,
                "amp_note": note,
                "amp_casing": tool_casing(body),
            }
        )
        logger.info("%s: %s %s", note, req.method, original)
        serve(flow, st, self.runtime, body)  # translated here, whatever the order of the addons

    @staticmethod
    def _set_body(flow: http.HTTPFlow, body: Any) -> None:
        flow.request.headers.pop("content-encoding", None)
        flow.request.content = json.dumps(body, ensure_ascii=False).encode()

    def _gemini_models(self, flow: http.HTTPFlow, st: FlowState, path: str) -> None:
        """Google's model list (or one model) in Gemini's shape, answered locally."""
        config = self.runtime.config
        ids = [m.id for m in config.settings.catalog.listed()]
        ids += [alias for up in config.api_key_upstreams for _, alias in up.models if alias not in ids]

        def model(i: str) -> dict[str, Any]:
            return {"name": f"models/{i}", "displayName": i, "supportedGenerationMethods": ["generateContent", "streamGenerateContent"]}

        st["amp_note"] = "amp: local model list"
        if "/models/" in path:
            wanted = path.rsplit("/models/", 1)[1]
            if wanted not in ids:
                raise errors.ProxyError(404, f"model {wanted!r} is not served by cliproxy", "invalid_request_error", "model_not_found")
            reply_json(flow, 200, json.dumps(model(wanted)).encode())
            return
        reply_json(flow, 200, json.dumps({"models": [model(i) for i in ids]}).encode())

    def _forward(self, flow: http.HTTPFlow, st: FlowState, note: str) -> None:
        """Point the request at the Amp upstream: same path and query, the Amp key instead of the client's."""
        amp = self.runtime.config.ampcode
        req = flow.request
        api_keys = self.runtime.config.api_keys
        presented = access.presented_keys(req.headers) + [v for k, v in req.query.items(multi=True) if k in ("key", "auth_token")]
        principal = next((k for k in presented if access.key_valid([k], api_keys)), None)
        amp_key = amp.amp_key(principal)
        if not amp_key:
            # No Amp key on the proxy: a credential the client sent that is not one of the proxy's own
            # client keys is the client's Amp key, meant for this very upstream.
            amp_key = next((k for k in presented if k and not access.key_valid([k], api_keys)), "")
        path, _, query = req.path.partition("?")
        fields = upstream_headers(req.headers.items(multi=True), amp_key)
        req.headers = http.Headers([(k.encode(), v.encode()) for k, v in fields])
        req.url = join_url(amp.upstream_url, path, forwarded_query(query, api_keys))  # also sets Host / :authority
        st.update({"passthrough": True, "amp": "upstream", "amp_note": note})

    # -- response side (upstream flows) -----------------------------------------------------------
    @on_claimed(answered=True)
    def responseheaders(self, flow: http.HTTPFlow, st: FlowState) -> None:
        if st.get("amp") != "upstream" or not flow.response:
            return
        if "text/event-stream" in flow.response.headers.get("content-type", ""):
            flow.response.stream = True  # pass Amp's own event streams through as they come

    @on_claimed(answered=True)
    def response(self, flow: http.HTTPFlow, st: FlowState) -> None:
        resp = flow.response
        if st.get("amp") != "upstream" or resp is None or resp.stream:
            return
        if FAILURE_HEADER in resp.headers:
            # mitmproxy answers an unreachable upstream with an HTML 502 that its `error` hook cannot
            # change; cliproxy's upstream_failures patch hands claimed flows to this hook instead, with a
            # marked synthetic 502, so Amp gets its own JSON error here at no cost per request.
            logger.error("amp: cannot reach the Amp upstream for %s %s", flow.request.method, flow.request.path.split("?")[0])
            _reply(flow, 502, UNREACHABLE, "amp: upstream unreachable")
            return
        if "content-encoding" not in resp.headers and (fixed := repair_hidden_gzip(resp.raw_content or b"")) is not None:
            resp.content = fixed  # the upstream sent gzip without saying so
            st["amp_note"] = st.get("amp_note", "amp: upstream") + " (gzip repaired)"


class AmpAnswers:
    """Fixes up locally served answers for Amp and notes on each Amp flow which way it went.

    Sits after CodexUpstream (whose stream translator it wraps) and after FlowNotes (whose flow
    comment it prefixes).
    """

    name = "cliproxy_amp_answers"

    @staticmethod
    def _rewriter(st: FlowState | None) -> ResponseRewriter | None:
        if st is None or st.get("amp") not in ("local", "mapped") or st.get("route") == "models":
            return None
        return ResponseRewriter(st.get("amp_model"), dict(st.get("amp_casing") or {}))

    @guarded
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        rewriter = self._rewriter(state(flow))
        if rewriter is not None and flow.response is not None and callable(flow.response.stream):
            flow.response.stream = SSERewriter(flow.response.stream, rewriter)

    @guarded
    def response(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        rewriter = self._rewriter(st)
        resp = flow.response
        if rewriter is not None and resp is not None and not resp.stream and resp.status_code == 200 and resp.raw_content:
            ctype = resp.headers.get("content-type", "")
            if "text/event-stream" in ctype:
                resp.content = rewrite_sse(resp.content or b"", rewriter)
            elif "json" in ctype and (body := rewriter.rewrite_body(resp.content or b"")) is not None:
                resp.content = body
        self._note(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._note(flow)

    @staticmethod
    def _note(flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is None or not st.get("amp_note"):
            return
        note = st["amp_note"]
        if not (flow.comment or "").startswith(note):
            flow.comment = f"{note} · {flow.comment}" if flow.comment else note
