"""Addon: points translated requests at the Codex backend with a pool account, and translates answers.

- `request`: picks a credential (refreshing its token when needed) and rewrites URL and headers.
- `responseheaders`: for streaming clients, installs the per-flow stream translator.
- `response`: aggregates buffered streams for non-streaming clients, maps upstream errors into the
  client's format.
"""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from typing import Any

from mitmproxy import http
from mitmproxy.net.http.url import hostport

from .flowstate import guarded, reply_json, state
from .runtime import Credential, Runtime
from .translate import errors, registry
from .translate.stream import CodexStream, collect

logger = logging.getLogger(__name__)

ORIGINATOR = "codex_cli_rs"
USER_AGENT = "codex_cli_rs/0.169.0 (cliproxy)"
#: Client headers worth keeping upstream (Codex CLI session and turn metadata help prompt caching).
FORWARDED = ("session_id", "session-id", "conversation_id", "thread-id", "x-client-request-id", "version")


def upstream_headers(client: http.Headers, cred: Credential, host: str, cache_key: str | None) -> http.Headers:
    fields: list[tuple[str, str]] = [("host", host), *cred.headers]
    fields += [
        ("content-type", "application/json"),
        ("accept", "text/event-stream"),
        ("accept-encoding", "identity"),
        ("originator", ORIGINATOR),
        ("user-agent", USER_AGENT),
    ]
    for name, value in client.items(multi=True):
        low = name.lower()
        if low in FORWARDED or low.startswith("x-codex-"):
            fields.append((low, value))
    if cache_key and not any(k in client for k in ("session_id", "session-id")):
        fields.append(("session-id", cache_key))
    return http.Headers([(k.encode(), v.encode()) for k, v in fields])


class _Decoding:
    """Feeds a translator with decompressed bytes when the upstream compressed the stream anyway."""

    def __init__(self, translator: CodexStream, encoding: str) -> None:
        self.translator = translator
        if encoding == "br":
            import brotli  # a mitmproxy dependency

            self._d = brotli.Decompressor()
            self._feed, self._flush = self._d.process, lambda: b""
        else:
            self._d = zlib.decompressobj(wbits=31 if encoding == "gzip" else zlib.MAX_WBITS)
            self._feed, self._flush = self._d.decompress, self._d.flush

    def __call__(self, data: bytes) -> list[bytes]:
        if data:
            return self.translator(self._feed(data))
        return self.translator(self._flush()) + self.translator(b"")


def no_credential(runtime: Runtime, model: str) -> errors.ProxyError:
    wait = runtime.pool.soonest(model)
    if wait is not None and wait > 0:
        seconds = math.ceil(wait)
        return errors.ProxyError(
            429, f"All credentials for model {model} are cooling down; retry in {seconds}s",
            "rate_limit_error", "model_cooldown", retry_after=seconds,
            extra={"model": model, "reset_seconds": seconds},
        )
    return errors.ProxyError(
        503, f"no ChatGPT account is available for model {model}: run `cliproxy login` "
        f"(auth dir {runtime.config.auth_dir})", "server_error", "auth_unavailable",
    )


class CodexUpstream:
    name = "cliproxy_codex"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @guarded
    async def request(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is None or not st.get("ready") or flow.response:
            return
        cred = await self.runtime.credential(st["model"])
        if cred is None:
            raise no_credential(self.runtime, st["model"])
        self.point(flow, cred)

    def point(self, flow: http.HTTPFlow, cred: Credential) -> None:
        st = state(flow)
        req = flow.request
        client_headers = req.headers.copy()
        req.method = "POST"
        req.url = cred.url
        req.headers = upstream_headers(client_headers, cred, hostport(req.scheme, req.host, req.port), st.get("cache_key"))
        req.headers["content-length"] = str(len(req.raw_content or b""))
        st.update(upstream=True, account=cred.member.label, account_key=cred.member.key, t_upstream=time.time())

    @guarded
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is None or not st.get("upstream"):
            return
        resp = flow.response
        st["status"] = resp.status_code
        is_sse = resp.headers.get("content-type", "").startswith("text/event-stream")
        if resp.status_code != 200 or not is_sse or not st["stream"]:
            return  # buffered: aggregated or mapped to an error in `response`
        translator = registry.stream_translator(st["route"], st["model"], st["options"])
        encoding = resp.headers.get("content-encoding", "").strip().lower()
        fields = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache")]
        if flow.request.http_version == "HTTP/1.1":
            fields.append(("transfer-encoding", "chunked"))
        resp.headers = http.Headers([(k.encode(), v.encode()) for k, v in fields])
        resp.stream = _Decoding(translator, encoding) if encoding in ("gzip", "deflate", "br") else translator
        st["streamed"] = True

    @guarded
    def response(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is None or not st.get("upstream"):
            return
        resp = flow.response
        if st.get("streamed"):
            stream = resp.stream
            translator = getattr(stream, "translator", stream)
            if isinstance(translator, CodexStream):
                self._record(st, translator.collector)
            return
        is_sse = resp.headers.get("content-type", "").startswith("text/event-stream")
        if resp.status_code != 200 or not is_sse:
            raise errors.from_upstream_response(resp.status_code, resp.content or b"", dict(resp.headers))
        collector = collect(resp.content or b"")
        self._record(st, collector)
        body = registry.aggregate(st["route"], collector, st["model"], st["options"])
        reply_json(flow, 200, json.dumps(body, ensure_ascii=False).encode())

    def error(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is not None and st.get("upstream") and flow.error:
            st["error"] = flow.error.msg
            logger.warning("cliproxy: %s via %s failed: %s", st.get("route"), st.get("account"), flow.error.msg)

    @staticmethod
    def _record(st: dict[str, Any], collector) -> None:
        if collector.usage:
            st["usage"] = {k: collector.usage.get(k) for k in ("input_tokens", "output_tokens", "total_tokens")}
        if collector.error is not None:
            st["error"] = collector.error.message[:200]
