"""The usage endpoint's answer from the pool's quota state (pure)."""

from datetime import UTC, datetime, timedelta

import pytest

from cliproxy.addons.core import usage
from cliproxy.auth.pool import Member

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
T = NOW.timestamp()


def at(seconds: float) -> str:
    return (NOW + timedelta(seconds=seconds)).isoformat(timespec="seconds")


def member(key: str, primary=None, secondary=None) -> Member:
    quota = {}
    if primary is not None:
        quota["primary"] = {"used_percent": primary[0], "window_minutes": 300, "resets_at": at(primary[1])}
    if secondary is not None:
        quota["secondary"] = {"used_percent": secondary[0], "window_minutes": 10080, "resets_at": at(secondary[1])}
    return Member(key, key, None, quota=quota)


def test_one_account_in_the_endpoint_shape():
    body = usage.payload([member("a", (12.5, 9000), (40, 300000))], {"a": "pro"}, NOW, "account")
    assert body["plan_type"] == "pro" and body["cliproxy_scope"] == "account"
    assert body["rate_limit"] == {
        "allowed": True,
        "limit_reached": False,
        "primary_window": {"used_percent": 12, "limit_window_seconds": 18000, "reset_after_seconds": 9000, "reset_at": int(T) + 9000},
        "secondary_window": {
            "used_percent": 40,
            "limit_window_seconds": 604800,
            "reset_after_seconds": 300000,
            "reset_at": int(T) + 300000,
        },
    }
    assert body["credits"] == {"has_credits": False, "unlimited": False, "balance": "0"}
    assert body["rate_limit_reset_credits"] == {"available_count": 0} and body["additional_rate_limits"] == []
    assert all(isinstance(v, int) for w in ("primary_window", "secondary_window") for v in body["rate_limit"][w].values())


@pytest.mark.parametrize(
    "members,primary_used,primary_reset,reached",
    [
        ([member("a", (100, 600)), member("b", (0, 9000))], 50, 600, False),  # the pool's mean; reset the soonest
        ([member("a", (100, 600)), member("b", (100, 60))], 100, 60, True),  # every account spent: the limit is reached
        ([member("a", (100, -5)), member("b", (60, 9000))], 30, 9000, False),  # a window whose reset passed is unused again
        ([member("a", (30, 600)), member("b")], 30, 600, False),  # an account with no quota seen yet does not count
    ],
)
def test_pool_summary(members, primary_used, primary_reset, reached):
    body = usage.payload(members, {}, T, "pool")
    w = body["rate_limit"]["primary_window"]
    assert (w["used_percent"], w["reset_after_seconds"], body["rate_limit"]["limit_reached"]) == (primary_used, primary_reset, reached)
    assert body["rate_limit"]["allowed"] is not reached and "secondary_window" not in body["rate_limit"]


def test_nothing_known_yet_has_no_windows():
    assert usage.payload([member("a")], {}, T)["rate_limit"] == {"allowed": True, "limit_reached": False}


@pytest.mark.parametrize(
    "plans,expected",
    [
        ({"a": "plus", "b": "pro", "c": "pro"}, "pro"),  # the most common
        ({"a": "Team"}, "team"),
        ({"a": "chatgpt-mystery"}, "plus"),  # a name the Codex CLI cannot decode is never sent
        ({}, "plus"),
    ],
)
def test_plan_type(plans, expected):
    assert usage.payload([member(k) for k in ("a", "b", "c")], plans, T)["plan_type"] == expected


@pytest.mark.parametrize(
    "headers,query,expected",
    [
        ({"session-id": "t1"}, {}, "t1"),
        ({"session_id": "t2"}, {}, "t2"),
        ({"thread-id": "t3"}, {}, "t3"),
        ({}, {"prompt_cache_key": "k"}, "k"),
        ({"user-agent": "codex"}, {}, None),
    ],
)
def test_session_of(headers, query, expected):
    assert usage.session_of(headers, query) == expected
