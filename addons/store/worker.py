"""Runs a store off the event loop: every operation on one thread, in the order submitted.

The order is what gives read-your-writes inside a process: the booking of a finished response is
queued before its last event leaves for the client, so any later lookup, queued after it, sees it.
A storage failure is logged once per kind and reported as `StoreUnavailable`; it never escapes as
anything else, so no request fails because of the store unless it needs what the store holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from cliproxy.addons.store.responses import ResponseStore
from cliproxy.addons.translate.errors import ProxyError

logger = logging.getLogger(__name__)

PURGE_SECONDS = 60.0
T = TypeVar("T")


class StoreUnavailable(Exception):
    """The store could not do what was asked (the reason is in the proxy log)."""


class Background:
    def __init__(self, opener: Callable[[], ResponseStore]) -> None:
        self._opener = opener
        self._store: ResponseStore | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cliproxy-store")
        self._warned: set[str] = set()
        self._purged = 0.0
        self.closed = False

    def _call(self, fn: Callable[[ResponseStore], T]) -> T:
        if self._store is None:
            self._store = self._opener()
        now = time.monotonic()
        if now - self._purged > PURGE_SECONDS:
            self._purged = now
            self._store.purge()
        return fn(self._store)

    def _failed(self, exc: BaseException) -> StoreUnavailable:
        kind = f"{type(exc).__name__}: {exc}"[:200]
        if kind not in self._warned:
            self._warned.add(kind)
            logger.error("cliproxy: the response store failed (%s); requests go on without it", kind)
        return StoreUnavailable(kind)

    async def run(self, fn: Callable[[ResponseStore], T]) -> T:
        """Run `fn(store)` on the store's thread and wait for it; a ProxyError from `fn` passes through."""
        if self.closed:
            raise StoreUnavailable("closed")
        try:
            return await asyncio.wrap_future(self._pool.submit(self._call, fn))
        except ProxyError:
            raise
        except Exception as exc:
            raise self._failed(exc) from None

    def submit(self, fn: Callable[[ResponseStore], object]) -> None:
        """Queue `fn(store)` without waiting (writes); a failure is logged once."""
        if self.closed:
            return

        def done(fut: Future) -> None:
            if (exc := fut.exception()) is not None:
                self._failed(exc)

        self._pool.submit(self._call, fn).add_done_callback(done)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait (blocking) until everything queued so far is done."""
        if not self.closed:
            self._pool.submit(lambda: None).result(timeout)

    def close(self) -> None:
        """Finish what is queued, then close the store (in the background)."""
        if self.closed:
            return
        self.closed = True

        def shut() -> None:
            if self._store is not None:
                self._store.close()

        self._pool.submit(shut)
        self._pool.shutdown(wait=False)
