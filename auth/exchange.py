"""One token refresh exchange in a child process: POST the refresh, journal a 200 answer, report back.

    python -m cliproxy.auth.exchange < job.json > outcome.json

Why a child process: once the issuer has answered, the old refresh token is dead and the answer is
the only copy of the new one. In the proxy's own process the answer would wait for the GIL (the event
loop may be busy with many flows) before it could be journaled, and a crash of the proxy in that
time loses the login. The child does nothing else, so the journal write follows the read at once,
and it outlives a crash of its parent: the request in flight is still answered and journaled. It
inherits the parent's lock on the account (the flock lives as long as any copy of its descriptor),
so nobody else refreshes the account until the child is done, even if the parent died.

The job (stdin, never argv: argv is visible to other users) is a JSON object: `url`, `form`,
`header` (the journal header, latin-1), `account` (path), `timeout`. The outcome (stdout) is
`{"status", "body" (base64), "journaled"}` or `{"error": "connect" | "incomplete", "message"}`.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from cliproxy.auth.http import sync_client

# The journal file itself (`auth.journal` has the rest); here because the child imports nothing heavier.
MAGIC = b"cliproxy-refresh-journal 1 "
SUFFIX = ".refresh-journal"


def journal_path(account_path: Path) -> Path:
    return account_path.with_name(f".{account_path.name}{SUFFIX}")


def write_journal(account_path: Path, header: bytes, body: bytes) -> None:
    """Write and fsync the journal (file and directory). Mode 0600; an old journal is overwritten."""
    path = journal_path(account_path)
    data = header + str(int(time.time())).encode() + b"\n" + body
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, 0o600)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def run(job: dict[str, Any]) -> dict[str, Any]:
    outcome: dict[str, Any] = {"journaled": False}
    try:
        with sync_client(float(job["timeout"])) as client:
            response = client.post(job["url"], data=job["form"], headers={"Accept": "application/json"})
            if response.status_code == 200:
                try:  # the old refresh token is spent: nothing but this write comes first
                    write_journal(Path(job["account"]), job["header"].encode("latin-1"), response.content)
                    outcome["journaled"] = True
                except OSError as exc:
                    outcome["journal_error"] = f"{exc.__class__.__name__}: {exc.strerror or exc}"
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        return {"error": "connect", "message": f"{exc.__class__.__name__}: {exc}"}
    except httpx.HTTPError as exc:
        return {"error": "incomplete", "message": f"{exc.__class__.__name__}: {exc}"}
    outcome["status"] = response.status_code
    outcome["body"] = base64.b64encode(response.content).decode()
    return outcome


def serve(exchange: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """The child's life: the task as JSON on stdin, the outcome as JSON on stdout (a parent gone is no error)."""
    outcome = exchange(json.loads(sys.stdin.buffer.read()))
    try:
        sys.stdout.write(json.dumps(outcome))
        sys.stdout.flush()
    except BrokenPipeError:  # the parent died; the journal is what counts
        pass


def main() -> None:
    serve(run)


if __name__ == "__main__":
    main()
