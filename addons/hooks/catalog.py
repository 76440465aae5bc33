"""Addon: keeps the live model catalog current while the proxy runs.

Each account's `GET /models` is read at start, again every `models-refresh-seconds`, and at the next
tick after an answer carried an `x-models-etag` that differs from the one read (CodexUpstream reports
those). Reads run beside serving: a slow or failing backend never holds a request up.
"""

from __future__ import annotations

import asyncio
import logging

from cliproxy.addons.core.runtime import Runtime

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0


class ModelCatalog:
    name = "cliproxy_catalog"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._task: asyncio.Task | None = None

    def running(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._tick())

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.runtime.catalog.stop()

    async def _tick(self) -> None:
        while True:
            try:
                self.runtime.catalog.start_due()
            except Exception:  # the timer must survive anything
                logger.exception("cliproxy: model catalog check failed")
            await asyncio.sleep(TICK_SECONDS)
