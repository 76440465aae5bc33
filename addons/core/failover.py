"""What one upstream attempt means for the request (pure; no mitmproxy import).

`decide` reads an attempt (status, headers, body, and for event streams what the collector made of
them) and says: answer the client with it, refresh the token and try again, try another account,
or fail with this client error. It also says how the account that made the attempt is judged
(`auth.pool.judge`). The upstream addon only does the I/O around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cliproxy.addons.translate import errors
from cliproxy.addons.translate.stream import Collector
from cliproxy.auth.pool import Verdict, judge

#: Marks a response cliproxy made up for an upstream that could not be reached (502) or stayed silent (504).
FAILURE_HEADER = "x-cliproxy-upstream-failure"

Action = Literal["answer", "refresh", "failover", "fail"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One upstream answer as the proxy received it."""

    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    collector: Collector | None = None  # the event stream read through, for a 200 event stream
    cut: bool = False  # the connection broke before the body ended

    @property
    def is_event_stream(self) -> bool:
        return self.status == 200 and self.headers.get("content-type", "").startswith("text/event-stream")


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    error: errors.ProxyError | None = None  # what the client gets when nothing better comes
    verdict: Verdict | None = None  # how the attempting member is judged (None: leave it alone)


def decide(attempt: Attempt, *, refreshed: bool, backoff_level: int) -> Decision:
    """The next step after `attempt`; `refreshed`: this request already refreshed the token once."""
    if attempt.is_event_stream:
        collector = attempt.collector
        if collector is not None and collector.terminal and collector.error is None:
            return Decision("answer")
        if collector is None or not collector.terminal:
            error = errors.ProxyError(
                502, "the upstream broke off its answer before the end; no account is to blame", "server_error", "upstream_disconnected"
            )
            return Decision("failover", error, Verdict(True, None))
        assert collector.error is not None, "a terminal stream without an error was answered above"
        return _judged(collector.error, refreshed, backoff_level)
    if attempt.status == 200:
        kind = attempt.headers.get("content-type", "") or "no content type"
        error = errors.ProxyError(
            502, f"the upstream answered 200 with {kind} instead of an event stream", "server_error", "bad_upstream_answer"
        )
        return Decision("fail", error)  # the same edge answers every account alike: rest nobody
    error = errors.from_upstream_response(attempt.status, attempt.body, attempt.headers)
    if FAILURE_HEADER in attempt.headers and attempt.status == 502:
        return Decision("failover", error, Verdict(True, None))  # unreachable: not the account's fault
    return _judged(error, refreshed, backoff_level)


def _judged(error: errors.ProxyError, refreshed: bool, backoff_level: int) -> Decision:
    if error.status == 401 and not refreshed:
        return Decision("refresh", error)
    usage_limit = "usage_limit_reached" in (error.type, error.code)
    verdict = judge(error.status, error.retry_after, usage_limit, backoff_level)
    return Decision("failover" if verdict.failover else "fail", error, verdict)
