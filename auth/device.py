"""OpenAI's device-code login for machines without a browser (its own flow, as the Codex CLI uses it; not RFC 8628).

1. `POST {issuer}/api/accounts/deviceauth/usercode` `{"client_id"}` → device_auth_id, user_code, interval;
2. the user opens `{issuer}/codex/device` elsewhere and enters the code;
3. poll `POST {issuer}/api/accounts/deviceauth/token` every `interval` s: 403/404 = pending,
   2xx = approved with an authorization code and the server-made PKCE verifier; 15-minute limit;
4. exchange the code with `redirect_uri={issuer}/deviceauth/callback`.

OpenAI's flow is not known to ask a client to slow down; if an answer carries `slow_down`
(RFC 8628 wording) the interval grows by 5 s, and a 429 is treated the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cliproxy.auth.constants import (
    CLIENT_ID,
    DEFAULT_ISSUER,
    DEVICE_PAGE_PATH,
    DEVICE_REDIRECT_PATH,
    DEVICE_TOKEN_PATH,
    DEVICE_USERCODE_PATH,
    endpoint,
)
from cliproxy.auth.http import sync_client
from cliproxy.auth.login import LoginResult, save_tokens
from cliproxy.auth.oauth import LoginError, error_fields, exchange_code, response_json

DEVICE_TIMEOUT = 15 * 60.0
DEFAULT_INTERVAL = 5.0
SLOW_DOWN_STEP = 5.0
MAX_NETWORK_ERRORS = 5  # consecutive failed polls before giving up

Sleep = Callable[[float], None]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class DeviceCode:
    device_auth_id: str = field(repr=False)
    user_code: str
    interval: float
    verification_url: str


@dataclass(frozen=True, slots=True)
class DeviceGrant:
    authorization_code: str = field(repr=False)
    code_verifier: str = field(repr=False)


def _duration(seconds: float) -> str:
    if seconds >= 60:
        minutes = seconds / 60
        return f"{minutes:g} minute{'' if minutes == 1 else 's'}"
    return f"{seconds:g} seconds"


def parse_interval(value: Any) -> float:
    """Polling interval in seconds; the server sends a number or a numeric string (default 5)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return DEFAULT_INTERVAL
    return seconds if 0 < seconds < 3600 else DEFAULT_INTERVAL


def request_device_code(issuer: str, client: httpx.Client) -> DeviceCode:
    url = endpoint(issuer, DEVICE_USERCODE_PATH)
    try:
        response = client.post(url, json={"client_id": CLIENT_ID})
    except httpx.HTTPError as exc:
        raise LoginError("device_code_failed", f"cannot reach {url}: {exc}") from None
    if response.status_code == 404:
        raise LoginError("device_unavailable", f"{issuer} offers no device-code login (HTTP 404). Use the browser login: `cliproxy login`.")
    body = response_json(response)
    if not 200 <= response.status_code < 300 or not isinstance(body, dict):
        _, desc = error_fields(body)
        raise LoginError(
            "device_code_failed", f"requesting a device code failed: HTTP {response.status_code}" + (f" ({desc})" if desc else "")
        )
    device_auth_id = body.get("device_auth_id")
    user_code = body.get("user_code") or body.get("usercode")
    if not isinstance(device_auth_id, str) or not isinstance(user_code, str) or not device_auth_id or not user_code:
        raise LoginError("device_code_failed", "the device-code answer lacks device_auth_id or user_code")
    return DeviceCode(device_auth_id, user_code, parse_interval(body.get("interval")), endpoint(issuer, DEVICE_PAGE_PATH))


def _wait(seconds: float, deadline: float, sleep: Sleep, clock: Clock, on_progress: Callable[[float], None] | None) -> None:
    """Sleep `seconds` (never past `deadline`) in steps of at most 1 s, reporting the time left."""
    end = min(clock() + seconds, deadline)
    while (left := end - clock()) > 0:
        if on_progress is not None:
            on_progress(max(0.0, deadline - clock()))
        sleep(min(1.0, left))


def poll_for_grant(
    issuer: str,
    code: DeviceCode,
    client: httpx.Client,
    *,
    timeout: float = DEVICE_TIMEOUT,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
    on_progress: Callable[[float], None] | None = None,
) -> DeviceGrant:
    """Poll until the user approves the code; LoginError when denied, expired or after `timeout` s."""
    url = endpoint(issuer, DEVICE_TOKEN_PATH)
    deadline = clock() + timeout
    interval, network_errors = code.interval, 0
    while True:
        _wait(interval, deadline, sleep, clock, on_progress)
        if clock() >= deadline:
            raise LoginError(
                "device_timeout", f"the device code was not approved within {_duration(timeout)}. Run `cliproxy login --device` again."
            )
        try:
            response = client.post(url, json={"device_auth_id": code.device_auth_id, "user_code": code.user_code})
        except httpx.HTTPError as exc:
            network_errors += 1
            if network_errors >= MAX_NETWORK_ERRORS:
                raise LoginError("device_poll_failed", f"cannot reach {url}: {exc}") from None
            continue
        network_errors = 0
        body = response_json(response)
        if 200 <= response.status_code < 300:
            grant = body if isinstance(body, dict) else {}
            auth_code, verifier = grant.get("authorization_code"), grant.get("code_verifier")
            if not isinstance(auth_code, str) or not isinstance(verifier, str) or not auth_code or not verifier:
                raise LoginError("device_poll_failed", "the approval answer lacks authorization_code or code_verifier")
            return DeviceGrant(auth_code, verifier)
        error, desc = error_fields(body)
        if "slow_down" in (error, desc) or response.status_code == 429:
            interval += SLOW_DOWN_STEP
        elif error in ("expired_token", "deviceauth_expired"):
            raise LoginError("device_expired", "the device code expired. Run `cliproxy login --device` again.")
        elif error in ("access_denied", "authorization_declined"):
            raise LoginError("device_denied", "the sign-in was denied on the device page.")
        elif response.status_code not in (403, 404):  # 403/404 mean "not approved yet"
            raise LoginError(
                "device_poll_failed",
                f"device login failed: HTTP {response.status_code}" + (f" {error}" if error else "") + (f" ({desc})" if desc else ""),
            )


def device_login(
    auth_dir: Path,
    issuer: str = DEFAULT_ISSUER,
    *,
    on_code: Callable[[DeviceCode], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
    timeout: float = DEVICE_TIMEOUT,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
    client: httpx.Client | None = None,
) -> LoginResult:
    """The whole device flow; `on_code` shows the URL and code to the user, `on_progress(seconds_left)`
    is called about once a second while waiting."""
    own = client is None
    http = client or sync_client()
    try:
        code = request_device_code(issuer, http)
        if on_code is not None:
            on_code(code)
        grant = poll_for_grant(issuer, code, http, timeout=timeout, sleep=sleep, clock=clock, on_progress=on_progress)
        tokens = exchange_code(issuer, grant.authorization_code, endpoint(issuer, DEVICE_REDIRECT_PATH), grant.code_verifier, client=http)
    finally:
        if own:
            http.close()
    return save_tokens(auth_dir, tokens)
