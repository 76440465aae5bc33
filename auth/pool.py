"""Choosing an account for each request (pure account logic; no mitmproxy import).

Members are keyed by a stable id (the account file name). The pool only orders and filters them;
token freshness is the refresher's job and cooldown bookkeeping lives in `Member.cooldown_until`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Member:
    """One pool member: an OAuth account or an API-key upstream."""

    key: str  # stable id (account file name, or `api-key:<n>`)
    label: str  # safe display name (email or short id), never a secret
    source: Any  # the Account or ApiKeyUpstream it stands for
    cooldown_until: dict[str, float] = field(default_factory=dict)  # model ("*" = all) -> unix time

    def available(self, model: str, now: float) -> bool:
        return self.cooldown_until.get(model, 0) <= now and self.cooldown_until.get("*", 0) <= now

    def wait(self, model: str, now: float) -> float:
        return max(self.cooldown_until.get(model, 0), self.cooldown_until.get("*", 0)) - now


class Pool:
    """Round-robin or fill-first selection over the members that are not cooling down."""

    def __init__(self, strategy: str = "round-robin") -> None:
        self.strategy = strategy
        self.members: list[Member] = []
        self._cursor = itertools.count()

    def replace(self, members: Iterable[Member]) -> None:
        """Swap in a new member list, keeping the cooldowns of members that stay."""
        old = {m.key: m for m in self.members}
        fresh = []
        for m in members:
            if m.key in old:
                m.cooldown_until = old[m.key].cooldown_until
            fresh.append(m)
        self.members = sorted(fresh, key=lambda m: m.key)

    def candidates(self, model: str, exclude: set[str] = frozenset(), now: float | None = None) -> list[Member]:
        """Eligible members in the order they should be tried."""
        now = time.time() if now is None else now
        ready = [m for m in self.members if m.key not in exclude and m.available(model, now)]
        if not ready or self.strategy == "fill-first":
            return ready
        start = next(self._cursor) % len(ready)
        return ready[start:] + ready[:start]

    def soonest(self, model: str, now: float | None = None) -> float | None:
        """Seconds until some member is usable again for `model`, or None when the pool is empty."""
        now = time.time() if now is None else now
        waits = [m.wait(model, now) for m in self.members]
        return max(0.0, min(waits)) if waits else None
