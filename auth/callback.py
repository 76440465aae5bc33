"""Loopback HTTP server that receives the browser's OAuth redirect (RFC 8252 §7.3: a loopback redirect URI, port 1455 as the Codex CLI registers it).

Listens on 127.0.0.1, first on port 1455 then 1457: the issuer accepts only
`http://localhost:1455/auth/callback` and `http://localhost:1457/auth/callback`.
Routes: `GET /auth/callback` (checks `state`, handles `error`, redeems the code through the
caller's function, then redirects to `/success`), `GET /success`, `GET /cancel` (lets a newer
login stop this one, as the Codex CLI does). The first callback decides the login's outcome.
"""

from __future__ import annotations

import errno
import secrets
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cliproxy.auth.constants import CALLBACK_PATH, CALLBACK_PORTS, redirect_uri_for
from cliproxy.auth.oauth import LoginError, OAuthError
from cliproxy.auth.pages import error_page, info_page, success_page

SUCCESS_GRACE = 3.0  # seconds to keep serving /success after the code was redeemed


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    login: CallbackServer[Any]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "cliproxy-login"
    disable_nagle_algorithm = True
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # request lines carry the authorization code: never log them

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        login = self.server.login
        if url.path == CALLBACK_PATH:
            login._callback(self, {k: v[0] for k, v in parse_qs(url.query).items()})
        elif url.path == "/success":
            self.send_page(200, success_page())
            login._success_served.set()
        elif url.path == "/cancel":
            login._finish(LoginError("cancelled", "the login was cancelled by another login attempt"))
            self.send_page(200, info_page("Login cancelled", "This cliproxy login was cancelled."))
        else:
            self.send_page(404, info_page("Not found", "Nothing here."))

    def send_page(self, status: int, html: str, location: str | None = None) -> None:
        body = html.encode()
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class CallbackServer[T]:
    """Serve the callback until the first valid redirect; `redeem(code)` runs in the request thread
    and its return value is what `wait()` returns (its LoginError becomes the login's error)."""

    def __init__(self, state: str, redeem: Callable[[str], T], *, host: str = "127.0.0.1", ports: Sequence[int] = CALLBACK_PORTS) -> None:
        self.state = state
        self.redeem = redeem
        self.host = host
        self.ports = tuple(ports)
        self.port: int | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._success_served = threading.Event()
        self._claim = threading.Lock()
        self._claimed = False
        self._result: T | None = None
        self._error: BaseException | None = None

    @property
    def redirect_uri(self) -> str:
        assert self.port is not None, "server not started"
        return redirect_uri_for(self.port)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> CallbackServer[T]:
        busy = []
        for port in self.ports:
            try:
                server = _Server((self.host, port), _Handler)
            except OSError as exc:
                if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise LoginError(
                        "server_start_failed", f"cannot start the login callback server on {self.host}:{port}: {exc.strerror or exc}"
                    ) from None
                busy.append(port)
                continue
            server.login = self
            self._server, self.port = server, server.server_address[1]
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="cliproxy-login-callback", daemon=True
            )
            self._thread.start()
            return self
        ports = " and ".join(str(p) for p in busy)
        raise LoginError(
            "port_in_use",
            f"cannot listen for the sign-in callback: port{'s' if len(busy) > 1 else ''} {ports} on "
            f"{self.host} {'are' if len(busy) > 1 else 'is'} in use (the issuer only accepts these). "
            "Close the other login (another `cliproxy login`, `codex login` or CLIProxyAPI) or whatever "
            "uses the port, or sign in without a callback: `cliproxy login --device`.",
        )

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> CallbackServer[T]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait(self, timeout: float) -> T:
        """The redeemed result; LoginError / OAuthError on failure, `callback_timeout` after `timeout` s."""
        if not self._done.wait(timeout):
            minutes = f"{timeout / 60:g} minute{'s' if timeout != 60 else ''}" if timeout >= 60 else f"{timeout:g} seconds"
            raise LoginError(
                "callback_timeout",
                f"timed out after {minutes} waiting for the browser sign-in. Run `cliproxy login` again, "
                "or use `cliproxy login --device` if the browser cannot reach this machine.",
            )
        if self._error is not None:
            raise self._error
        # the browser follows the redirect to /success right away: keep serving until it has the page
        self._success_served.wait(SUCCESS_GRACE)
        return self._result  # type: ignore[return-value]

    # -- request handling (server threads) ----------------------------------------------------------
    def _finish(self, error: BaseException | None = None, result: T | None = None) -> None:
        if not self._done.is_set():
            self._error, self._result = error, result
            self._done.set()

    def _callback(self, handler: _Handler, query: dict[str, str]) -> None:
        with self._claim:
            if self._claimed:
                handler.send_page(409, info_page("Already finished", "This sign-in has already been handled. Return to the terminal."))
                return
            self._claimed = True
        state = query.get("state", "")
        if not state or not secrets.compare_digest(state, self.state):
            handler.send_page(400, error_page("The sign-in answer does not belong to this login (state mismatch)."))
            self._finish(
                LoginError(
                    "invalid_state",
                    "the browser returned a sign-in answer for another login "
                    "(state mismatch); nothing was saved. Run `cliproxy login` again.",
                )
            )
            return
        if query.get("error"):
            err = OAuthError(query["error"], query.get("error_description", ""))
            handler.send_page(400, error_page(str(err)))
            self._finish(err)
            return
        code = query.get("code")
        if not code:
            handler.send_page(400, error_page("No authorization code was received."))
            self._finish(LoginError("no_code", "the browser returned no authorization code. Run `cliproxy login` again."))
            return
        try:
            result = self.redeem(code)
        except LoginError as exc:
            handler.send_page(400, error_page(str(exc)))
            self._finish(exc)
            return
        except Exception as exc:  # unexpected: keep the details for the terminal, show a short page
            handler.send_page(500, error_page("cliproxy could not complete the sign-in."))
            self._finish(exc)
            return
        handler.send_page(302, info_page("Signed in", "Redirecting…"), location="/success")
        self._finish(result=result)
