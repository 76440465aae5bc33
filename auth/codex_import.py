"""Importing the Codex CLI's login (`$CODEX_HOME/auth.json`, default `~/.codex/auth.json`), a JSON file of
the form `{"tokens": {"id_token", "access_token", "refresh_token", "account_id"}, "last_refresh"}`.

After an import the Codex CLI and cliproxy hold the same refresh-token chain. Refresh tokens
rotate, so whichever refreshes first kills the other's copy: the caller must warn the user to stop
using that login in the Codex CLI (log it out there) or to sign in to cliproxy separately.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cliproxy.auth.login import LoginResult, save_tokens
from cliproxy.auth.oauth import TokenResponse
from cliproxy.auth.timeutil import parse_time

SHARED_LOGIN_WARNING = (
    "The Codex CLI and cliproxy now share one login. Refresh tokens are single-use: whichever program "
    'refreshes first logs the other out ("refresh token was already used"). Stop using this login in '
    "the Codex CLI (`codex logout`), or sign in to cliproxy separately with `cliproxy login`."
)


class CodexImportError(Exception):
    """The Codex auth file cannot be imported; the message says why and what to do instead."""


def default_codex_auth_path() -> Path:
    home = os.environ.get("CODEX_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".codex") / "auth.json"


def _str(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def import_codex_auth(auth_dir: Path, source: Path | None = None) -> LoginResult:
    """Copy the ChatGPT login in a Codex `auth.json` into the auth dir; returns the saved account."""
    source = Path(source).expanduser() if source else default_codex_auth_path()
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CodexImportError(
            f"no Codex login at {source}. Sign in with `codex login` first (with "
            '`cli_auth_credentials_store = "file"` if it keeps credentials in the OS keyring), '
            "or sign in to cliproxy directly with `cliproxy login`."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CodexImportError(f"cannot read {source}: {getattr(exc, 'strerror', None) or exc}") from None
    except ValueError as exc:
        raise CodexImportError(f"{source} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CodexImportError(f"{source} is not a Codex auth file (expected a JSON object)")
    tokens = t if isinstance(t := data.get("tokens"), dict) else {}
    access, refresh, id_token = _str(tokens.get("access_token")), _str(tokens.get("refresh_token")), _str(tokens.get("id_token"))
    if not (access or refresh):
        if _str(data.get("OPENAI_API_KEY")) or _str(data.get("auth_mode")).lower() == "apikey":
            raise CodexImportError(
                f"{source} holds an OpenAI API key, not a ChatGPT login, so there is nothing to import. "
                "To use the key through cliproxy, add it to config.yaml under `codex-api-key` "
                "(with `api-key` and `base-url: https://api.openai.com/v1`)."
            )
        raise CodexImportError(f"{source} holds no ChatGPT tokens; sign in with `codex login` or `cliproxy login`.")
    if not refresh:
        raise CodexImportError(f"{source} has no refresh token, so the login could not be kept alive; use `cliproxy login`.")
    result = save_tokens(
        auth_dir,
        TokenResponse(access, refresh, id_token),
        last_refresh=parse_time(data.get("last_refresh")),
        account_id=_str(tokens.get("account_id")) or None,
    )
    return result
