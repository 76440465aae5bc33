"""The pure parts of Responses over WebSocket: client frames, warm-ups, error frames, backend frames, quota events."""

import json
from datetime import UTC, datetime

import pytest

from cliproxy.addons.translate import errors
from cliproxy.addons.translate import responses_ws as wire
from cliproxy.addons.translate.codex_body import Settings
from cliproxy.auth.quota import parse_rate_limit_event

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def create(**extra):
    return {
        "type": "response.create",
        "model": "gpt-5.5",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        **extra,
    }


@pytest.mark.parametrize(
    "raw,needle",
    [
        (b"nope", "not valid JSON"),
        (b'{"type": "response.create", "input": "\\ud800"}', "unpaired UTF-16 surrogate"),
        (b"[1]", "JSON object with a string `type`"),
        (b'{"type": 3}', "JSON object with a string `type`"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_bad_frames(raw, needle):
    with pytest.raises(errors.ProxyError) as exc:
        wire.parse_frame(raw)
    assert exc.value.status == 400 and needle in exc.value.message


@pytest.mark.parametrize(
    "extra,check",
    [
        ({}, lambda f: "previous_response_id" not in f and f["store"] is False and f["type"] == "response.create"),
        ({"previous_response_id": "resp_1"}, lambda f: f["previous_response_id"] == "resp_1"),  # kept: the socket holds the history
        (
            {"model": "gpt-5.5(high)", "temperature": 1},
            lambda f: f["model"] == "gpt-5.5" and f["reasoning"]["effort"] == "high" and "temperature" not in f,
        ),
        ({"generate": False}, lambda f: "generate" not in f),
    ],
)
def test_translate(extra, check):
    turn = wire.Conversation().translate(create(**extra), Settings())
    assert check(turn.frame), turn.frame
    assert turn.warmup is (extra.get("generate") is False)


@pytest.mark.parametrize(
    "extra,param",
    [
        ({"previous_response_id": ""}, "previous_response_id"),
        ({"generate": "no"}, "generate"),
        ({"model": None}, "model"),
        ({"input": 5}, "input"),
    ],
)
def test_translate_refuses(extra, param):
    with pytest.raises(errors.ProxyError) as exc:
        wire.Conversation().translate(create(**extra), Settings())
    assert exc.value.status == 400 and exc.value.param == param


def test_a_turn_after_a_local_warmup_carries_the_warmups_input():
    conv = wire.Conversation()
    warm = conv.translate(create(generate=False), Settings())
    created, completed = [json.loads(e) for e in conv.warmup_events(warm)]
    assert (created["type"], completed["type"]) == ("response.created", "response.completed")
    assert created["response"]["id"] == completed["response"]["id"] and completed["response"]["status"] == "completed"
    follow = conv.translate(create(previous_response_id=completed["response"]["id"]), Settings())
    assert "previous_response_id" not in follow.frame and len(follow.frame["input"]) == 2


def test_error_frame_shape():
    frame = json.loads(wire.error_frame(errors.ProxyError(429, "wait", "rate_limit_error", "model_cooldown", retry_after=30)))
    assert frame == {
        "type": "error",
        "status": 429,
        "error": {"message": "wait", "type": "rate_limit_error", "param": None, "code": "model_cooldown", "resets_in_seconds": 30},
    }


@pytest.mark.parametrize(
    "event,status,code,usage_limit",
    [
        (
            {"type": "error", "status": 429, "error": {"type": "usage_limit_reached", "message": "m", "resets_in_seconds": 60}},
            429,
            "usage_limit_reached",
            True,
        ),
        (
            {
                "type": "error",
                "status_code": 400,
                "error": {"type": "invalid_request_error", "code": "websocket_connection_limit_reached", "message": "m"},
            },
            400,
            "websocket_connection_limit_reached",
            False,
        ),
        ({"type": "error", "error": {"message": "m"}}, 400, None, False),
        (
            {"type": "response.failed", "response": {"error": {"code": "server_is_overloaded", "message": "m"}}},
            500,
            "server_is_overloaded",
            False,
        ),
    ],
)
def test_error_of(event, status, code, usage_limit):
    err = wire.error_of(event)
    assert (err.status, err.code, wire.is_usage_limit(err)) == (status, code, usage_limit)


def test_other_events_are_not_errors():
    assert wire.error_of({"type": "response.completed"}) is None
    assert wire.server_event(b"[]") is None and wire.server_event(b"x") is None


@pytest.mark.parametrize(
    "window,expected",
    [
        (
            {"used_percent": 12.5, "window_minutes": 300, "reset_after_seconds": 60},
            {"used_percent": 12.5, "window_minutes": 300, "resets_at": "2026-12-01T00:01:00+00:00"},
        ),
        ({"used_percent": 3, "resets_in_seconds": 120}, {"used_percent": 3.0, "resets_at": "2026-12-01T00:02:00+00:00"}),
        ({"used_percent": 3, "reset_at": 1_796_083_200}, {"used_percent": 3.0, "resets_at": "2026-12-01T00:00:00+00:00"}),
        ({"used_percent": True}, None),
        ("junk", None),
    ],
)
def test_rate_limit_event(window, expected):
    got = parse_rate_limit_event({"type": "codex.rate_limits", "rate_limits": {"primary": window}}, now=NOW)
    assert got.get("primary") == expected


def test_rate_limit_event_without_limits_is_empty():
    assert parse_rate_limit_event({"type": "codex.rate_limits"}) == {}
