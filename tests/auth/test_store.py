"""Account files: JWT claims, parsing, naming, atomic 0600 writes, tolerant loading."""

from __future__ import annotations

import json
import logging
import stat
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from cliproxy.auth.claims import decode_claims, identity_from_id_token, identity_from_tokens, token_expiry
from cliproxy.auth.store import (
    STATUS_KEY,
    Account,
    AccountFileError,
    account_filename,
    choose_account_path,
    fingerprint,
    load_account,
    load_accounts,
    mask,
    status_record,
    write_account_file,
)
from cliproxy.auth.timeutil import format_time, parse_time, relative

KEY = "k" * 32
NS = "https://api.openai.com/auth"


def tok(**claims) -> str:
    return jwt.encode(claims, KEY, algorithm="HS256")


def test_claims_are_read_without_verification_and_tolerate_garbage():
    id_token = tok(
        email="a@example.com",
        exp=2_000_000_000,
        **{NS: {"chatgpt_account_id": "acc-1", "chatgpt_plan_type": "pro", "chatgpt_user_id": "u1"}},
    )
    ident = identity_from_id_token(id_token)
    assert (ident.email, ident.account_id, ident.plan, ident.user_id) == ("a@example.com", "acc-1", "pro", "u1")
    assert token_expiry(id_token) == datetime.fromtimestamp(2_000_000_000, UTC)
    # padding stripped / garbage / wrong types never raise
    assert decode_claims(id_token.rstrip("=")) != {}
    for bad in ("", None, "abc", "a.b.c", "x." + "!!!" + ".y", 42):
        assert decode_claims(bad) == {}
    assert identity_from_id_token("nope").email == ""
    assert token_expiry(tok(exp="soon")) is None
    # profile namespace email fallback; access token fills gaps
    access = tok(**{"https://api.openai.com/profile": {"email": "p@example.com"}, NS: {"chatgpt_plan_type": "team"}})
    assert identity_from_tokens("", access).email == "p@example.com"
    assert identity_from_tokens(tok(email="x@y.z"), access).plan == "team"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-04-14T20:00:00+08:00", datetime(2026, 4, 14, 12, tzinfo=UTC)),
        ("2025-01-01T00:00:00.123456789Z", datetime(2025, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2025-01-01 10:20:30", datetime(2025, 1, 1, 10, 20, 30, tzinfo=UTC)),
        ("2025-01-01 10:20", datetime(2025, 1, 1, 10, 20, tzinfo=UTC)),
        (1_700_000_000, datetime.fromtimestamp(1_700_000_000, UTC)),
        (1_700_000_000_000, datetime.fromtimestamp(1_700_000_000, UTC)),
        ("1700000000", datetime.fromtimestamp(1_700_000_000, UTC)),
        ("garbage", None),
        ("", None),
        (None, None),
        (True, None),
        ({}, None),
    ],
)
def test_parse_time_formats(text, expected):
    assert parse_time(text) == expected


def test_format_and_relative():
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert format_time(at) == "2026-01-01T00:00:00Z"
    assert relative(at + timedelta(days=9, hours=3, minutes=5), at) == "in 9d 3h"
    assert relative(at - timedelta(hours=2), at) == "2h ago"
    assert relative(None) == "-"


def _data(exp_offset: int = 3600, **extra) -> dict:
    now = int(datetime.now(UTC).timestamp())
    claims = {NS: {"chatgpt_account_id": "1a2b3c4d-acct", "chatgpt_plan_type": "plus"}}
    return {
        "type": "codex",
        "email": "me@example.com",
        "account_id": "1a2b3c4d-acct",
        "id_token": tok(email="me@example.com", exp=now + 3600, **claims),
        "access_token": tok(exp=now + exp_offset, iat=now, **claims),
        "refresh_token": "rt_secret_value_123",
        "last_refresh": format_time(datetime.now(UTC)),
        "expired": "2000-01-01T00:00:00Z",
        **extra,
    }


def test_account_view(tmp_path):
    path = write_account_file(tmp_path / "codex-me@example.com-plus.json", _data(disabled=False, prefix="p"))
    acc = load_account(path)
    assert acc.name == "codex-me@example.com-plus.json"
    assert (acc.email, acc.account_id, acc.plan, acc.label) == ("me@example.com", "1a2b3c4d-acct", "plus", "me@example.com")
    # the access token's exp wins over the `expired` field
    assert acc.expires_at > datetime.now(UTC) and acc.state() == "ok" and not acc.disabled
    assert acc.refresh_token not in repr(acc) and acc.access_token not in repr(acc)
    # without a readable JWT the `expired` field counts
    acc2 = Account(path, {**acc.data, "access_token": "opaque"})
    assert acc2.expires_at == datetime(2000, 1, 1, tzinfo=UTC) and acc2.state() == "expired"
    assert Account(path, {**acc.data, "disabled": True}).state() == "disabled"
    anon = Account(tmp_path / "x.json", {"access_token": "opaque", "account_id": "1a2b3c4d-acct"})
    assert anon.label == "acct-1a2b3c"


def test_status_is_tied_to_the_refresh_token(tmp_path):
    data = _data()
    data[STATUS_KEY] = status_record("refresh_token_reused", "cannot refresh", data["refresh_token"])
    acc = Account(tmp_path / "a.json", data)
    assert acc.needs_login and acc.status.reason == "refresh_token_reused" and acc.state() == "needs-login"
    assert acc.status.at is not None
    # the file got new tokens from elsewhere (CLIProxyAPI, a re-login): the old verdict no longer applies
    assert not Account(tmp_path / "a.json", {**data, "refresh_token": "rt_other"}).needs_login
    assert not Account(tmp_path / "a.json", {**data, STATUS_KEY: {"state": "ok"}}).needs_login
    assert not Account(tmp_path / "a.json", {**data, STATUS_KEY: "garbage"}).needs_login
    assert fingerprint(data["refresh_token"]) not in data["refresh_token"]


def test_write_is_0600_in_a_0700_dir_and_preserves_unknown_keys(tmp_path):
    target = tmp_path / "new" / "nested" / "a.json"
    write_account_file(target, {"type": "codex", "weird": {"x": [1, 2]}, "access_token": "t"})
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert json.loads(target.read_text())["weird"] == {"x": [1, 2]}
    # overwriting a 0644 file still ends at 0600, and no temp files stay behind
    target.chmod(0o644)
    write_account_file(target, {"type": "codex", "access_token": "u"})
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]


def test_load_accounts_skips_broken_and_foreign_files(tmp_path, caplog):
    write_account_file(tmp_path / "good.json", _data())
    write_account_file(tmp_path / "notype.json", {"access_token": "x", "refresh_token": "y"})
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "gemini.json").write_text(json.dumps({"type": "gemini", "access_token": "x"}))
    (tmp_path / "empty.json").write_text(json.dumps({"type": None}))
    (tmp_path / ".hidden.json").write_text(json.dumps(_data()))
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "dir.json").mkdir()
    (tmp_path / "bad-utf8.json").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "huge-int.json").write_text('{"expires_in": ' + "9" * 5000 + "}")  # a ValueError that is no JSONDecodeError
    (tmp_path / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    with caplog.at_level(logging.WARNING, logger="auth"):
        accounts = load_accounts(tmp_path)
    assert [a.name for a in accounts] == ["good.json", "notype.json"]
    warned = caplog.text
    assert "broken.json" in warned and "list.json" in warned and "bad-utf8.json" in warned
    assert "huge-int.json: not valid JSON" in warned and "deep.json: not valid JSON" in warned
    assert load_accounts(tmp_path / "missing") == []
    with pytest.raises(AccountFileError, match="gemini.json"):
        load_account(tmp_path / "gemini.json")
    with pytest.raises(AccountFileError, match="no such file"):
        load_account(tmp_path / "nope.json")


def test_file_names(tmp_path):
    from cliproxy.auth.claims import Identity

    ident = Identity("me@example.com", "acct-1", " Team Plan ")
    assert account_filename(ident) == "codex-me@example.com-team-plan.json"
    assert account_filename(ident, hashed=True).startswith("codex-") and account_filename(ident, hashed=True).count("-") >= 3
    assert account_filename(Identity("a/../b@x", "", "")) == "codex-a_.._b@x.json"
    # a second workspace of the same email gets the hashed name; the same account reuses its file
    first = choose_account_path(tmp_path, ident)
    write_account_file(first, {"type": "codex", "email": "me@example.com", "account_id": "acct-1", "access_token": "a"})
    assert choose_account_path(tmp_path, ident) == first
    other = choose_account_path(tmp_path, Identity("me@example.com", "acct-2", "team plan"))
    assert other != first and other.name.endswith("-me@example.com-team-plan.json")


def test_mask():
    assert mask("eyJhbGciOiJIUzI1NiJ9.payload.sig") == "eyJh…"
    assert mask("short") == "…" and mask(None) == "-"
