"""What the shared store costs per request: time to first byte with `store: postgresql://…` against the
embedded default (the auth dir and SQLite in the state folder), both proxies in one run, requests
interleaved. With `store` the accounts, the usage ledger and the response store are all in PostgreSQL.

    python scripts/bench_store.py [--rounds 300]

Runs from a checkout, on 127.0.0.1: the fake Codex backend (tests/fakes), a PostgreSQL server started
for the run (tests/pgserver.py: Debian's `postgresql` package and psycopg), and two
`mitmdump -s addons/cliproxy.py`, one per store. Three kinds of request, each streamed:
- chat: `/v1/chat/completions` (the ledger row is written off the request path);
- responses: `/v1/responses` (also booked into the response store, queued before its last event);
- chained: `/v1/responses` with `previous_response_id` (a store lookup before the request goes upstream).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if not (REPO / "tests" / "fakes").is_dir():
    sys.exit("scripts/bench_store.py runs from a cliproxy checkout (it drives tests/fakes and tests/pgserver.py)")
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from tests import pgserver  # noqa: E402
from tests.fakes.accounts import mint_account  # noqa: E402
from tests.fakes.codex_backend import CodexBackend  # noqa: E402
from tests.proxyproc import Proxy, start_proxy  # noqa: E402

KINDS = ("chat", "responses", "chained")


def first_byte(client: httpx.Client, url: str, body: dict) -> tuple[float, bytes]:
    """Seconds to the first body byte of a streamed answer, and the whole body."""
    start = time.perf_counter()
    first = None
    data = b""
    with client.stream("POST", url, json=body) as r:
        r.raise_for_status()
        for chunk in r.iter_bytes():
            if first is None and chunk:
                first = time.perf_counter() - start
            data += chunk
    return (first if first is not None else time.perf_counter() - start), data


def response_id(sse: bytes) -> str:
    import json

    for line in sse.splitlines():
        if line.startswith(b"data: ") and b'"response.completed"' in line:
            return json.loads(line[6:])["response"]["id"]
    raise RuntimeError("no response.completed in the stream")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=300)
    args = ap.parse_args()
    if reason := pgserver.why_unavailable():
        sys.exit(f"bench_store: {reason}")
    with pgserver.running() as server, CodexBackend() as backend, tempfile.TemporaryDirectory() as tmp:
        dsn = server.new_database()
        proxies: dict[str, Proxy] = {}
        for name, store in (("sqlite", None), ("postgres", dsn)):
            home = Path(tmp) / name
            mint_account(home / "auth")
            cfg = {"auth-dir": str(home / "auth"), "codex-base-url": backend.base_url, "oauth-issuer": "http://127.0.0.1:9"}
            if store:
                cfg["store"] = store
                seed(store, home / "auth")
            proxies[name] = start_proxy(home, cfg)
        try:
            times: dict[tuple[str, str], list[float]] = {(v, k): [] for v in proxies for k in KINDS}
            with httpx.Client(timeout=30, trust_env=False) as client:
                anchor = {}
                for name, p in proxies.items():  # warm-up, and the response the chained requests continue
                    for _ in range(20):
                        first_byte(client, p.base_url + "/v1/chat/completions", chat_body())
                    anchor[name] = response_id(first_byte(client, p.base_url + "/v1/responses", responses_body())[1])
                time.sleep(1)
                for _ in range(args.rounds):
                    for kind in KINDS:
                        for name, p in proxies.items():
                            if kind == "chat":
                                t, _ = first_byte(client, p.base_url + "/v1/chat/completions", chat_body())
                            elif kind == "responses":
                                t, _ = first_byte(client, p.base_url + "/v1/responses", responses_body())
                            else:
                                t, _ = first_byte(client, p.base_url + "/v1/responses", responses_body(anchor[name]))
                            times[(name, kind)].append(t * 1000)
            print(f"time to first byte (ms), {args.rounds} requests each, interleaved")
            print(f"{'request':<10} {'sqlite p50':>11} {'postgres p50':>13} {'sqlite p99':>11} {'postgres p99':>13} {'Δ p50':>7}")
            for kind in KINDS:
                s, q = times[("sqlite", kind)], times[("postgres", kind)]
                print(
                    f"{kind:<10} {statistics.median(s):>11.2f} {statistics.median(q):>13.2f} {pct(s, 0.99):>11.2f} {pct(q, 0.99):>13.2f}"
                    f" {statistics.median(q) - statistics.median(s):>+7.2f}"
                )
            direct(dsn, Path(tmp), args.rounds * 10)
            time.sleep(2)  # the ledgers' writers drain
            expected = 20 + 1 + args.rounds * len(KINDS)
            import psycopg

            with psycopg.connect(dsn) as conn:
                row = conn.execute("SELECT COUNT(*) FROM cliproxy_usage").fetchone()
                rows = row[0] if row else 0
            print(f"postgres ledger rows: {rows} of {expected}")
            return 0 if rows == expected else 1
        finally:
            for p in proxies.values():
                p.stop()


def seed(dsn: str, auth_dir: Path) -> None:
    """The account into the database too: with `store`, the accounts are read from there."""
    from cliproxy.addons.store.pg_accounts import PgAccounts
    from cliproxy.auth.store import load_accounts

    accounts = PgAccounts(dsn)
    try:
        for account in load_accounts(auth_dir):
            accounts.put(account.name, account.data)
    finally:
        accounts.close()


def direct(dsn: str, tmp: Path, n: int) -> None:
    """The store's own cost, in this process: a lookup (`get_response`) and a booking (`put_response`)."""
    from cliproxy.addons.store.pg_responses import PostgresResponseStore
    from cliproxy.addons.store.responses import StoredResponse
    from cliproxy.addons.store.sqlite import SQLiteStore

    output = [{"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "x" * 2000}]}]
    print(f"the store alone, {n} calls each (ms per call)")
    print(f"{'call':<14} {'sqlite p50':>11} {'postgres p50':>13} {'sqlite p99':>11} {'postgres p99':>13}")
    stores = {"sqlite": SQLiteStore(tmp / "direct.sqlite3"), "postgres": PostgresResponseStore(dsn)}
    took: dict[tuple[str, str], list[float]] = {(k, c): [] for k in stores for c in ("put_response", "get_response")}
    try:
        for i in range(n):
            for name, store in stores.items():
                rec = StoredResponse(f"resp_bench{i}", "loopback", input=[{"role": "user", "content": "bench"}], new_input=1, output=output)
                t = time.perf_counter()
                store.put_response(rec)
                took[(name, "put_response")].append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                store.get_response("loopback", f"resp_bench{i // 2}")
                took[(name, "get_response")].append((time.perf_counter() - t) * 1000)
    finally:
        for store in stores.values():
            store.close()
    for call in ("get_response", "put_response"):
        s, q = took[("sqlite", call)], took[("postgres", call)]
        print(f"{call:<14} {statistics.median(s):>11.3f} {statistics.median(q):>13.3f} {pct(s, 0.99):>11.3f} {pct(q, 0.99):>13.3f}")


def chat_body() -> dict:
    return {"model": "gpt-5.5", "stream": True, "messages": [{"role": "user", "content": "bench"}]}


def responses_body(previous: str | None = None) -> dict:
    body: dict = {"model": "gpt-5.5", "stream": True, "input": "bench"}
    if previous:
        body["previous_response_id"] = previous
    return body


if __name__ == "__main__":
    sys.exit(main())
