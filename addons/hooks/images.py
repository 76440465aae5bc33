"""Addon: OpenAI Images (`/v1/images/generations`, `/v1/images/edits`; JSON, or multipart as the openai SDK
sends edits) served with a pool account.

The backend's native image endpoints are asked first (one call, JSON in, JSON out). Where one answers 404
the request is handed on, as a `/responses` call that forces the `image_generation` tool, to CodexUpstream
(failover and aggregation as for any JSON client), and `translate.images` folds the stream into the answer.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from mitmproxy import http

from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.hooks.codex_upstream import client_identity, credential_headers, no_credential
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
        cred = await self.runtime.credential(images.DRIVER_MODEL)
        if cred is None:
            raise no_credential(self.runtime, images.DRIVER_MODEL)
        url = cred.url.removesuffix("/responses") + ("/images/edits" if edit else "/images/generations")
        headers = [
            *credential_headers(cred),
            ("content-type", "application/json"),
            ("accept", "application/json"),
            *client_identity(set(), self.runtime.config.codex_client_version),
        ]
        st.update({"account": cred.member.label, "account_key": cred.member.key, "model": req.model, "images_path": "native"})
        try:
            r = await self.runtime.http.post(url, content=json.dumps(images.native_body(req)).encode(), headers=headers)
        except httpx.TimeoutException:
            raise errors.ProxyError(504, "the upstream's image endpoint went silent", "server_error", "upstream_timeout") from None
        except httpx.HTTPError as exc:
            raise errors.ProxyError(
                502, f"cannot reach the upstream: {type(exc).__name__}", "server_error", "upstream_unreachable"
            ) from None
        st["status"] = r.status_code
        if r.status_code == 404:  # no native endpoint here: the `/responses` form, through CodexUpstream
            st["images_path"] = "responses"
            set_codex_body(flow, st, registry.APIS[st["route"]].to_codex(body, self.runtime.config.settings, {}))
            return
        if r.status_code != 200:
            raise errors.from_upstream_response(r.status_code, r.content, {k.lower(): v for k, v in r.headers.items()})
        try:
            got = r.json()
        except ValueError:
            raise errors.ProxyError(502, "the upstream's image answer is not JSON", "server_error", "bad_upstream_answer") from None
        answer = images.answer_from_native(got, req)
        if isinstance(answer.get("usage"), dict):
            st["usage"] = answer["usage"]
        st["complete"] = True
        self.runtime.pool.succeeded(cred.member, images.DRIVER_MODEL, None)
        reply_json(flow, 200, json.dumps(answer).encode())
