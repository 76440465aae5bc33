"""The contract of the response store: what is kept for each response and conversation, and the
operations every implementation offers (SQLite in `sqlite`, a shared PostgreSQL in `pg_responses`).

Every record belongs to an *owner*, the identity of the client key that made it (see `owner_of`):
an owner never sees another owner's records, so a lookup across owners answers like a lookup of an
id that does not exist. Implementations are synchronous and used from one thread at a time
(`worker.Background` runs them off the event loop); they raise on storage failure and leave the
decision of what that means for a request to the caller.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Order = Literal["asc", "desc"]

#: The owner of records made by a client that presented no key (loopback clients need none).
LOOPBACK = "loopback"
#: Item types whose id prefix OpenAI uses; other types get "item".
_ID_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
}


def owner_of(presented_keys: list[str]) -> str:
    """The owner identity of a request: a short hash of the first client key it presents, or `LOOPBACK`.

    Derived from the key presented, not from the peer address, so that two keys on one machine keep
    their stored responses apart too; the key itself is never stored."""
    key = next((k for k in presented_keys if k), None)
    if key is None:
        return LOOPBACK
    return "key:" + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def new_id(prefix: str) -> str:
    """An id minted by cliproxy: `<prefix>_cp<40 hex>` (the `cp` marks it as cliproxy's own)."""
    return f"{prefix}_cp{secrets.token_hex(20)}"


_MINTED = re.compile(r"[a-z]+_cp[0-9a-f]{40}")


def is_minted(item_id: Any) -> bool:
    return isinstance(item_id, str) and _MINTED.fullmatch(item_id) is not None


def item_with_id(item: dict[str, Any]) -> dict[str, Any]:
    """The item as it is kept: in its full form (a bare `{"role", "content": "text"}` message becomes a
    typed message with content parts, as OpenAI lists it) and with an `id`, minted when it has none
    (listed items and references need one)."""
    if "type" not in item and "role" in item:
        item = {"type": "message", **item}
    if item.get("type") == "message" and isinstance(item.get("content"), str):
        part = "output_text" if item.get("role") == "assistant" else "input_text"
        item = {**item, "content": [{"type": part, "text": item["content"]}]}
    if isinstance(item.get("id"), str) and item["id"]:
        return item
    return {"id": new_id(_ID_PREFIX.get(str(item.get("type", "message")), "item")), **item}


def without_minted_id(item: Any) -> Any:
    """The item as it goes upstream: ids cliproxy minted are its own and mean nothing to the backend
    (which checks the ids it is sent)."""
    if isinstance(item, dict) and is_minted(item.get("id")):
        return {k: v for k, v in item.items() if k != "id"}
    return item


@dataclass(slots=True)
class StoredResponse:
    """One answered `/v1/responses` request.

    `store=False` records are tombstones (no content): they exist so that chaining from them is
    refused with the reason instead of "not found"."""

    id: str
    owner: str
    created_at: float = field(default_factory=time.time)
    store: bool = True
    model: str = ""
    instructions: str | None = None
    input: list[dict[str, Any]] = field(default_factory=list)  # the full input sent upstream
    new_input: int = 0  # how many of the last `input` items this request brought (what `input_items` lists)
    output: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    response: dict[str, Any] = field(default_factory=dict)  # the response object as answered
    previous_response_id: str | None = None
    conversation: str | None = None

    @property
    def request_items(self) -> list[dict[str, Any]]:
        return self.input[len(self.input) - self.new_input :] if self.new_input else []

    def record(self) -> str:
        """Its content as the stores keep it: compact JSON (`{}` for a tombstone)."""
        if not self.store:
            return "{}"
        return dumps({name: getattr(self, name) for name in _CONTENT})

    @classmethod
    def from_record(cls, response_id: str, owner: str, created_at: float, store: bool, record: str) -> StoredResponse:
        return cls(response_id, owner, created_at, bool(store), **json.loads(record))


_CONTENT = ("model", "instructions", "input", "new_input", "output", "usage", "response", "previous_response_id", "conversation")


_CALL_TYPES = ("function_call", "custom_tool_call")


def item_rows(owner: str, scope: str, items: list[dict[str, Any]], now: float, start: int = 0) -> list[tuple[Any, ...]]:
    """The item index rows both stores write: (owner, scope, id, seq, call_id, created, item JSON); items without an id are skipped."""
    rows = []
    for n, item in enumerate(items):
        item_id = item.get("id")
        if not isinstance(item_id, str) or not item_id:
            continue
        call_id = item.get("call_id") if item.get("type") in _CALL_TYPES and isinstance(item.get("call_id"), str) else None
        rows.append((owner, scope, item_id, start + n, call_id, now, dumps(item)))
    return rows


def dumps(value: Any) -> str:
    """Compact JSON with text kept as it is (what the stores write)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(slots=True)
class Conversation:
    id: str
    owner: str
    created_at: float = field(default_factory=time.time)
    metadata: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "object": "conversation", "created_at": int(self.created_at), "metadata": self.metadata}


@dataclass(slots=True)
class Limits:
    """Retention and size cap; records past them are gone (never served, removed by `purge`)."""

    retention_seconds: float = 24 * 3600
    max_bytes: int = 256 * 1024 * 1024


@dataclass(slots=True)
class Page:
    items: list[dict[str, Any]]
    has_more: bool


class ResponseStore(ABC):
    """Storage of responses, conversations and items. Ids are unique per owner; every method takes the
    owner and behaves as if records of other owners did not exist."""

    limits: Limits

    # -- responses ------------------------------------------------------------------------------
    @abstractmethod
    def put_response(self, response: StoredResponse) -> None:
        """Keep a response (replacing one of the same id and owner) and index its new input and output
        items by id (and call id) for item references; with `conversation` set, append them to it."""

    @abstractmethod
    def get_response(self, owner: str, response_id: str) -> StoredResponse | None:
        """The response, or None when unknown, expired or another owner's."""

    @abstractmethod
    def delete_response(self, owner: str, response_id: str) -> bool:
        """Forget a response (its indexed items too); False when there was none to delete."""

    @abstractmethod
    def find_item(self, owner: str, item_id: str) -> dict[str, Any] | None:
        """The newest stored item with this id (input or output of a response, or a conversation item)."""

    @abstractmethod
    def find_call(self, owner: str, call_id: str) -> dict[str, Any] | None:
        """The newest stored tool call item (`function_call`, `custom_tool_call`) with this call id."""

    # -- conversations ----------------------------------------------------------------------------
    @abstractmethod
    def create_conversation(self, conversation: Conversation, items: list[dict[str, Any]]) -> None:
        """Create a conversation with its first items (each already has an id)."""

    @abstractmethod
    def get_conversation(self, owner: str, conversation_id: str) -> Conversation | None: ...

    @abstractmethod
    def update_conversation(self, owner: str, conversation_id: str, metadata: Mapping[str, Any]) -> Conversation | None: ...

    @abstractmethod
    def delete_conversation(self, owner: str, conversation_id: str) -> bool: ...

    @abstractmethod
    def add_items(self, owner: str, conversation_id: str, items: list[dict[str, Any]]) -> bool:
        """Append items (each already has an id); False when the conversation is unknown."""

    @abstractmethod
    def list_items(
        self, owner: str, conversation_id: str, *, after: str | None = None, limit: int | None = None, order: Order = "asc"
    ) -> Page | None:
        """A page of the conversation's items in `order`, starting after the item `after`; None when
        the conversation is unknown. `limit=None`: all of them."""

    @abstractmethod
    def get_item(self, owner: str, conversation_id: str, item_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def delete_item(self, owner: str, conversation_id: str, item_id: str) -> bool: ...

    # -- housekeeping -----------------------------------------------------------------------------
    @abstractmethod
    def purge(self, now: float | None = None) -> int:
        """Remove what is past retention or beyond the size cap (oldest first); returns how many responses went."""

    @abstractmethod
    def close(self) -> None: ...


def page_of(items: list[dict[str, Any]], after: str | None, limit: int | None, order: Order) -> Page:
    """The list-endpoint page of `items` (in creation order); an `after` that names no item gives an empty page."""
    ordered = items if order == "asc" else list(reversed(items))
    start = 0
    if after is not None:
        ids = [i.get("id") for i in ordered]
        if after not in ids:
            return Page([], False)
        start = ids.index(after) + 1
    rest = ordered[start:]
    if limit is None:
        return Page(rest, False)
    return Page(rest[:limit], len(rest) > limit)
