"""Conversation state on the `/v1/responses` request path (pure): a request that names earlier state
(`previous_response_id`, `conversation`, item references) is expanded into the full, stateless input
the Codex backend needs, since it keeps nothing (`store` is always false upstream).

Rules, in order:
1. `input` becomes a list of items (a string is one user message).
2. Item references (`{"type": "item_reference", "id": ...}`) are replaced by the stored item; a
   reasoning item sent by id alone (no `encrypted_content`) gets its stored content back when known.
   An unknown reference is a 400.
3. The context is put first: the previous response's full input plus its output, or the
   conversation's items. New items already in the context (the client resent the whole history, or
   items with ids already there) are not repeated.
4. A tool output whose call is not in the input before it gets its stored call inserted just before
   it (clients that chain send only `function_call_output`).
5. `instructions` omitted on a follow-up are inherited from the previous response.
6. Reasoning items without `encrypted_content` are left out (the backend cannot resolve them by id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cliproxy.addons.store.responses import ResponseStore, without_minted_id
from cliproxy.addons.translate import errors

CALL_TYPES = {"function_call_output": "function_call", "custom_tool_call_output": "custom_tool_call"}
STATE_FIELDS = ("previous_response_id", "conversation")


@dataclass(frozen=True, slots=True)
class State:
    """The state fields of a request."""

    store: bool = True
    previous: str | None = None
    conversation: str | None = None


def state_of(body: dict[str, Any]) -> State:
    """The request's state fields, checked; a bad value is a 400 in OpenAI's words."""
    store = body.get("store", True)
    if store is None:
        store = True
    if not isinstance(store, bool):
        raise errors.bad_request("`store` must be a boolean", "store")
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise errors.bad_request("`previous_response_id` must be a non-empty string", "previous_response_id")
    conversation = body.get("conversation")
    if isinstance(conversation, dict):
        conversation = conversation.get("id")
        if not isinstance(conversation, str) or not conversation:
            raise errors.bad_request("`conversation.id` must be a non-empty string", "conversation")
    elif conversation is not None and (not isinstance(conversation, str) or not conversation):
        raise errors.bad_request("`conversation` must be a conversation id or an object with an `id`", "conversation")
    if previous and conversation:
        raise errors.bad_request(
            "Mutually exclusive parameters: Ensure you are only providing one of: 'previous_response_id' or 'conversation'.",
            "previous_response_id",
            "mutually_exclusive_parameters",
        )
    return State(store, previous, conversation)


def input_list(value: Any) -> list[Any] | None:
    """`input` as a list of items, or None when it has a shape the translator will refuse."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    if isinstance(value, dict):
        return [value]
    return list(value) if isinstance(value, list) else None


def _is_blind_reasoning(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") == "reasoning" and not item.get("encrypted_content")


def _orphans(items: list[Any]) -> list[tuple[int, str, str]]:
    """(index, call type, call id) of tool outputs whose call does not come before them."""
    seen: set[tuple[str, str]] = set()
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        kind, call_id = item.get("type"), item.get("call_id")
        if not isinstance(call_id, str):
            continue
        if isinstance(kind, str) and kind in CALL_TYPES.values():
            seen.add((kind, call_id))
        elif kind in CALL_TYPES and (CALL_TYPES[kind], call_id) not in seen:
            out.append((n, CALL_TYPES[kind], call_id))
    return out


def needs_store(body: dict[str, Any], state: State) -> bool:
    """Whether expanding this request needs the store at all (most requests do not)."""
    if state.previous or state.conversation:
        return True
    items = input_list(body.get("input"))
    if not items:
        return False
    refs = any(isinstance(i, dict) and (i.get("type") == "item_reference" or (_is_blind_reasoning(i) and i.get("id"))) for i in items)
    return refs or bool(_orphans(items))


def plain(body: dict[str, Any]) -> dict[str, Any]:
    """A request that needs no stored state: the state fields and cliproxy's minted item ids removed."""
    out = {k: v for k, v in body.items() if k not in STATE_FIELDS}
    if isinstance(out.get("input"), list):
        out["input"] = [without_minted_id(i) for i in out["input"]]
    return out


def previous_not_found(response_id: str) -> errors.ProxyError:
    return errors.bad_request(
        f"Previous response with id '{response_id}' not found.", "previous_response_id", "previous_response_not_found"
    )


def conversation_not_found(conversation_id: str) -> errors.ProxyError:
    return errors.ProxyError(
        404, f"Conversation with id '{conversation_id}' not found.", "invalid_request_error", "conversation_not_found", "conversation"
    )


def expand(body: dict[str, Any], owner: str, store: ResponseStore, state: State) -> tuple[dict[str, Any], int]:
    """The request with its state expanded (state fields removed), and how many input items precede the
    ones this request brings (the context). Raises ProxyError (400/404) for unknown ids."""
    items = input_list(body.get("input"))
    if items is None:
        return body, 0  # the translator says what is wrong with `input`
    new: list[Any] = []
    for n, item in enumerate(items):
        if isinstance(item, dict) and item.get("type") == "item_reference":
            ref = item.get("id")
            if not isinstance(ref, str) or not ref:
                raise errors.bad_request(f"input[{n}]: an item_reference needs an `id`", "input")
            found = store.find_item(owner, ref)
            if found is None:
                raise errors.bad_request(
                    f"Item with id '{ref}' not found: cliproxy keeps items for responses-retention-hours, "
                    "and only for the client key that made them.",
                    "input",
                    "item_not_found",
                )
            item = found
        elif _is_blind_reasoning(item) and isinstance(item.get("id"), str):
            item = store.find_item(owner, item["id"]) or item
        new.append(item)

    out = {k: v for k, v in body.items() if k not in STATE_FIELDS}
    context: list[Any] = []
    if state.previous:
        prev = store.get_response(owner, state.previous)
        if prev is None:
            raise previous_not_found(state.previous)
        if not prev.store:
            raise errors.bad_request(
                f"Previous response with id '{state.previous}' was created with `store: false`, so cliproxy did not keep it; "
                "send the whole conversation as input, or create responses you chain from with `store: true`.",
                "previous_response_id",
                "previous_response_not_found",
            )
        context = [*prev.input, *prev.output]
        if out.get("instructions") is None and prev.instructions:
            out["instructions"] = prev.instructions
    elif state.conversation:
        page = store.list_items(owner, state.conversation)
        if page is None:
            raise conversation_not_found(state.conversation)
        context = page.items

    if context and new[: len(context)] == context:
        new = new[len(context) :]  # the client resent the history as well
    ids = {i.get("id") for i in context if isinstance(i, dict) and i.get("id")}
    new = [i for i in new if not (isinstance(i, dict) and i.get("id") and i.get("id") in ids)]

    full = [without_minted_id(i) for i in [*context, *new] if not _is_blind_reasoning(i)]
    start = len([i for i in context if not _is_blind_reasoning(i)])
    for n, kind, call_id in reversed(_orphans(full)):
        call = store.find_call(owner, call_id)
        if call is not None and call.get("type") == kind:
            full.insert(n, call)
            if n < start:
                start += 1  # a call missing from the stored context belongs to the context
    out["input"] = full
    return out, start
