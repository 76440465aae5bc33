"""Addon: true quota. An account resting on a usage limit has its `wham/usage` re-read every
`quota-probe-seconds`; its rest ends as soon as every window has room again (a banked reset credit was
spent, or the window reset early), instead of lasting until the reset the 429 announced. Rests lifted
by hand (`cliproxy rest clear`) are honoured on every tick and before every account choice.
"""

from __future__ import annotations

import asyncio
import logging

from cliproxy.addons.core.runtime import Runtime

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0


class QuotaProbe:
    name = "cliproxy_quota_probe"

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

    async def _tick(self) -> None:
        while True:
            try:
                self.runtime.honour_clears()
                await self.runtime.probe_resting()
            except Exception:  # the timer must survive anything
                logger.exception("cliproxy: quota probe failed")
            await asyncio.sleep(min(TICK_SECONDS, self.runtime.config.quota_probe_seconds))
