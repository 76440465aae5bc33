"""A task that runs once a second (or so) while the proxy runs: the base of the addons that keep
something current beside serving (the live model catalog, quota probes).

It starts at mitmproxy's `running` (the event loop is there by then) and is cancelled at `done`. A
tick that fails is logged and the next one runs: the timer must survive anything.
"""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0


class Ticking:
    """Subclasses define `tick` (awaited each time) and `WHAT` (named when a tick fails); `pause` may
    shorten the wait between ticks."""

    WHAT = "periodic task"
    _task: asyncio.Task | None = None

    async def tick(self) -> None:
        raise NotImplementedError

    def pause(self) -> float:
        """Seconds until the next tick."""
        return TICK_SECONDS

    def running(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # the timer must survive anything
                logger.exception("cliproxy: %s failed", self.WHAT)
            await asyncio.sleep(self.pause())
