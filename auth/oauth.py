"""OAuth pieces of the browser login: PKCE, the authorize URL, the code exchange, errors (RFC 6749 §4.1 with PKCE, RFC 7636)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

from cliproxy.auth.constants import AUTHORIZE_PATH, AUTHORIZE_SCOPE, CLIENT_ID, REVOKE_PATH, TOKEN_PATH, endpoint
from cliproxy.auth.http import sync_client


class LoginError(Exception):
    """A login that did not work. `code` is a stable id (`port_in_use`, `callback_timeout`,
    `invalid_state`, `code_exchange_failed`, …); the message says what to do next, never a token."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class OAuthError(LoginError):
    """An error answered by the issuer: `error` / `error_description` (and the HTTP status if any)."""

    def __init__(self, error: str, error_description: str = "", status: int | None = None, message: str | None = None) -> None:
        self.error = error
        self.error_description = error_description
        self.status = status
        text = message or (f"sign-in failed: {error}" + (f" ({error_description})" if error_description else ""))
        super().__init__(error, text)


@dataclass(frozen=True, slots=True)
class PKCE:
    verifier: str = field(repr=False)
    challenge: str
    method: str = "S256"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def challenge_for(verifier: str) -> str:
    """S256 code challenge: base64url-no-pad(SHA-256(verifier))."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def generate_pkce() -> PKCE:
    """96 random bytes → a 128-char verifier, and its S256 challenge."""
    verifier = _b64url(secrets.token_bytes(96))
    return PKCE(verifier, challenge_for(verifier))


def generate_state() -> str:
    return secrets.token_urlsafe(32)


def build_authorize_url(issuer: str, state: str, challenge: str, redirect_uri: str) -> str:
    """The URL the user opens to sign in (query parameters as the Codex CLI / CLIProxyAPI send them)."""
    query = {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": AUTHORIZE_SCOPE,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "prompt": "login",
        "id_token_add_organizations": "true",
        "codex_cli_simplified_flow": "true",
    }
    return endpoint(issuer, AUTHORIZE_PATH) + "?" + urlencode(query)


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """The token endpoint's answer. Token fields are hidden from repr."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    id_token: str = field(repr=False)
    expires_in: int | None = None
    token_type: str = ""

    @classmethod
    def from_json(cls, data: Any) -> TokenResponse:
        if not isinstance(data, dict):
            raise ValueError("the token endpoint did not answer with a JSON object")
        text = lambda key: v if isinstance(v := data.get(key), str) else ""  # noqa: E731
        try:
            expires_in = int(data["expires_in"]) if data.get("expires_in") is not None else None
        except (TypeError, ValueError):
            expires_in = None
        return cls(text("access_token"), text("refresh_token"), text("id_token"), expires_in, text("token_type"))


def error_fields(body: Any) -> tuple[str, str]:
    """(`error` code, human description) from an OAuth / OpenAI error body, tolerant of both shapes:
    `{"error": "invalid_grant", "error_description": …}` and `{"error": {"code", "message"}}`."""
    if not isinstance(body, dict):
        return "", ""
    err = body.get("error")
    code, desc = "", ""
    if isinstance(err, str):
        code = err
    elif isinstance(err, dict):
        code = str(err.get("code") or err.get("type") or "")
        desc = str(err.get("message") or "")
    if isinstance(body.get("code"), str) and body["code"] and code in ("", "invalid_grant"):
        code = body["code"]  # e.g. {"error": "invalid_grant", "code": "refresh_token_reused"}
    desc = str(body.get("error_description") or desc or body.get("message") or "")
    return code, desc


def response_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, json.JSONDecodeError):
        return None


def revoke(issuer: str, refresh_token: str, access_token: str = "", *, client: httpx.Client | None = None) -> str | None:
    """Best-effort revocation of a login at the issuer, as the Codex CLI does on logout (RFC 7009):
    the refresh token (with the client id), else the access token. Returns why it failed, or None."""
    if refresh_token:
        body = {"token": refresh_token, "token_type_hint": "refresh_token", "client_id": CLIENT_ID}
    elif access_token:
        body = {"token": access_token, "token_type_hint": "access_token"}
    else:
        return "no token to revoke"
    own = client is None
    http = client or sync_client(timeout=10)
    try:
        response = http.post(endpoint(issuer, REVOKE_PATH), json=body)
    except httpx.HTTPError as exc:
        return f"cannot reach the issuer: {type(exc).__name__}"
    finally:
        if own:
            http.close()
    return None if response.status_code < 300 else f"the issuer answered HTTP {response.status_code}"


def exchange_code(issuer: str, code: str, redirect_uri: str, code_verifier: str, *, client: httpx.Client | None = None) -> TokenResponse:
    """Trade an authorization code for tokens (`grant_type=authorization_code`)."""
    url = endpoint(issuer, TOKEN_PATH)
    form = {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
    }
    own = client is None
    http = client or sync_client()
    try:
        response = http.post(url, data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise LoginError("code_exchange_failed", f"cannot reach the token endpoint {url}: {exc}") from None
    finally:
        if own:
            http.close()
    body = response_json(response)
    if response.status_code != 200:
        error, desc = error_fields(body)
        raise OAuthError(
            error or "code_exchange_failed",
            desc or f"the token endpoint answered HTTP {response.status_code}",
            response.status_code,
            message=f"exchanging the sign-in code failed: HTTP {response.status_code} {error}".rstrip() + (f" ({desc})" if desc else ""),
        )
    try:
        tokens = TokenResponse.from_json(body)
    except ValueError as exc:
        raise LoginError("code_exchange_failed", str(exc)) from None
    if not (tokens.access_token and tokens.refresh_token and tokens.id_token):
        raise LoginError("code_exchange_failed", "the token endpoint's answer lacks access_token, refresh_token or id_token")
    return tokens
