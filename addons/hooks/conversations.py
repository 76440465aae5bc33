"""Addon: conversation state for the Responses API, which the Codex backend does not keep (`store` is
always false upstream): stored responses, `previous_response_id`, item references, conversations.

- `POST /v1/responses`: a request naming earlier state is expanded into full input from the store
  (`store.expand`) before `ClientApis` translates it; its answer is booked by `CodexUpstream` through
  `book`, queued before the terminal event leaves for the client.
- `GET|DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items` and the Conversations API
  (`/v1/conversations`, its `items`) are answered from the store in OpenAI's shapes.

Records belong to the client key that made them (`store.responses.owner_of`): keys do not see each
other's, and a client that presents no key (loopback) has its own. The store is SQLite in the state
folder beside the accounts, shared by every process on that auth dir, or PostgreSQL with `store` in
the config, shared by every host; a lookup it cannot answer is a 503 `store_unavailable`, never a
"not found".
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from pathlib import Path
from typing import Any

from mitmproxy import http

from cliproxy.addons.core.access import presented_keys
from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.hooks.client_api import serve
from cliproxy.addons.mitm.flowstate import FlowState, on_claimed, read_json, reply_json
from cliproxy.addons.store import expand
from cliproxy.addons.store.pg_responses import PostgresResponseStore
from cliproxy.addons.store.responses import Conversation, Limits, ResponseStore, StoredResponse, item_with_id, new_id, owner_of, page_of
from cliproxy.addons.store.sqlite import SQLiteStore
from cliproxy.addons.store.worker import Background, StoreUnavailable
from cliproxy.addons.translate import errors

#: A lookup that misses is tried once more after this pause: the answer it names may be still on its
#: way into the database from another process that shares it.
MISS_RETRY_SECONDS = 0.25
_NOT_FOUND_CODES = ("previous_response_not_found", "item_not_found", "conversation_not_found")
STORED_ROUTES = (
    "response_get",
    "response_delete",
    "response_input_items",
    "conversation_create",
    "conversation_get",
    "conversation_update",
    "conversation_delete",
    "conversation_items",
    "conversation_items_add",
    "conversation_item_get",
    "conversation_item_delete",
)
_RESPONSE_DEFAULTS: dict[str, Any] = {
    "object": "response",
    "error": None,
    "incomplete_details": None,
    "metadata": {},
    "tools": [],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "text": {"format": {"type": "text"}},
}


def unavailable() -> errors.ProxyError:
    return errors.ProxyError(
        503,
        "cliproxy's response store is unavailable (see the proxy log); retry, or send the whole conversation as input",
        "server_error",
        "store_unavailable",
    )


def not_found(what: str, ident: str) -> errors.ProxyError:
    return errors.ProxyError(404, f"{what} with id '{ident}' not found.", "invalid_request_error", "not_found")


def list_body(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0].get("id") if items else None,
        "last_id": items[-1].get("id") if items else None,
        "has_more": has_more,
    }


def page_args(flow: http.HTTPFlow) -> dict[str, Any]:
    """`after`, `limit` (1-100, default 20) and `order` (default desc) of a list request."""
    q = flow.request.query
    limit = q.get("limit", "20")
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        raise errors.bad_request("`limit` must be a whole number from 1 to 100", "limit")
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise errors.bad_request("`order` must be asc or desc", "order")
    return {"after": q.get("after") or None, "limit": int(limit), "order": order}


def optional_json(flow: http.HTTPFlow) -> dict[str, Any]:
    """A POST body that may be empty; it must be an object when there is one."""
    if not (flow.request.raw_content or b"").strip():
        return {}
    body = read_json(flow)
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a JSON object")
    return body


def new_items(value: Any, param: str) -> list[dict[str, Any]]:
    items = expand.input_list(value)
    if items is None or not all(isinstance(i, dict) for i in items):
        raise errors.bad_request(f"`{param}` must be an array of items", param)
    return [item_with_id(i) for i in items]


def stored_json(rec: StoredResponse) -> dict[str, Any]:
    """The response object of `GET /v1/responses/{id}`."""
    out = {
        **_RESPONSE_DEFAULTS,
        **rec.response,
        "id": rec.id,
        "output": rec.output,
        "store": True,
        "instructions": rec.instructions,
        "previous_response_id": rec.previous_response_id,
    }
    out.setdefault("created_at", int(rec.created_at))
    out.setdefault("model", rec.model)
    if rec.usage is not None:
        out["usage"] = rec.usage
    if rec.conversation:
        out["conversation"] = {"id": rec.conversation}
    return out


class Conversations:
    name = "cliproxy_conversations"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._bg: Background | None = None
        self._where: tuple[str | None, Path] | None = None
        self._limits: Limits | None = None

    def store(self) -> Background:
        """The store in force: PostgreSQL with `store`, else SQLite in the auth dir (a new one when the
        config moved it; limits follow reloads)."""
        cfg = self.runtime.config
        limits = Limits(cfg.responses_retention_hours * 3600, int(cfg.responses_max_mb * 1024 * 1024))
        if self._bg is None or self._where != (cfg.store, cfg.auth_dir):
            if self._bg is not None:
                self._bg.close()
            self._where, self._limits = (cfg.store, cfg.auth_dir), limits
            if cfg.store:
                self._bg = Background(functools.partial(PostgresResponseStore, cfg.store, limits))
                self._bg.submit(lambda s: None)  # connect now: a database unreachable at start is one log line at start
            else:
                self._bg = Background(functools.partial(SQLiteStore.in_state_dir, cfg.auth_dir, limits))
        elif limits != self._limits:
            self._limits = limits
            self._bg.submit(lambda s: setattr(s, "limits", limits))
        return self._bg

    def running(self) -> None:
        if self.runtime.config.store:
            self.store()

    def done(self) -> None:
        if self._bg is not None:
            self._bg.close()

    async def _run(self, fn: Any) -> Any:
        try:
            return await self.store().run(fn)
        except StoreUnavailable:
            raise unavailable() from None

    # -- POST /v1/responses ------------------------------------------------------------------------
    @on_claimed("responses", *STORED_ROUTES)
    async def request(self, flow: http.HTTPFlow, st: FlowState) -> None:
        if st["route"] != "responses":
            await self._stored(flow, st, st["route"], owner_of(presented_keys(flow.request.headers)), st.get("ids", []))
            return
        if st.get("ready"):
            return  # served by another hook already (Amp)
        body = read_json(flow)
        if isinstance(body, dict):
            state = expand.state_of(body)
            owner = owner_of(presented_keys(flow.request.headers))
            context = 0
            if expand.needs_store(body, state):
                body, context = await self._expand(body, owner, state)
            else:
                body = expand.plain(body)
            st["book"] = {
                "owner": owner,
                "store": state.store,
                "previous": state.previous,
                "conversation": state.conversation,
                "context": context,
            }
        serve(flow, st, self.runtime, body)

    async def _expand(self, body: dict[str, Any], owner: str, state: expand.State) -> tuple[dict[str, Any], int]:
        def run(store: ResponseStore) -> tuple[dict[str, Any], int]:
            return expand.expand(body, owner, store, state)

        try:
            return await self._run(run)
        except errors.ProxyError as exc:
            if exc.code not in _NOT_FOUND_CODES:
                raise
        await asyncio.sleep(MISS_RETRY_SECONDS)
        return await self._run(run)

    def book(self, flow: http.HTTPFlow, st: FlowState, response: dict[str, Any]) -> None:
        """Queue the keeping of a finished answer (once per flow). Called before its terminal event is sent,
        so a follow-up that this process receives is queued after it and finds it."""
        book = st.get("book")
        if not book or st.get("booked"):
            return
        st["booked"] = True
        rid = response.get("id")
        if not isinstance(rid, str) or not rid:
            return
        sent = flow.request.raw_content or b""
        now = time.time()

        def write(store: ResponseStore) -> None:
            if not book["store"]:
                store.put_response(StoredResponse(rid, book["owner"], now, store=False))
                return
            body = json.loads(sent)
            items = body.get("input") if isinstance(body.get("input"), list) else []
            context = min(book["context"], len(items))
            items = items[:context] + [item_with_id(i) if isinstance(i, dict) else i for i in items[context:]]
            output = out if isinstance(out := response.get("output"), list) else []
            store.put_response(
                StoredResponse(
                    rid,
                    book["owner"],
                    now,
                    True,
                    str(body.get("model", "")),
                    body.get("instructions") or None,
                    items,
                    len(items) - context,
                    output,
                    response.get("usage"),
                    {k: v for k, v in response.items() if k not in ("output", "usage")},
                    book["previous"],
                    book["conversation"],
                )
            )

        self.store().submit(write)

    # -- stored state ----------------------------------------------------------------------------
    async def _stored(self, flow: http.HTTPFlow, st: FlowState, route: str, owner: str, ids: list[str]) -> None:
        """Answer a stored-state route from the store."""
        status, body = 200, None
        if route == "response_get":
            rec = await self._run(lambda s: s.get_response(owner, ids[0]))
            if rec is None or not rec.store:
                raise not_found("Response", ids[0])
            body = stored_json(rec)
        elif route == "response_delete":
            if not await self._run(lambda s: s.delete_response(owner, ids[0])):
                raise not_found("Response", ids[0])
            body = {"id": ids[0], "object": "response.deleted", "deleted": True}
        elif route == "response_input_items":
            args = page_args(flow)
            rec = await self._run(lambda s: s.get_response(owner, ids[0]))
            if rec is None or not rec.store:
                raise not_found("Response", ids[0])
            page = page_of(rec.request_items, **args)
            body = list_body(page.items, page.has_more)
        elif route == "conversation_create":
            req = optional_json(flow)
            metadata = req.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise errors.bad_request("`metadata` must be an object", "metadata")
            conv = Conversation(new_id("conv"), owner, metadata=metadata)
            items = new_items(req.get("items") or [], "items")
            await self._run(lambda s: s.create_conversation(conv, items))
            body = conv.as_json()
        elif route in ("conversation_get", "conversation_update", "conversation_delete"):
            body = await self._conversation(flow, route, owner, ids[0])
        elif route == "conversation_items":
            args = page_args(flow)
            page = await self._run(lambda s: s.list_items(owner, ids[0], **args))
            if page is None:
                raise not_found("Conversation", ids[0])
            body = list_body(page.items, page.has_more)
        elif route == "conversation_items_add":
            req = optional_json(flow)
            if "items" not in req:
                raise errors.bad_request("`items` is required", "items")
            items = new_items(req["items"], "items")
            if not await self._run(lambda s: s.add_items(owner, ids[0], items)):
                raise not_found("Conversation", ids[0])
            body = list_body(items, False)
        elif route == "conversation_item_get":
            item = await self._run(lambda s: s.get_item(owner, ids[0], ids[1]))
            if item is None:
                raise not_found("Item", ids[1])
            body = item
        elif route == "conversation_item_delete":
            conv = await self._run(lambda s: s.get_conversation(owner, ids[0]) if s.delete_item(owner, ids[0], ids[1]) else None)
            if conv is None:
                raise not_found("Item", ids[1])
            body = conv.as_json()
        reply_json(flow, status, json.dumps(body, ensure_ascii=False).encode())

    async def _conversation(self, flow: http.HTTPFlow, route: str, owner: str, conv_id: str) -> dict[str, Any]:
        if route == "conversation_get":
            conv = await self._run(lambda s: s.get_conversation(owner, conv_id))
        elif route == "conversation_update":
            metadata = optional_json(flow).get("metadata")
            if not isinstance(metadata, dict):
                raise errors.bad_request("`metadata` (an object) is required", "metadata")
            conv = await self._run(lambda s: s.update_conversation(owner, conv_id, metadata))
        else:
            if not await self._run(lambda s: s.delete_conversation(owner, conv_id)):
                raise not_found("Conversation", conv_id)
            return {"id": conv_id, "object": "conversation.deleted", "deleted": True}
        if conv is None:
            raise not_found("Conversation", conv_id)
        return conv.as_json()
