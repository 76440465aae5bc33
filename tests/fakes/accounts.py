"""Account files like the ones `cliproxy login` writes, with JWT tokens shaped like the issuer's."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt

ACCOUNT_ID = "acct-0000-test"
_KEY = "fake-signing-key-for-tests-only-0000"  # HS256 needs 32+ bytes; nobody verifies it


def mint_account(
    auth_dir: Path,
    email: str = "dev@example.com",
    account_id: str = ACCOUNT_ID,
    plan: str = "plus",
    expires_in: int = 10 * 24 * 3600,
    name: str | None = None,
) -> Path:
    """Write an account file with JWT tokens like the real issuer's (signed with a dummy key)."""
    now = int(time.time())
    claims = {"https://api.openai.com/auth": {"chatgpt_account_id": account_id, "chatgpt_plan_type": plan}}
    id_token = jwt.encode({"email": email, "exp": now + 3600, "iat": now, **claims}, _KEY, algorithm="HS256")
    access = jwt.encode({"exp": now + expires_in, "iat": now, **claims}, _KEY, algorithm="HS256")
    auth_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = auth_dir / (name or f"codex-{email}-{plan}.json")
    path.write_text(
        json.dumps(
            {
                "type": "codex",
                "email": email,
                "account_id": account_id,
                "id_token": id_token,
                "access_token": access,
                "refresh_token": f"rt-{email}",
                "last_refresh": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "expired": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + expires_in)),
            }
        )
    )
    path.chmod(0o600)
    return path


def access_token_of(path: Path) -> str:
    return json.loads(path.read_text())["access_token"]
