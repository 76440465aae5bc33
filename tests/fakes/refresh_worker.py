"""Helper process for the cross-process refresh test: many concurrent `ensure_fresh` calls on one file.

    python -m tests.fakes.refresh_worker ISSUER ACCOUNT_FILE CALLS START_AT [--force]

Waits until the wall-clock time START_AT (so two workers collide), then prints one JSON line:
{"tokens": [distinct sha256 prefixes of the access tokens obtained], "errors": [messages]}.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from pathlib import Path

from cliproxy.auth.refresh import RefreshError, TokenRefresher
from cliproxy.auth.store import load_account


async def run(issuer: str, path: Path, calls: int, force: bool) -> dict:
    refresher = TokenRefresher(issuer)
    account = load_account(path)
    results = await asyncio.gather(*[refresher.ensure_fresh(account, force=force) for _ in range(calls)], return_exceptions=True)
    tokens = sorted({hashlib.sha256(r.access_token.encode()).hexdigest()[:12] for r in results if not isinstance(r, BaseException)})
    errors = [str(r) for r in results if isinstance(r, RefreshError | Exception)]
    return {"tokens": tokens, "errors": errors}


def main() -> None:
    issuer, path, calls, start_at = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    force = "--force" in sys.argv[5:]
    time.sleep(max(0.0, start_at - time.time()))
    print(json.dumps(asyncio.run(run(issuer, path, calls, force))), flush=True)


if __name__ == "__main__":
    main()
