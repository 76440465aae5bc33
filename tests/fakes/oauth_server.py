"""A fake auth.openai.com on 127.0.0.1: browser (PKCE) login, device login and rotating refresh.

Behaves like the real issuer as described in shared/spec/auth*.md, strictly enough to catch
client mistakes: PKCE verifiers are checked, codes are single-use, refresh tokens rotate and a
reused one gets the real-shaped 401 `refresh_token_reused` body. Every request is recorded.

    with FakeOAuthServer(access_ttl=3600) as srv:
        path = srv.make_account(tmp_path / "auth", email="a@example.com")   # an account it knows
        ...                                                                  # issuer = srv.url
        assert srv.refresh_count() == 1 and srv.reused_count == 0

Browser logins: `browse(authorize_url)` plays the browser (authorize → 302 → local callback).
Device logins: approved after `device_approve_after` polls, or when a test calls `approve(code)`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
SIGNING_KEY = "fake-oauth-server-signing-key-not-a-secret"  # HS256; nobody verifies signatures
AUTH_NS = "https://api.openai.com/auth"
PROFILE_NS = "https://api.openai.com/profile"
REUSED_BODY = {
    "error": {
        "message": "Your refresh token has already been used to generate a new access token. Please try signing in again.",
        "type": "invalid_request_error",
        "param": None,
        "code": "refresh_token_reused",
    }
}
INVALIDATED_BODY = {
    "error": {
        "message": "Your refresh token has been invalidated. Please try signing in again.",
        "type": "invalid_request_error",
        "param": None,
        "code": "refresh_token_invalidated",
    }
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _challenge(verifier: str) -> str:
    return _b64url(hashlib.sha256(verifier.encode()).digest())


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass
class Recorded:
    """One request the server got, and the status it answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    form: dict[str, str]  # form or JSON body fields (strings)
    status: int = 0
    at: float = field(default_factory=time.monotonic)
    answered_at: float | None = None  # time.monotonic() once the answer was written to the socket
    # Did the client take the whole answer off its socket? True when it then closed cleanly (FIN) or sent
    # its next request; False when it was gone before the answer or its kernel reset the connection
    # (a process that dies with unread data in its socket makes the kernel send RST); None: not yet known.
    delivered: bool | None = None

    @property
    def grant_type(self) -> str | None:
        return self.form.get("grant_type")


@dataclass
class Identity:
    email: str = "user@example.com"
    account_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    plan: str = "plus"
    user_id: str = field(default_factory=lambda: "user-" + secrets.token_hex(6))


@dataclass
class Lineage:
    """One login's chain of rotating refresh tokens."""

    identity: Identity
    current: str  # the only refresh token that works
    refreshes: int = 0
    revoked: bool = False


@dataclass
class DeviceSession:
    device_auth_id: str
    user_code: str
    created: float
    identity: Identity
    polls: int = 0
    approved: bool = False
    denied: bool = False
    done: bool = False


class FakeOAuthServer:
    """The issuer. Options:

    access_ttl / id_ttl     seconds the issued tokens live (`expires_in`)
    latency                 seconds every refresh takes (widens race windows in tests)
    login_identity          who the browser/device logins sign in as
    device_interval         `interval` in the usercode answer (a string, like the live server)
    device_approve_after    approve automatically at this poll (None: wait for `approve()`)
    device_slow_down        answer this many polls with `slow_down` first
    device_expires_in       seconds after which a device code answers `expired_token`
    pending_status          403 or 404 for "not yet approved"
    authorize_error         redirect every authorize request back with `?error=<this>`
    strict_redirect_ports   accept only localhost:1455/1457 redirect URIs (default: any localhost port)
    """

    def __init__(
        self,
        *,
        access_ttl: int = 3600,
        id_ttl: int = 3600,
        latency: float = 0.0,
        login_identity: Identity | None = None,
        device_interval: str = "1",
        device_approve_after: int | None = None,
        device_slow_down: int = 0,
        device_expires_in: float = 900,
        pending_status: int = 403,
        authorize_error: str | None = None,
        strict_redirect_ports: bool = False,
    ) -> None:
        self.access_ttl = access_ttl
        self.id_ttl = id_ttl
        self.latency = latency
        self.login_identity = login_identity or Identity()
        self.device_interval = device_interval
        self.device_approve_after = device_approve_after
        self.device_slow_down = device_slow_down
        self.device_expires_in = device_expires_in
        self.pending_status = pending_status
        self.authorize_error = authorize_error
        self.strict_redirect_ports = strict_redirect_ports

        self.requests: list[Recorded] = []
        self.lineages: dict[str, Lineage] = {}  # lineage id → chain
        self.refresh_tokens: dict[str, str] = {}  # every refresh token ever issued → lineage id
        self.reused_count = 0  # answers with refresh_token_reused
        self.refresh_failures: list[tuple[int, Any]] = []  # (status, body) for the next refreshes
        self.codes: dict[str, dict[str, Any]] = {}
        self.devices: dict[str, DeviceSession] = {}
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FakeOAuthServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server, self._port = server, server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOAuthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._port is not None, "server not started"
        return f"http://127.0.0.1:{self._port}"

    # -- test controls and assertions ----------------------------------------------------------------
    def fail_refreshes(self, times: int = 1, status: int = 503, body: Any = None) -> None:
        """Answer the next `times` refresh requests with `status` (no rotation happens)."""
        with self._lock:
            self.refresh_failures.extend([(status, body if body is not None else {"error": "server_error"})] * times)

    def revoke(self, refresh_token: str) -> None:
        """Invalidate a login server-side (refresh then answers `refresh_token_invalidated`)."""
        with self._lock:
            self.lineages[self.refresh_tokens[refresh_token]].revoked = True

    def approve(self, user_code: str) -> None:
        with self._lock:
            next(d for d in self.devices.values() if d.user_code == user_code).approved = True

    def deny(self, user_code: str) -> None:
        with self._lock:
            next(d for d in self.devices.values() if d.user_code == user_code).denied = True

    def rotations(self) -> list[Recorded]:
        """Refresh requests that rotated a token (answered 200), in order."""
        with self._lock:
            return [r for r in self.refresh_requests() if r.status == 200]

    def refresh_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/oauth/token" and r.grant_type == "refresh_token"]

    def refresh_count(self, email: str | None = None) -> int:
        """Successful refreshes (rotations), for one login's email or all."""
        with self._lock:
            return sum(ln.refreshes for ln in self.lineages.values() if email is None or ln.identity.email == email)

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def current_refresh_token(self, email: str) -> str:
        with self._lock:
            return next(ln.current for ln in self.lineages.values() if ln.identity.email == email)

    # -- minting -----------------------------------------------------------------------------------
    def issue(self, identity: Identity, expires_in: int | None = None, lineage: str | None = None, age: int = 0) -> dict[str, Any]:
        """A token answer for `identity`; starts a new refresh-token lineage unless one is given.
        The access token expires in `expires_in` s (default `access_ttl`) and was issued `age` s ago."""
        with self._lock:
            now = int(time.time())
            ttl = self.access_ttl if expires_in is None else expires_in
            auth = {
                "chatgpt_account_id": identity.account_id,
                "chatgpt_plan_type": identity.plan,
                "chatgpt_user_id": identity.user_id,
                "user_id": identity.user_id,
            }
            access = jwt.encode(
                {
                    "iss": self.url,
                    "aud": ["https://api.openai.com/v1"],
                    "client_id": CLIENT_ID,
                    "sub": identity.user_id,
                    "iat": now - age,
                    "exp": now + ttl,
                    "jti": secrets.token_hex(8),
                    AUTH_NS: auth,
                    PROFILE_NS: {"email": identity.email, "email_verified": True},
                },
                SIGNING_KEY,
                algorithm="HS256",
            )
            id_token = jwt.encode(
                {
                    "iss": self.url,
                    "aud": [CLIENT_ID],
                    "sub": identity.user_id,
                    "email": identity.email,
                    "email_verified": True,
                    "iat": now,
                    "exp": now + self.id_ttl,
                    "jti": secrets.token_hex(8),
                    AUTH_NS: {
                        **auth,
                        "organizations": [
                            {"id": "org-" + identity.account_id[:8], "is_default": True, "role": "owner", "title": "Personal"}
                        ],
                    },
                },
                SIGNING_KEY,
                algorithm="HS256",
            )
            refresh = "rt_" + secrets.token_urlsafe(32)
            if lineage is None:
                lineage = uuid.uuid4().hex
                self.lineages[lineage] = Lineage(identity, refresh)
            else:
                self.lineages[lineage].current = refresh
            self.refresh_tokens[refresh] = lineage
            return {"access_token": access, "refresh_token": refresh, "id_token": id_token, "token_type": "Bearer", "expires_in": ttl}

    def make_account(
        self,
        auth_dir: Path,
        *,
        email: str = "user@example.com",
        plan: str = "plus",
        account_id: str | None = None,
        expires_in: int | None = None,
        age: int = 0,
        name: str | None = None,
        **extra: Any,
    ) -> Path:
        """Write an account file (like `cliproxy login` does) holding tokens this server knows: the access
        token expires in `expires_in` s (default `access_ttl`) and was issued `age` s ago (so a token can be
        "10 days old, 5 minutes left"). Extra keyword arguments become extra keys of the file."""
        identity = Identity(email, account_id or str(uuid.uuid4()), plan)
        tokens = self.issue(identity, expires_in, age=age)
        now = time.time()
        ttl = self.access_ttl if expires_in is None else expires_in
        data = {
            "type": "codex",
            "email": email,
            "account_id": identity.account_id,
            "id_token": tokens["id_token"],
            "access_token": tokens["access_token"],
            "refresh_token": tokens["refresh_token"],
            "last_refresh": _rfc3339(now - age),
            "expired": _rfc3339(now + ttl),
            "disabled": False,
            **extra,
        }
        auth_dir = Path(auth_dir)
        auth_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = auth_dir / (name or f"codex-{email}-{plan}.json")
        path.write_text(json.dumps(data, indent=2))
        path.chmod(0o600)
        return path

    # -- request handling (server threads) ------------------------------------------------------------
    def _handle(self, req: Recorded) -> tuple[int, dict[str, str], Any]:
        if req.method == "GET" and req.path == "/oauth/authorize":
            return self._authorize(req)
        if req.method == "POST" and req.path == "/oauth/token":
            return self._token(req)
        if req.method == "POST" and req.path == "/oauth/revoke":
            return self._revoke(req)
        if req.method == "POST" and req.path == "/api/accounts/deviceauth/usercode":
            return self._usercode(req)
        if req.method == "POST" and req.path == "/api/accounts/deviceauth/token":
            return self._device_poll(req)
        return 404, {}, {"error": "not_found"}

    def _redirect_ok(self, uri: str) -> bool:
        parts = urlsplit(uri)
        if parts.scheme != "http" or parts.hostname != "localhost" or parts.path != "/auth/callback":
            return False
        return not self.strict_redirect_ports or parts.port in (1455, 1457)

    def _authorize(self, req: Recorded) -> tuple[int, dict[str, str], Any]:
        q = req.query
        problems = []
        if q.get("client_id") != CLIENT_ID:
            problems.append("unknown client_id")
        if q.get("response_type") != "code":
            problems.append("response_type must be code")
        if not self._redirect_ok(q.get("redirect_uri", "")):
            problems.append("redirect_uri not allowed")
        if q.get("code_challenge_method") != "S256" or len(q.get("code_challenge", "")) != 43:
            problems.append("PKCE S256 challenge required")
        if not set(q.get("scope", "").split()) >= {"openid", "email", "profile", "offline_access"}:
            problems.append("scope must include openid email profile offline_access")
        if not q.get("state"):
            problems.append("state required")
        if problems:
            return 400, {}, {"error": "invalid_request", "error_description": "; ".join(problems)}
        target = q["redirect_uri"]
        if self.authorize_error:
            params = {"error": self.authorize_error, "error_description": "The user denied access", "state": q["state"]}
        else:
            code = "ac_" + secrets.token_urlsafe(24)
            with self._lock:
                self.codes[code] = {
                    "challenge": q["code_challenge"],
                    "redirect_uri": target,
                    "identity": self.login_identity,
                    "used": False,
                }
            params = {"code": code, "scope": q["scope"], "state": q["state"]}
        return 302, {"Location": f"{target}?{urlencode(params)}"}, None

    def _token(self, req: Recorded) -> tuple[int, dict[str, str], Any]:
        f = req.form
        if f.get("client_id") != CLIENT_ID:
            return 401, {}, {"error": "invalid_client", "error_description": "Unknown client"}
        if f.get("grant_type") == "authorization_code":
            return self._code_grant(f)
        if f.get("grant_type") == "refresh_token":
            if self.latency:
                time.sleep(self.latency)
            return self._refresh_grant(f)
        return 400, {}, {"error": "unsupported_grant_type"}

    def _code_grant(self, f: Mapping[str, str]) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            entry = self.codes.get(f.get("code", ""))
            if entry is None or entry["used"]:
                return 400, {}, {"error": "invalid_grant", "error_description": "Invalid or already used authorization code"}
            entry["used"] = True
            if f.get("redirect_uri") != entry["redirect_uri"]:
                return 400, {}, {"error": "invalid_grant", "error_description": "redirect_uri mismatch"}
            if _challenge(f.get("code_verifier", "")) != entry["challenge"]:
                return 400, {}, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
            return 200, {}, self.issue(entry["identity"])

    def _refresh_grant(self, f: Mapping[str, str]) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            if self.refresh_failures:
                status, body = self.refresh_failures.pop(0)
                return status, {}, body
            token = f.get("refresh_token", "")
            if not token:
                return (
                    400,
                    {},
                    {
                        "error": {
                            "message": "Invalid 'refresh_token': empty string.",
                            "type": "invalid_request_error",
                            "param": "refresh_token",
                            "code": "empty_string",
                        }
                    },
                )
            lineage_id = self.refresh_tokens.get(token)
            if lineage_id is None:
                return 400, {}, {"error": "invalid_grant", "error_description": "Unknown refresh token"}
            lineage = self.lineages[lineage_id]
            if lineage.revoked:
                return 401, {}, INVALIDATED_BODY
            if token != lineage.current:
                self.reused_count += 1
                return 401, {}, REUSED_BODY
            lineage.refreshes += 1
            return 200, {}, self.issue(lineage.identity, lineage=lineage_id)

    def _revoke(self, req: Recorded) -> tuple[int, dict[str, str], Any]:
        """RFC 7009-style: 200 whether or not the token was known; a known refresh token ends its login."""
        with self._lock:
            token, hint = req.form.get("token", ""), req.form.get("token_type_hint")
            if not token or hint not in ("refresh_token", "access_token"):
                return 400, {}, {"error": "invalid_request"}
            if hint == "refresh_token" and req.form.get("client_id") != CLIENT_ID:
                return 400, {}, {"error": "invalid_client"}
            if hint == "refresh_token" and token in self.refresh_tokens:
                self.lineages[self.refresh_tokens[token]].revoked = True
            return 200, {}, {}

    def _usercode(self, req: Recorded) -> tuple[int, dict[str, str], Any]:
        if req.form.get("client_id") != CLIENT_ID:
            return 400, {}, {"error": "invalid_client"}
        with self._lock:
            session = DeviceSession(
                "dev_" + secrets.token_urlsafe(16),
                f"{secrets.token_hex(2).upper()}-{secrets.token_hex(3).upper()}",
                time.monotonic(),
                self.login_identity,
            )
            self.devices[session.device_auth_id] = session
        return 200, {}, {"device_auth_id": session.device_auth_id, "user_code": session.user_code, "interval": self.device_interval}

    def _device_poll(self, req: Recorded) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            session = self.devices.get(req.form.get("device_auth_id", ""))
            if session is None or session.user_code != req.form.get("user_code") or session.done:
                return 400, {}, {"error": "invalid_request", "error_description": "Unknown device code"}
            session.polls += 1
            if time.monotonic() - session.created > self.device_expires_in:
                return 400, {}, {"error": "expired_token", "error_description": "Device code expired"}
            if session.polls <= self.device_slow_down:
                return 400, {}, {"error": "slow_down", "error_description": "Polling too fast"}
            if session.denied:
                return 403, {}, {"error": "access_denied", "error_description": "The user denied the request"}
            auto = self.device_approve_after is not None and session.polls >= self.device_approve_after
            if not (session.approved or auto):
                return self.pending_status, {}, {"error": {"code": "deviceauth_authorization_pending", "message": "Authorization pending"}}
            session.done = True
            verifier = _b64url(secrets.token_bytes(64))
            code = "ac_" + secrets.token_urlsafe(24)
            self.codes[code] = {
                "challenge": _challenge(verifier),
                "redirect_uri": self.url + "/deviceauth/callback",
                "identity": session.identity,
                "used": False,
            }
            return 200, {}, {"authorization_code": code, "code_verifier": verifier, "code_challenge": _challenge(verifier)}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # one write per response (flushed by the base class); no Nagle / delayed-ACK stalls
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _serve(self) -> None:
        self._served = True
        self._settle(True)  # a new request on this connection: the previous answer was read
        fake: FakeOAuthServer = self.server.fake  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        form: dict[str, str] = {}
        if raw and "json" in ctype:
            try:
                body = json.loads(raw)
                form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()} if isinstance(body, dict) else {}
            except ValueError:
                form = {}
        elif raw:
            form = {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
        req = Recorded(
            self.command, url.path, {k: v[0] for k, v in parse_qs(url.query).items()}, {k.lower(): v for k, v in self.headers.items()}, form
        )
        with fake._lock:
            fake.requests.append(req)
        status, headers, body = fake._handle(req)
        req.status = status
        data = json.dumps(body).encode() if body is not None else b""
        if req.grant_type == "refresh_token" and status == 200:
            self._pending = req
            if not self._client_alive():
                req.delivered = False
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        req.answered_at = time.monotonic()

    def _client_alive(self) -> bool:
        """False when the client has already closed or reset the connection (it cannot get the answer)."""
        try:
            return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False

    def handle_one_request(self) -> None:
        """Serve one request; also learn whether the previous refresh answer reached the client."""
        self._served = False
        try:
            super().handle_one_request()
        except OSError:  # reset: the client died with the answer unread (or before it came)
            self.close_connection = True
            self._settle(False)
            return
        if not self._served:  # end of stream after the answer: the client read it, then closed
            self._settle(True)

    def _settle(self, delivered: bool) -> None:
        pending, self._pending = getattr(self, "_pending", None), None
        if pending is not None and pending.delivered is None:
            pending.delivered = delivered

    def finish(self) -> None:
        if getattr(self, "_pending", None) is not None:  # the handler ended without hearing back: ask the socket
            try:
                self.connection.settimeout(5)
                self.connection.recv(1)
                self._settle(True)
            except OSError:
                self._settle(False)
        try:
            super().finish()
        except OSError:
            pass

    do_GET = _serve
    do_POST = _serve


def browse(url: str, timeout: float = 10.0) -> httpx.Response:
    """Play the browser: open `url` (an authorize URL) and follow the redirects to the local callback
    and its success page. Returns the last response."""
    with httpx.Client(trust_env=False, timeout=timeout, follow_redirects=True) as client:
        return client.get(url)
