"""One token refresh exchange for an account kept in PostgreSQL, in a child process.

    python -m cliproxy.addons.store.pg_exchange < job.json > outcome.json

The PostgreSQL twin of `cliproxy.auth.exchange` (which says why a child process: it outlives a crash
of the proxy, so an answer in flight is still journaled). Across hosts, every refresh POST is made
under a session advisory lock `lock_key("exchange", account)` held by the child that makes it, and
only after checking, under that lock, that the refresh token to send is still the account's and
has no journal entry yet. A host whose refresher died mid-exchange thus cannot be overtaken: the
next refresher's child waits for the orphan to finish and then finds its answer in the journal
(`"earlier": true`) instead of sending the spent token again. A 200 answer goes unparsed into
`cliproxy_refresh_journal` (autocommit) before anything else; if the database is away at that moment
the insert is retried for `JOURNAL_PATIENCE` seconds.

The job (stdin: it holds the DSN and the token) is `dsn`, `name`, `spent` (fingerprint of the
refresh token in `form`), `url`, `form`, `timeout`. The outcome is `{"status", "body" (base64),
"journaled", "earlier"?}` or `{"error": "connect" | "incomplete" | "store" | "stale", "message"}`.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import psycopg

from cliproxy.addons.store.pg import lock_key
from cliproxy.auth.exchange import serve
from cliproxy.auth.http import sync_client
from cliproxy.auth.store import fingerprint

JOURNAL_PATIENCE = 30.0  # seconds to keep trying to journal an answer while the database is away

_JOURNAL_INSERT = (
    "INSERT INTO cliproxy_refresh_journal (name, spent, body) VALUES (%s, %s, %s)"
    " ON CONFLICT (name, spent) DO UPDATE SET body = EXCLUDED.body, answered_at = now()"
)


def _journal(dsn: str, conn: psycopg.Connection[Any] | None, name: str, spent: str, body: bytes) -> str | None:
    """Insert the answer; None when done, else why not (after retrying with new connections)."""
    deadline, problem = time.monotonic() + JOURNAL_PATIENCE, ""
    while True:
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
            conn.execute(_JOURNAL_INSERT, (name, spent, body))
            return None
        except psycopg.Error as exc:
            problem = type(exc).__name__
            conn = None
        if time.monotonic() > deadline:
            return problem
        time.sleep(0.5)


def run(job: dict[str, Any]) -> dict[str, Any]:
    name, spent = job["name"], job["spent"]
    try:
        conn = psycopg.connect(job["dsn"], autocommit=True, connect_timeout=5, application_name="cliproxy-refresh")
    except psycopg.Error as exc:
        return {"error": "store", "message": f"cannot reach the account store ({type(exc).__name__})"}
    try:
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (lock_key("exchange", name),))
            earlier = conn.execute("SELECT body FROM cliproxy_refresh_journal WHERE name = %s AND spent = %s", (name, spent)).fetchone()
            if earlier is not None:
                return {"status": 200, "body": base64.b64encode(bytes(earlier[0])).decode(), "journaled": True, "earlier": True}
            row = conn.execute("SELECT data->>'refresh_token' FROM cliproxy_accounts WHERE name = %s", (name,)).fetchone()
        except psycopg.Error as exc:
            return {"error": "store", "message": f"the account store failed ({type(exc).__name__})"}
        if row is None or fingerprint((row[0] or "").strip()) != spent:
            return {"error": "stale", "message": "the account's refresh token changed before the exchange"}
        outcome: dict[str, Any] = {"journaled": False}
        try:
            with sync_client(float(job["timeout"])) as client:
                response = client.post(job["url"], data=job["form"], headers={"Accept": "application/json"})
                if response.status_code == 200:  # the old refresh token is spent: nothing but this write comes first
                    problem = _journal(job["dsn"], conn, name, spent, response.content)
                    outcome["journaled"] = problem is None
                    if problem:
                        outcome["journal_error"] = problem
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return {"error": "connect", "message": f"{exc.__class__.__name__}: {exc}"}
        except httpx.HTTPError as exc:
            return {"error": "incomplete", "message": f"{exc.__class__.__name__}: {exc}"}
        outcome["status"] = response.status_code
        outcome["body"] = base64.b64encode(response.content).decode()
        return outcome
    finally:
        try:
            conn.close()  # ends the session: the exchange lock goes with it
        except psycopg.Error:
            pass


def main() -> None:
    serve(run)


if __name__ == "__main__":
    main()
