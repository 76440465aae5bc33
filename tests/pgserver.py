"""A real PostgreSQL server for tests: `initdb` into a temp dir, started on a free 127.0.0.1 port.

Tests that need it use the `pg_server` / `pg_dsn` fixtures (tests/conftest.py); without the server
binaries or psycopg they skip and say why. As root (CI) the cluster runs as the `postgres` user,
since PostgreSQL refuses to run as root. Durability settings are off: the tests kill cliproxy
processes, never the database.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")


def find_bin(name: str) -> str | None:
    for d in BIN_DIRS:
        if os.access(f"{d}/{name}", os.X_OK):
            return f"{d}/{name}"
    return shutil.which(name)


def why_unavailable() -> str | None:
    """None when a server can be started here, else the reason (for a skip message)."""
    if not (find_bin("initdb") and find_bin("pg_ctl")):
        return "PostgreSQL server binaries (initdb, pg_ctl) not installed: apt-get install postgresql"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg not installed: pip install -e '.[postgres]'"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run the server as"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    port: int
    data: Path

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database's DSN (one per test keeps tests apart)."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.dsn(name)

    def restart(self, stopped_for: float = 0.0) -> None:
        """Stop the server (fast), wait, start it again on the same port: a database that went away and came back."""
        self.stop()
        time.sleep(stopped_for)
        self.start()

    def stop(self) -> None:
        _run([find_bin("pg_ctl") or "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"], check=False)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        _run(
            [
                find_bin("pg_ctl") or "pg_ctl",
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.data / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )


def _run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)


@contextmanager
def running() -> Iterator[PgServer]:
    """A started server for the duration of the block; its files are removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="cliproxy-pg-"))
    data = base / "data"
    if os.geteuid() == 0:
        os.chmod(base, 0o755)
        data.mkdir(mode=0o700)
        shutil.chown(data, "postgres", "postgres")
    initdb = find_bin("initdb") or "initdb"
    _run([initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
    server = PgServer(_free_port(), data)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
