"""A writer killed at any moment never leaves a partial account file behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cliproxy.auth.store import load_accounts

REPO = Path(__file__).resolve().parents[2]
WRITER = """
import sys
from cliproxy.auth.store import write_account_file
path, n = sys.argv[1], 0
while True:
    n += 1
    write_account_file(path, {"type": "codex", "email": "w@example.com", "n": n, "access_token": "a",
                              "refresh_token": "r", "pad": "x" * (1000 + 50_000 * (n % 7))})
"""


def test_sigkill_mid_write_leaves_a_whole_file(tmp_path):
    path = tmp_path / "auth" / "codex-w@example.com-plus.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for round_ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env, cwd=REPO)
        deadline = time.monotonic() + 5
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        reads = 0
        stop = time.monotonic() + 0.15 + 0.05 * round_
        while time.monotonic() < stop:  # readers never see a partial file while writes go on
            data = json.loads(path.read_text())
            assert data["email"] == "w@example.com" and len(data["pad"]) >= 1000
            reads += 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        data = json.loads(path.read_text())
        assert data["type"] == "codex" and data["n"] >= 1 and reads > 0
        assert (path.stat().st_mode & 0o777) == 0o600
    # an interrupted write may leave a hidden temp file; it is never taken for an account
    assert [a.name for a in load_accounts(path.parent)] == [path.name]
    assert all(p.name.startswith(".") for p in path.parent.iterdir() if p != path)
