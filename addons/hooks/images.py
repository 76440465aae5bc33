"""Addon: OpenAI Images (`/v1/images/generations`, `/v1/images/edits`; JSON, or multipart as the openai SDK
sends edits) served with a pool account.

The backend's native image endpoints are asked first (one call, JSON in, JSON out). Where one answers 404
the request is handed on, as a `/responses` call that forces the `image_generation` tool, to CodexUpstream
(failover and aggregation as for any JSON client), and `translate.images` folds the stream into the answer.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import httpx
from mitmproxy import http

from cliproxy.addons.core.failover import Attempt, decide
from cliproxy.addons.core.runtime import Credential, Runtime
from cliproxy.addons.hooks.codex_upstream import _made_up, client_identity, credential_headers, no_credential, refused
from cliproxy.addons.mitm.flowstate import DEFAULT_MAX_REQUEST_BYTES, FlowState, on_claimed, read_json, reply_json, set_codex_body
from cliproxy.addons.translate import encoding as content_encoding
from cliproxy.addons.translate import errors, images, registry

ROUTES = ("images_generations", "images_edits")


def request_body(flow: http.HTTPFlow, st: FlowState) -> Any:
    """The request's fields: a JSON body, or a multipart form's fields (files as data URLs)."""
    ctype = flow.request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        return read_json(flow)
    limit = st.get("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES)
    try:
        raw = content_encoding.decode(flow.request.raw_content or b"", flow.request.headers.get("content-encoding", ""), limit)
    except content_encoding.TooLarge:
        raise errors.request_too_large(limit) from None
    except ValueError:
        raise errors.bad_request("the request body cannot be decoded with its content-encoding") from None
    return images.parse_multipart(raw, ctype)


class Images:
    name = "cliproxy_images"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @on_claimed(*ROUTES)
    async def request(self, flow: http.HTTPFlow, st: FlowState) -> None:
        edit = st["route"] == "images_edits"
        body = request_body(flow, st)
        req = images.parse(body, edit)
        st["client_model"] = body.get("model") if isinstance(body.get("model"), str) else None
        model = images.DRIVER_MODEL  # the pool's per-model state: image calls rest and fail over as its calls do
        cred = await self.runtime.credential(model)
        if cred is None:
            raise no_credential(self.runtime, model)
        payload = json.dumps(images.native_body(req)).encode()
        tail = "/images/edits" if edit else "/images/generations"
        st.update({"model": req.model, "images_path": "native", "tried": [], "tried_labels": []})
        refreshed = False
        while True:
            st.update({"account": cred.member.label, "account_key": cred.member.key})
            st["tried"].append(cred.member.key)
            st["tried_labels"].append(cred.member.label)
            attempt = await self._post(cred, tail, payload)
            st["status"] = attempt.status
            if attempt.status == 404:  # no native endpoint here: the `/responses` form, through CodexUpstream
                st["images_path"] = "responses"
                set_codex_body(flow, st, registry.APIS[st["route"]].to_codex(body, self.runtime.config.settings, {}))
                return
            if attempt.status == 200:
                break
            member = cred.member
            decision = decide(attempt, refreshed=refreshed, backoff_level=member.backoff.get(model, 0))
            err = decision.error
            assert err is not None, "only a 200 is answered, and it left the loop above"
            if decision.action == "refresh":
                refreshed = True
                fresh = await self.runtime.reauthorize(member)
                if fresh is None:
                    raise refused(err)
                cred = fresh
                continue
            if err.status == 403:  # the plan lacks images: another account may have them, and this one still serves chat
                err = errors.ProxyError(
                    403,
                    f"the account's plan does not include image generation (upstream said: {err.message[:200]})",
                    "permission_error",
                    "image_generation_unavailable",
                )
                decision = replace(decision, action="failover", verdict=None)
            if decision.verdict is not None:
                self.runtime.pool.failed(member, model, decision.verdict)
                self.runtime.save_state(member, force=True)
            if decision.action == "fail":
                raise refused(err)
            nxt = await self.runtime.credential(model, exclude=set(st["tried"]))
            if nxt is None:
                wait = self.runtime.pool.soonest(model)
                raise no_credential(self.runtime, model) if err.status == 429 and wait is not None and wait > 0 else refused(err)
            st["failover"] = st.get("failover", 0) + 1
            cred, refreshed = nxt, False
        self.runtime.pool.succeeded(cred.member, model, None)
        self._answer(flow, st, attempt, req)

    async def _post(self, cred: Credential, tail: str, payload: bytes) -> Attempt:
        """One call of a native image endpoint with this credential; no answer is a marked 502 or 504."""
        headers = [
            *credential_headers(cred),
            ("content-type", "application/json"),
            ("accept", "application/json"),
            *client_identity(set(), self.runtime.config.codex_client_version),
        ]
        try:
            r = await self.runtime.http.post(cred.url.removesuffix("/responses") + tail, content=payload, headers=headers)
        except httpx.TimeoutException:
            return _made_up(504, "upstream_timeout", f"the upstream went silent for {self.runtime.config.request_timeout}s")
        except httpx.HTTPError as exc:
            return _made_up(502, "upstream_unreachable", f"cannot reach the upstream: {type(exc).__name__}")
        return Attempt(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content)

    def _answer(self, flow: http.HTTPFlow, st: FlowState, attempt: Attempt, req: images.ImageRequest) -> None:
        try:
            got = json.loads(attempt.body)
        except ValueError:
            raise errors.ProxyError(502, "the upstream's image answer is not JSON", "server_error", "bad_upstream_answer") from None
        answer = images.answer_from_native(got, req)
        if isinstance(answer.get("usage"), dict):
            st["usage"] = st["image_usage"] = answer["usage"]
        st["complete"] = True
        reply_json(flow, 200, json.dumps(answer).encode())
