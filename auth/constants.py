"""Fixed values of the ChatGPT ("Codex") OAuth client, as the Codex CLI uses them (openai/codex, codex-rs/login)."""

from __future__ import annotations

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"  # public client id of the Codex CLI
DEFAULT_ISSUER = "https://auth.openai.com"
DEFAULT_AUTH_DIR = "~/.cli-proxy-api"

AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/token"
REVOKE_PATH = "/oauth/revoke"
DEVICE_USERCODE_PATH = "/api/accounts/deviceauth/usercode"
DEVICE_TOKEN_PATH = "/api/accounts/deviceauth/token"
DEVICE_PAGE_PATH = "/codex/device"
DEVICE_REDIRECT_PATH = "/deviceauth/callback"

# The issuer accepts exactly these loopback redirect URIs (1457 is the Codex CLI's fallback).
CALLBACK_PORTS = (1455, 1457)
CALLBACK_PATH = "/auth/callback"
REDIRECT_URI = "http://localhost:1455/auth/callback"

AUTHORIZE_SCOPE = "openid email profile offline_access"
REFRESH_SCOPE = "openid profile email"

AUTH_CLAIMS = "https://api.openai.com/auth"  # namespace object in id/access tokens
PROFILE_CLAIMS = "https://api.openai.com/profile"

HTTP_TIMEOUT = 30.0  # seconds, per token-endpoint request


def endpoint(issuer: str, path: str) -> str:
    """`issuer` + `path`, tolerant of a trailing slash on the issuer."""
    return issuer.rstrip("/") + path


def redirect_uri_for(port: int) -> str:
    return f"http://localhost:{port}{CALLBACK_PATH}"
