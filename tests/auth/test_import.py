"""Importing the Codex CLI's ~/.codex/auth.json."""

from __future__ import annotations

import json
import stat

import pytest

from cliproxy.auth.codex_import import SHARED_LOGIN_WARNING, CodexImportError, default_codex_auth_path, import_codex_auth
from cliproxy.auth.refresh import TokenRefresher
from cliproxy.auth.store import load_account
from tests.fakes.oauth_server import FakeOAuthServer, Identity


def codex_file(tmp_path, tokens: dict, **top) -> object:
    path = tmp_path / "codex" / "auth.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"OPENAI_API_KEY": None, "tokens": tokens, "last_refresh": "2026-01-01T00:00:00.123456789Z", **top}, indent=2)
    )
    return path


async def test_import_then_refresh(tmp_path):
    with FakeOAuthServer() as srv:
        issued = srv.issue(Identity("cx@example.com", "acct-cx", "pro"))
        src = codex_file(
            tmp_path, {k: issued[k] for k in ("id_token", "access_token", "refresh_token")} | {"account_id": "acct-cx"}, auth_mode="chatgpt"
        )
        result = import_codex_auth(tmp_path / "auth", src)
        assert result.path.name == "codex-cx@example.com-pro.json"
        assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
        data = json.loads(result.path.read_text())
        assert data["type"] == "codex" and data["email"] == "cx@example.com" and data["account_id"] == "acct-cx"
        assert data["refresh_token"] == issued["refresh_token"] and data["last_refresh"] == "2026-01-01T00:00:00Z"
        assert data["expired"]  # from the access token's exp
        # the imported login refreshes like any other
        fresh = await TokenRefresher(srv.url).ensure_fresh(load_account(result.path), force=True)
        assert fresh.refresh_token == srv.current_refresh_token("cx@example.com")
    assert "refresh" in SHARED_LOGIN_WARNING and "codex logout" in SHARED_LOGIN_WARNING


def test_account_id_from_id_token_when_missing(tmp_path):
    with FakeOAuthServer() as srv:
        issued = srv.issue(Identity("old@example.com", "acct-old", "plus"))
    src = codex_file(tmp_path, {k: issued[k] for k in ("id_token", "access_token", "refresh_token")})
    data = json.loads(import_codex_auth(tmp_path / "auth", src).path.read_text())
    assert data["account_id"] == "acct-old"


def test_api_key_only_file_is_rejected_clearly(tmp_path):
    src = tmp_path / "auth.json"
    src.write_text(json.dumps({"OPENAI_API_KEY": "sk-proj-abcdef123456", "tokens": None}))
    with pytest.raises(CodexImportError) as info:
        import_codex_auth(tmp_path / "auth", src)
    message = str(info.value)
    assert "API key" in message and "codex-api-key" in message and "sk-proj" not in message
    assert not (tmp_path / "auth").exists()


@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "no Codex login"),
        ("{oops", "not valid JSON"),
        ("[]", "not a Codex auth file"),
        (json.dumps({"tokens": {}}), "no ChatGPT tokens"),
        (json.dumps({"tokens": {"access_token": "a"}}), "no refresh token"),
    ],
)
def test_bad_files(tmp_path, content, fragment):
    src = tmp_path / "auth.json"
    if content is not None:
        src.write_text(content)
    with pytest.raises(CodexImportError, match=fragment):
        import_codex_auth(tmp_path / "auth", src)


def test_default_path_honours_codex_home(monkeypatch, tmp_path):
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "ch"))
    assert default_codex_auth_path() == tmp_path / "ch" / "auth.json"
    monkeypatch.delenv("CODEX_HOME")
    assert default_codex_auth_path().parts[-2:] == (".codex", "auth.json")
