"""Addon: true quota. An account resting on a usage limit has its `wham/usage` re-read every
`quota-probe-seconds`; its rest ends as soon as every window has room again (a banked reset credit was
spent, or the window reset early), instead of lasting until the reset the 429 announced. Rests lifted
by hand (`cliproxy rest clear`) are honoured on every tick and before every account choice.
"""

from __future__ import annotations

from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.mitm.ticking import TICK_SECONDS, Ticking


class QuotaProbe(Ticking):
    name = "cliproxy_quota_probe"
    WHAT = "quota probe"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def tick(self) -> None:
        self.runtime.honour_clears()
        await self.runtime.probe_resting()

    def pause(self) -> float:
        return min(TICK_SECONDS, self.runtime.config.quota_probe_seconds)
