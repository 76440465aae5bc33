"""Addon: points translated requests at the Codex backend with a pool account, and translates answers.

- `request`: picks a credential (refreshing its token when needed) and rewrites URL and headers.
- `responseheaders`: for streaming clients, installs the per-flow stream translator.
- `response`: aggregates buffered streams for non-streaming clients, maps upstream errors into the
  client's format.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import zlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import httpx
from mitmproxy import ctx, http
from mitmproxy.net.http import url
from mitmproxy.net.http.url import hostport
from mitmproxy.utils.strutils import always_str

from cliproxy.addons.core.config import DEFAULT_CLIENT_VERSION
from cliproxy.addons.core.failover import FAILURE_HEADER, Attempt, decide
from cliproxy.addons.core.runtime import Credential, Runtime
from cliproxy.addons.hooks.conversations import Conversations
from cliproxy.addons.mitm.exchange import keep_answer
from cliproxy.addons.mitm.flowstate import FlowState, on_claimed, reply_json, state
from cliproxy.addons.mitm.upstream_failures import abandon_upstream
from cliproxy.addons.store.ledger import image_usage_of, usage_fields
from cliproxy.addons.translate import errors, registry
from cliproxy.addons.translate.codex_body import LITE_HEADER
from cliproxy.addons.translate.headers import check_client_headers, codex_client, codex_user_agent, safe_value, session_token
from cliproxy.addons.translate.responses import ResponsesStream
from cliproxy.addons.translate.stream import CodexStream, collect, disconnected_error
from cliproxy.auth.pool import Member, Verdict, judge
from cliproxy.auth.quota import parse_quota, quota_summary

logger = logging.getLogger(__name__)

ORIGINATOR = "codex_cli_rs"
#: Client headers worth keeping upstream: the Codex CLI's session, turn and window metadata (prompt
#: caching, routing), its version, and the Responses Lite header.
FORWARDED = ("session_id", "session-id", "conversation_id", "thread-id", "x-client-request-id", "version", LITE_HEADER)
#: A Codex client's own identity, kept when its `originator` says it is one (`codex_exec`, `codex_cli_rs`, ...).
IDENTITY = ("originator", "user-agent")


def forwarded_headers(client: http.Headers) -> list[tuple[str, str]]:
    """The client headers worth keeping upstream; a value that is not a clean header value is a 400."""
    keep = FORWARDED + (IDENTITY if codex_client(client.get("originator", "")) else ())
    fields = [(k.lower(), v) for k, v in client.items(multi=True) if k.lower() in keep or k.lower().startswith("x-codex-")]
    check_client_headers(fields)
    return fields


@functools.lru_cache(maxsize=64)
def _target(target: str) -> tuple[bytes, str, int, bytes, str]:
    scheme, host, port, path = url.parse(target)
    name = always_str(host, "idna", "strict")
    return scheme, name, port, path, hostport(scheme.decode(), name, port)


def aim(req: http.Request, target: str) -> None:
    """`req.url = target`, with the few backend URLs parsed once: mitmproxy's setter parses the URL on
    every call and rewrites the Host header and authority once per part it sets."""
    scheme, host, port, path, authority = _target(target)
    data = req.data
    data.scheme, data.host, data.port, data.path = scheme, host, port, path
    if "Host" in data.headers:
        data.headers["Host"] = authority
    if data.authority:
        req.authority = authority


def header_map(headers: http.Headers) -> dict[str, str]:
    """A response's headers as a dict of lower-case names, read in one pass: each of mitmproxy's
    `Headers.get` scans every field. Repeated headers are joined with ", " as `Headers.get` joins them."""
    out: dict[str, str] = {}
    for name, value in headers.fields:
        key, text = name.lower().decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


def credential_headers(cred: Credential) -> list[tuple[str, str]]:
    """The member's auth headers, refused (503) when a file or config entry holds a broken value."""
    for name, value in cred.headers:
        if not safe_value(value, limit=1 << 16):
            raise errors.ProxyError(
                503,
                f"the credential of {cred.member.label} has a malformed {name} value; log it in again "
                "or fix its entry in the cliproxy config",
                "server_error",
                "auth_unavailable",
            )
    return list(cred.headers)


def client_identity(sent: set[str], client_version: str) -> list[tuple[str, str]]:
    """The official CLI's identity (`originator`, `user-agent`, `version`) for what a client did not send
    itself (a Codex client keeps its own)."""
    fields = []
    if "originator" not in sent:
        fields += [("originator", ORIGINATOR), ("user-agent", codex_user_agent(ORIGINATOR, client_version))]
    if "version" not in sent:
        fields.append(("version", client_version))
    return fields


def upstream_headers(
    forwarded: list[tuple[str, str]],
    cred: Credential,
    host: str,
    cache_key: str | None,
    extra: Sequence[tuple[str, str]] = (),
    client_version: str = DEFAULT_CLIENT_VERSION,
) -> http.Headers:
    """The upstream request's headers: the member's auth, the client's Codex headers, the ones the body's
    form needs (`extra`), and the official CLI's identity (`originator`, `user-agent`, `version`)
    unless a Codex client sent its own."""
    ours = {k for k, _ in extra}
    kept = [(k, v) for k, v in forwarded if k not in ours]
    sent = {k for k, _ in kept} | ours
    fields: list[tuple[str, str]] = [("host", host), *credential_headers(cred)]
    fields += [
        ("content-type", "application/json"),
        ("accept", "text/event-stream"),
        ("accept-encoding", "identity"),
    ]
    fields += [*client_identity(sent, client_version), *kept, *extra]
    if cache_key and not any(k in ("session_id", "session-id") for k, _ in kept):
        fields.append(("session-id", session_token(cache_key)))
    return http.Headers([(k.encode(), v.encode()) for k, v in fields])


class _EndsUpstream:
    """Wraps a flow's stream translator: once the translator has ended the answer at a client-set limit
    (stop sequence, token limit), the upstream connection is closed, so the backend stops generating and
    mitmproxy ends the client's response (the upstream_failures patch takes the cut as the end of body)."""

    ends_on_upstream_error = True
    joins_reads = True  # as the translator it wraps

    def __init__(self, stream: Any, translator: CodexStream, flow: http.HTTPFlow) -> None:
        self.stream, self.translator, self.flow = stream, translator, flow
        self._closing = False

    def __call__(self, data: bytes) -> list[bytes]:
        out = self.stream(data)
        if not self._closing and self.translator.collector.ended_locally and data:
            self._closing = True
            if (st := state(self.flow)) is not None:
                st["ended_locally"] = self.translator.collector.ended_locally
            asyncio.get_running_loop().call_soon(self._close)
        return out

    def _close(self) -> None:
        try:
            abandon_upstream(self.flow)
        except Exception:  # the client's answer is complete either way
            logger.exception("cliproxy: could not close the upstream after a client-set limit")


class _Decoding:
    """Feeds a translator with decompressed bytes when the upstream compressed the stream anyway."""

    ends_on_upstream_error = True
    joins_reads = True  # decompressing a whole read at once is as good

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


def _made_up(status: int, code: str, message: str) -> Attempt:
    """An attempt that got no answer: marked, so that `decide` knows the account is not to blame for it."""
    body = json.dumps({"error": {"message": message, "type": "server_error", "code": code}}).encode()
    return Attempt(status, {"content-type": "application/json", FAILURE_HEADER: "1"}, body)


def no_credential(runtime: Runtime, model: str) -> errors.ProxyError:
    wait = runtime.pool.soonest(model)
    if wait is not None and wait > 0:
        seconds = math.ceil(wait)
        return errors.ProxyError(
            429,
            f"All credentials for model {model} are cooling down; retry in {seconds}s",
            "rate_limit_error",
            "model_cooldown",
            retry_after=seconds,
            extra={"model": model, "reset_seconds": seconds},
        )
    parked = runtime.pool.count_parked(model)
    why = f"{parked} account(s) need a new login (see `cliproxy accounts`)" if parked else "no account is logged in"
    return errors.ProxyError(
        503,
        f"no ChatGPT account is available for model {model}: {why}; run `cliproxy login` (auth dir {runtime.config.auth_dir})",
        "server_error",
        "auth_unavailable",
    )


def refused(err: errors.ProxyError) -> errors.ProxyError:
    """A 401 of the backend is about a pool account, not the client's key: say so."""
    if err.status != 401:
        return err
    return errors.ProxyError(
        401,
        f"the upstream refused the pool's credential even after a token refresh; run `cliproxy login` "
        f"for that account, or fix its codex-api-key (upstream said: {err.message})",
        "authentication_error",
        "account_unauthorized",
    )


class CodexUpstream:
    name = "cliproxy_codex"

    def __init__(self, runtime: Runtime, books: Conversations | None = None) -> None:
        self.runtime = runtime
        self.books = books  # keeps finished /v1/responses answers (previous_response_id, retrieval)

    def done(self) -> None:
        if self.runtime._http is not None:
            asyncio.get_running_loop().create_task(self.runtime.close())

    @on_claimed()
    async def request(self, flow: http.HTTPFlow, st: FlowState) -> None:
        if not st.get("ready"):
            return
        if (unknown := self.runtime.catalog.model_error(st["model"])) is not None:
            raise unknown  # before any account is tried: 404 naming the model and some that are available
        cred = await self.runtime.credential(st["model"], session=st.get("cache_key"))
        if cred is None:
            raise no_credential(self.runtime, st["model"])
        if st["stream"]:
            self.point(flow, cred)  # mitmproxy forwards it, and the answer is translated as it streams
            return
        # A non-stream client gets one JSON answer: read the upstream here, so that silence, a cut body
        # and failover are handled before the client sees anything.
        st["answered"] = True  # here, success or error (mitmproxy runs `response` on it all the same)
        self._answer(flow, st, await self._settled(flow, st, await self._send(flow, cred)))

    def point(self, flow: http.HTTPFlow, cred: Credential) -> None:
        """Aim the flow's request at the backend with this credential."""
        st = state(flow)
        assert st is not None, "point() serves claimed flows only (request, _send)"
        req = flow.request
        forwarded = st.setdefault("forwarded_headers", forwarded_headers(req.headers))
        if cred.model:
            body = json.loads(req.content or b"")  # set by set_codex_body: never None here
            body["model"] = cred.model
            req.content = json.dumps(body, ensure_ascii=False).encode()
        req.method = "POST"
        aim(req, cred.url)
        req.headers = upstream_headers(
            forwarded,
            cred,
            hostport(req.scheme, req.host, req.port),
            st.get("cache_key"),
            st.get("extra_headers", []),
            self.runtime.config.codex_client_version,
        )
        req.headers["content-length"] = str(len(req.raw_content or b""))
        st.update({"upstream": True, "account": cred.member.label, "account_key": cred.member.key})
        st.setdefault("tried", []).append(cred.member.key)
        st.setdefault("tried_labels", []).append(cred.member.label)

    @on_claimed(answered=True)
    def responseheaders(self, flow: http.HTTPFlow, st: FlowState) -> None:
        if not st.get("upstream"):
            return
        resp = flow.response
        assert resp is not None, "mitmproxy runs responseheaders with the response in place"
        st["status"] = resp.status_code
        received = header_map(resp.headers)
        if (request_id := received.get("x-request-id")) and safe_value(request_id):
            st["request_id"] = request_id  # passed on to the client (HttpConventions)
        self._quota(st, received)
        is_sse = received.get("content-type", "").startswith("text/event-stream")
        if resp.status_code != 200 or not is_sse or not st["stream"]:
            return  # buffered: aggregated, failed over, or mapped to an error in `response`
        translator = registry.stream_translator(st["route"], st["model"], st["options"])
        if getattr(ctx.options, "store_streamed_bodies", False):
            translator.keep_output()
        if self.books is not None and st.get("book") and isinstance(translator, ResponsesStream):
            translator.on_final = functools.partial(self.books.book, flow, st)
        encoding = received.get("content-encoding", "").strip().lower()
        fields = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache")]
        if flow.request.http_version == "HTTP/1.1":
            fields.append(("transfer-encoding", "chunked"))
        if st.get("request_id"):
            fields.append(("x-request-id", st["request_id"]))
        resp.headers = http.Headers([(k.encode(), v.encode()) for k, v in fields])
        stream = _Decoding(translator, encoding) if encoding in ("gzip", "deflate", "br") else translator
        resp.stream = _EndsUpstream(stream, translator, flow) if translator.limiter is not None else stream
        st["streamed"] = True

    @on_claimed(answered=True)
    async def response(self, flow: http.HTTPFlow, st: FlowState) -> None:
        if not st.get("upstream") or st.get("answered") or st.get("websocket"):
            return  # not ours, or answered in `request` already (mitmproxy still runs this hook then), or a WebSocket
        resp = flow.response
        assert resp is not None, "mitmproxy runs response with the response in place"
        if st.get("streamed"):
            translator = getattr(resp.stream, "translator", resp.stream)
            if isinstance(translator, CodexStream):
                self._settle(flow, st, translator.collector)
            return
        attempt = Attempt(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.content or b"")
        if attempt.is_event_stream:
            attempt = replace(attempt, collector=collect(attempt.body, st["options"].get("limits")))
        self._answer(flow, st, await self._settled(flow, st, attempt))

    async def _settled(self, flow: http.HTTPFlow, st: FlowState, attempt: Attempt) -> Attempt:
        """Refresh, fail over and retry until an attempt can answer the client; raises the client's error."""
        refreshed = False
        model = st["model"]
        while True:
            member = self.runtime.pool.get(st["account_key"])
            decision = decide(attempt, refreshed=refreshed, backoff_level=member.backoff.get(model, 0) if member else 0)
            if decision.action == "answer":
                return attempt
            err = decision.error
            assert err is not None
            if decision.action == "refresh":
                refreshed = True
                cred = await self.runtime.reauthorize(member) if member is not None else None
                if cred is None:
                    continue  # judged again, as refused after a refresh
            else:
                if member is not None and decision.verdict is not None:
                    self._judge(member, model, err, decision.verdict)
                if decision.action == "fail":
                    raise err
                cred = await self.runtime.credential(model, exclude=set(st["tried"]), session=st.get("cache_key"))
                if cred is None:  # nobody left: a quota answer names the wait, anything else is itself
                    raise no_credential(self.runtime, model) if err.status == 429 and self._all_cooling(model) else refused(err)
                st["failover"] = st.get("failover", 0) + 1
            attempt = await self._send(flow, cred)

    def _judge(self, member: Member, model: str, err: errors.ProxyError, verdict: Verdict) -> None:
        self.runtime.pool.failed(member, model, verdict)
        self.runtime.save_state(member, force=True)
        logger.warning(
            "cliproxy: %s answered %s for %s%s",
            member.label,
            err.status,
            model,
            "; parked until it is logged in again" if member.parked else f"; resting {verdict.cooldown:.0f}s" if verdict.cooldown else "",
        )

    async def _send(self, flow: http.HTTPFlow, cred: Credential) -> Attempt:
        """Send the request with this credential and read the whole answer (mitmproxy cannot re-stream a flow).

        httpx's read timeout applies to every read, so an upstream silent for `request-timeout-seconds`
        (before or after its headers) ends the attempt as a marked 504."""
        self.point(flow, cred)
        st = state(flow)
        assert st is not None, "point() serves claimed flows only"
        req = flow.request
        fields = [(k, v) for k, v in req.headers.items(multi=True) if k.lower() not in ("host", "content-length")]
        chunks: list[bytes] = []
        limits = st["options"].get("limits")
        watch = CodexStream(limits) if limits else None  # ends the read at the client's stop sequence or token limit
        try:
            async with self.runtime.http.stream("POST", req.url, content=req.raw_content, headers=fields) as r:
                status, received = r.status_code, {k.lower(): v for k, v in r.headers.items()}
                self._quota(st, received)
                if received.get("x-request-id") and safe_value(received["x-request-id"]):
                    st["request_id"] = received["x-request-id"]  # passed on to the client (HttpConventions)
                cut = False
                try:
                    async for chunk in r.aiter_bytes():
                        chunks.append(chunk)
                        if watch is not None and status == 200:
                            watch(chunk)
                            if watch.collector.ended_locally:
                                st["ended_locally"] = watch.collector.ended_locally
                                break  # leaving the block closes the upstream connection: the backend stops generating
                except httpx.TimeoutException:
                    raise
                except httpx.HTTPError:
                    cut = True  # the body broke off: what arrived is judged as such
        except httpx.TimeoutException:
            limit = self.runtime.config.request_timeout
            where = "mid-answer" if chunks else "before answering"
            logger.warning("cliproxy: %s went silent for %ss %s; giving up on it", cred.member.label, limit, where)
            return _made_up(504, "upstream_timeout", f"the upstream went silent for {limit}s {where}")
        except httpx.HTTPError as exc:
            return _made_up(502, "upstream_unreachable", f"cannot reach the upstream: {type(exc).__name__}")
        body = b"".join(chunks)
        keep_answer(st, status, received.items(), body)  # the upstream's side, for mitmweb
        attempt = Attempt(status, received, body, cut=cut)
        if watch is not None and watch.collector.ended_locally:
            return replace(attempt, collector=watch.collector)
        return replace(attempt, collector=collect(body, limits)) if attempt.is_event_stream else attempt

    def _answer(self, flow: http.HTTPFlow, st: FlowState, attempt: Attempt) -> None:
        """Turn a complete upstream event stream into the client's answer (stream or JSON)."""
        if st["stream"]:
            translator = registry.stream_translator(st["route"], st["model"], st["options"])
            out = b"".join(translator(attempt.body) + translator(b""))
            self._settle(flow, st, translator.collector)
            flow.response = http.Response.make(200, out, {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"})
            return
        collector = attempt.collector or collect(attempt.body)
        self._settle(flow, st, collector)
        reply_json(
            flow, 200, json.dumps(registry.aggregate(st["route"], collector, st["model"], st["options"]), ensure_ascii=False).encode()
        )

    def _all_cooling(self, model: str) -> bool:
        wait = self.runtime.pool.soonest(model)
        return wait is not None and wait > 0

    def _quota(self, st: FlowState, headers: dict[str, str]) -> None:
        self.runtime.catalog.etag_seen(st.get("account_key"), headers.get("x-models-etag"))  # the catalog moved: read it again
        quota = parse_quota(headers)
        member = self.runtime.pool.get(st.get("account_key", ""))
        if quota and member is not None:
            member.quota = quota
            st["quota"] = quota_summary(quota)
            self.runtime.save_state(member)

    def _settle(self, flow: http.HTTPFlow, st: FlowState, collector) -> None:
        """Book the outcome of a finished stream: usage for the flow, success or cool-down for the member,
        the answer in the response store (when a stream translator has not done so already)."""
        if collector.usage:
            st["usage"] = usage_fields(collector.usage)  # the counts the client is told (and the ledger keeps)
        if (image_usage := image_usage_of(collector.response)) is not None:
            st["image_usage"] = image_usage  # the image tool's tokens, which the usage above leaves out
        if isinstance(collector.response.get("service_tier"), str):
            st["service_tier"] = collector.response["service_tier"]
        member = self.runtime.pool.get(st.get("account_key", ""))
        error = collector.error or (None if collector.terminal else disconnected_error())
        if error is not None:
            st["error"] = error.message[:200]
            if member is not None and error.status == 429:
                verdict = judge(429, error.retry_after, error.code == "usage_limit_reached", member.backoff.get(st["model"], 0))
                self.runtime.pool.failed(member, st["model"], verdict)
        else:
            st["complete"] = True
            if member is not None:
                self.runtime.pool.succeeded(member, st["model"], st.get("cache_key"))
            if self.books is not None and st.get("book"):
                self.books.book(flow, st, collector.final_response())

    def error(self, flow: http.HTTPFlow) -> None:
        st = state(flow)
        if st is None or not st.get("upstream") or not flow.error or st.get("websocket"):
            return
        stream = flow.response.stream if flow.response else None
        translator = getattr(stream, "translator", stream)
        if isinstance(translator, CodexStream) and translator.finished:
            # Clients hang up as soon as they read the last event (`[DONE]`, `message_stop`), often
            # before the upstream's own end of body: the answer was complete, so book it as such.
            self._settle(flow, st, translator.collector)
            if translator.sent is not None and flow.response is not None:
                flow.response.content = bytes(translator.sent)
            flow.error = None
            return
        st["error"] = flow.error.msg
        logger.warning("cliproxy: %s via %s failed: %s", st.get("route"), st.get("account"), flow.error.msg)
