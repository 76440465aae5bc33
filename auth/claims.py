"""Reading JWT claims of ChatGPT id/access tokens (the `https://api.openai.com/auth` claim carries the ChatGPT account id and plan).

Signatures are not verified: the issuer's keys are not available offline and the tokens come
straight from the issuer over TLS. The claims are hints for naming and display, nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt

from cliproxy.auth.constants import AUTH_CLAIMS, PROFILE_CLAIMS
from cliproxy.auth.timeutil import parse_time


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a token belongs to. Empty strings when unknown."""

    email: str = ""
    account_id: str = ""
    plan: str = ""
    user_id: str = ""


def decode_claims(token: str | None) -> dict[str, Any]:
    """The payload of a JWT, or `{}` when it is missing or not a readable JWT."""
    if not token or not isinstance(token, str):
        return {}
    try:
        # No signature check is possible offline; claims are hints only (see module docstring).
        payload = jwt.decode(token, options={"verify_signature": False})
    except Exception:  # pyjwt errors, bad base64, bad JSON: all mean "no claims"
        return {}
    return payload if isinstance(payload, dict) else {}


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _auth(claims: dict[str, Any]) -> dict[str, Any]:
    value = claims.get(AUTH_CLAIMS)
    return value if isinstance(value, dict) else {}


def identity_from_claims(claims: dict[str, Any]) -> Identity:
    auth = _auth(claims)
    profile = claims.get(PROFILE_CLAIMS)
    email = _text(claims.get("email")) or (_text(profile.get("email")) if isinstance(profile, dict) else "")
    return Identity(
        email=email,
        account_id=_text(auth.get("chatgpt_account_id")),
        plan=_text(auth.get("chatgpt_plan_type")),
        user_id=_text(auth.get("chatgpt_user_id")) or _text(auth.get("user_id")),
    )


def identity_from_id_token(id_token: str | None) -> Identity:
    """Email, ChatGPT account id, plan and user id from an id_token."""
    return identity_from_claims(decode_claims(id_token))


def identity_from_tokens(id_token: str | None, access_token: str | None) -> Identity:
    """Identity from the id_token, with gaps filled from the access token (which carries the same namespace)."""
    primary = identity_from_id_token(id_token)
    backup = identity_from_id_token(access_token)
    return Identity(
        email=primary.email or backup.email,
        account_id=primary.account_id or backup.account_id,
        plan=primary.plan or backup.plan,
        user_id=primary.user_id or backup.user_id,
    )


def token_expiry(token: str | None) -> datetime | None:
    """The `exp` of a JWT (the access token's is the real expiry), or None."""
    return parse_time(decode_claims(token).get("exp"))


def token_issued_at(token: str | None) -> datetime | None:
    return parse_time(decode_claims(token).get("iat"))
