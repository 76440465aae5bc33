"""Choosing an account for each request, and how failures cool accounts down (pure; no mitmproxy).

Members are keyed by a stable id (the account file name, or `api-key:<n>`). State is per member and
per model: a member that hit its usage limit for one model may still serve another.

Policy (as CLIProxyAPI's conductor applies it):
- 429 `usage_limit_reached` → cool down until the reset the backend announced;
- other 429 → exponential back-off (1 s, 2 s, 4 s … capped at 30 min);
- 5xx, 408 → a short cool-down (5 s); an unreachable backend → failover only (not the account's fault);
- 401 → the caller refreshes the token and retries once; if that fails the member is parked until
  it holds a new login (so is a member whose refresh token was refused);
- 400/404/409/413/422 → the request's own fault: no cool-down, no failover;
- success clears the model's state.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

TRANSIENT_COOLDOWN = 5.0
FORBIDDEN_COOLDOWN = 30 * 60.0
BACKOFF_CAP = 30 * 60.0
SESSION_TTL = 3600.0
MAX_SESSIONS = 10_000
REQUEST_FAULTS = frozenset({400, 404, 405, 409, 413, 422})


#: "Any model": cool-downs of the whole member, and sockets whose models are not known yet.
ANY_MODEL = "*"


@dataclass(slots=True)
class Member:
    """One pool member: an OAuth account or an API-key upstream."""

    key: str  # stable id (account file name, or `api-key:<n>`)
    label: str  # safe display name (email or short id), never a secret
    source: Any  # the Account or ApiKeyUpstream it stands for
    models: frozenset[str] | None = None  # models it serves; None = any
    cooldown_until: dict[str, float] = field(default_factory=dict)  # model ("*" = all) -> unix time
    backoff: dict[str, int] = field(default_factory=dict)  # model -> consecutive 429s without reset info
    quota: dict[str, Any] = field(default_factory=dict)  # last quota headers seen, parsed
    credential: str = ""  # fingerprint of the login (or key) it holds
    parked: bool = False  # its login is dead (refused by the backend or the issuer) until `credential` changes
    limited: set[str] = field(default_factory=set)  # cool-down keys that rest on a usage limit (re-read via wham/usage)

    def serves(self, model: str) -> bool:
        """Whether the member may be given `model` (ANY_MODEL: a socket whose turns' models are not known yet)."""
        return self.models is None or model == ANY_MODEL or model in self.models

    def available(self, model: str, now: float) -> bool:
        return not self.parked and self.cooldown_until.get(model, 0) <= now and self.cooldown_until.get("*", 0) <= now

    def wait(self, model: str, now: float) -> float:
        return max(self.cooldown_until.get(model, 0), self.cooldown_until.get("*", 0)) - now


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a failed attempt means: whether another member should be tried."""

    failover: bool
    cooldown: float | None  # seconds the member rests for this model (None = no change)
    park: bool = False  # the member's login is dead: out until it holds a new one
    usage_limit: bool = False  # the rest is a usage limit: worth re-reading the quota before it ends


def judge(status: int, retry_after: int | None, usage_limit: bool, backoff_level: int, unreachable: bool = False) -> Verdict:
    """Classify an upstream failure of one attempt. `unreachable`: the backend itself could not be reached."""
    if unreachable:
        return Verdict(True, None)  # not the member's fault: try the next one, rest nobody
    if status in REQUEST_FAULTS:
        return Verdict(False, None)
    if status == 429:
        if retry_after is not None:
            return Verdict(True, float(retry_after), usage_limit=usage_limit)
        if usage_limit:
            return Verdict(True, 3600.0, usage_limit=True)
        return Verdict(True, min(BACKOFF_CAP, float(2**backoff_level)))
    if status == 401:
        return Verdict(True, None, park=True)  # reached only once the caller's one refresh-and-retry failed
    if status in (402, 403):
        return Verdict(True, FORBIDDEN_COOLDOWN)
    return Verdict(True, TRANSIENT_COOLDOWN)


class Pool:
    """Round-robin or fill-first selection, sticky per conversation, skipping cooling members."""

    def __init__(self, strategy: str = "round-robin") -> None:
        self.strategy = strategy
        self.members: list[Member] = []
        self._cursor = itertools.count()
        self._sessions: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def replace(self, members: Iterable[Member]) -> None:
        """Swap in a new member list, keeping the state of members that stay."""
        old = {m.key: m for m in self.members}
        fresh = []
        for m in members:
            if m.key in old:
                was = old[m.key]
                m.cooldown_until, m.backoff, m.quota, m.limited = was.cooldown_until, was.backoff, was.quota, was.limited
                m.parked = was.parked and was.credential == m.credential  # a new login starts afresh
            fresh.append(m)
        self.members = sorted(fresh, key=lambda m: m.key)

    def get(self, key: str) -> Member | None:
        return next((m for m in self.members if m.key == key), None)

    def candidates(self, model: str, exclude: Iterable[str] = (), session: str | None = None, now: float | None = None) -> list[Member]:
        """Eligible members in the order they should be tried."""
        now = time.time() if now is None else now
        skip = set(exclude)
        ready = [m for m in self.members if m.key not in skip and m.serves(model) and m.available(model, now)]
        if ready and self.strategy != "fill-first":
            start = next(self._cursor) % len(ready)
            ready = ready[start:] + ready[:start]
        bound = self._bound(session, now)
        if bound is not None:
            for i, m in enumerate(ready):
                if m.key == bound:
                    ready.insert(0, ready.pop(i))
                    break
        return ready

    def soonest(self, model: str, now: float | None = None) -> float | None:
        """Seconds until some member serving `model` is usable again, or None when none serves it."""
        now = time.time() if now is None else now
        waits = [m.wait(model, now) for m in self.members if m.serves(model) and not m.parked]
        return max(0.0, min(waits)) if waits else None

    # -- outcomes -----------------------------------------------------------------------------------
    def succeeded(self, member: Member, model: str, session: str | None = None, now: float | None = None) -> None:
        member.cooldown_until.pop(model, None)
        member.backoff.pop(model, None)
        member.limited.discard(model)
        if session:
            self._bind(session, member.key, time.time() if now is None else now)

    def failed(self, member: Member, model: str, verdict: Verdict, scope: str | None = None, now: float | None = None) -> None:
        if verdict.park:
            self.park(member)
        if verdict.cooldown is None:
            return
        now = time.time() if now is None else now
        key = scope or model
        member.cooldown_until[key] = max(member.cooldown_until.get(key, 0), now + verdict.cooldown)
        member.backoff[model] = member.backoff.get(model, 0) + 1
        if verdict.usage_limit:
            member.limited.add(key)

    def lift(self, member: Member) -> bool:
        """End every rest of the member (its quota has room again, or its owner said so); whether it rested."""
        rested = bool(member.cooldown_until)
        member.cooldown_until.clear()
        member.backoff.clear()
        member.limited.clear()
        return rested

    def limited(self, now: float | None = None) -> list[Member]:
        """Members resting on a usage limit right now."""
        now = time.time() if now is None else now
        return [m for m in self.members if not m.parked and any(m.cooldown_until.get(k, 0) > now for k in m.limited)]

    def park(self, member: Member) -> None:
        """Take a member out until its login changes (a new account file, a new key)."""
        member.parked = True

    def count_parked(self, model: str) -> int:
        """How many members serving `model` wait for a new login."""
        return sum(1 for m in self.members if m.serves(model) and m.parked)

    # -- sticky sessions ----------------------------------------------------------------------------
    def pinned(self, session: str | None, now: float | None = None) -> Member | None:
        """The member a conversation is bound to, while the binding lasts."""
        key = self._bound(session, time.time() if now is None else now)
        return self.get(key) if key is not None else None

    def _bound(self, session: str | None, now: float) -> str | None:
        if not session or session not in self._sessions:
            return None
        key, expires = self._sessions[session]
        if expires < now:
            del self._sessions[session]
            return None
        return key

    def _bind(self, session: str, key: str, now: float) -> None:
        self._sessions[session] = (key, now + SESSION_TTL)
        self._sessions.move_to_end(session)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
