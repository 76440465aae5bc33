"""Event dispatch that visits only the addons handling the event.

mitmproxy (12.x) delivers every event (`requestheaders`, `request`, `responseheaders`, `response`, and
the `update` that follows each) by walking its whole addon tree: for each of ~60 addons it enters a
`safecall` context, makes a coroutine, walks the addon's children, looks the hook up by name, and
rebuilds the event's arguments. Only a handful handle any one event, so the walk is most of a
request's dispatch cost, and cliproxy's own addons lengthen it. This patch of
`AddonManager.trigger_event` keeps, per event name, the handlers that the walk would find, grouped by
top-level addon, and calls those alone, in the same order, with the same error handling: an
exception is logged and ends that top-level addon's handlers for this event, `AddonHalt` ends the
event.

The lists are rebuilt after any `register`, `remove` or `clear` (the ways an addon tree changes,
script reloads included); only the asynchronous `trigger_event` uses them, never the synchronous
`trigger` that can run while a script is half registered. `install` refuses any version but 12.x,
and tests/unit/test_mitm_contract.py checks the internals relied on here.
"""

from __future__ import annotations

import inspect
import logging
import types
from typing import Any

from mitmproxy import exceptions, hooks, version
from mitmproxy.addonmanager import AddonManager, safecall, traverse

from cliproxy.addons.mitm import fence

logger = logging.getLogger(__name__)

SUPPORTED = fence.supported()
#: The AddonManager methods that change the addon tree (each one drops the cached lists).
CHANGERS = ("register", "remove", "clear")
_CACHE = "_cliproxy_handlers"

_originals: dict[str, Any] = {}


def handlers(manager: AddonManager, name: str) -> list[list[Any]]:
    """The callables for `name` of each top-level addon (its own and its children's) that has any, in order."""
    cache: dict[str, list[list[Any]]] = manager.__dict__.setdefault(_CACHE, {})
    found = cache.get(name)
    if found is None:
        found = []
        for top in manager.chain:
            funcs = [
                func
                for a in traverse([top])
                if (func := getattr(a, name, None)) and callable(func) and not isinstance(func, types.ModuleType)
            ]
            if funcs:
                found.append(funcs)
        cache[name] = found
    return found


async def _trigger_event(self: AddonManager, event: hooks.Hook) -> None:
    groups = handlers(self, event.name)
    if not groups:
        return
    args = event.args()
    for funcs in groups:
        try:
            with safecall():
                for func in funcs:
                    res = func(*args)
                    if res is not None and inspect.isawaitable(res):
                        await res
        except exceptions.AddonHalt:
            return


def _dropping_cache(original: Any) -> Any:
    def changer(self: AddonManager, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        finally:
            self.__dict__.pop(_CACHE, None)  # rebuilt from the tree the change leaves behind

    changer.__wrapped__ = original  # type: ignore[attr-defined]
    return changer


def install() -> bool:
    """Idempotent (the script may be reloaded); False, and mitmproxy's own dispatch, on versions other than 12.x."""
    if not SUPPORTED:
        logger.warning("cliproxy: mitmproxy %s is not 12.x; events are dispatched by mitmproxy's own walk", version.VERSION)
        return False
    if AddonManager.trigger_event is _trigger_event:
        return True
    _originals["trigger_event"] = AddonManager.trigger_event
    for name in CHANGERS:
        _originals[name] = getattr(AddonManager, name)
        setattr(AddonManager, name, _dropping_cache(_originals[name]))
    AddonManager.trigger_event = _trigger_event  # type: ignore[method-assign]  # the fenced patch itself
    return True
