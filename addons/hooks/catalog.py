"""Addon: keeps the live model catalog current while the proxy runs.

Each account's `GET /models` is read at start, again every `models-refresh-seconds`, and at the next
tick after an answer carried an `x-models-etag` that differs from the one read (CodexUpstream reports
those). Reads run beside serving: a slow or failing backend never holds a request up.
"""

from __future__ import annotations

from cliproxy.addons.core.runtime import Runtime
from cliproxy.addons.mitm.ticking import Ticking


class ModelCatalog(Ticking):
    name = "cliproxy_catalog"
    WHAT = "model catalog check"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def tick(self) -> None:
        self.runtime.catalog.start_due()

    def done(self) -> None:
        super().done()
        self.runtime.catalog.stop()
