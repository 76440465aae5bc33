"""Cross-process lock per account file, so only one process refreshes a login at a time.

The lock is `fcntl.flock` on a hidden file beside the account: `<auth-dir>/.<account file>.lock`.
flock locks belong to the open file description, so they also exclude other threads of the same
process, and the kernel releases them when a holder dies. Lock files are never deleted while in
use (deleting would let two holders lock different inodes); `logout` removes its own.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

POLL_START = 0.02  # seconds; polls back off to POLL_MAX so waiting never spins
POLL_MAX = 0.25


class LockTimeout(TimeoutError):
    """The account stayed locked by someone else for longer than the caller was willing to wait."""


def lock_path(account_path: Path) -> Path:
    return account_path.with_name(f".{account_path.name}.lock")


def _open(account_path: Path) -> int:
    account_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.open(lock_path(account_path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _waits(account_path: Path, timeout: float) -> Iterator[float]:
    """Pauses between lock attempts (doubling up to POLL_MAX); LockTimeout once `timeout` has passed."""
    deadline, delay = time.monotonic() + timeout, POLL_START
    while time.monotonic() < deadline:
        yield delay
        delay = min(delay * 2, POLL_MAX)
    raise LockTimeout(f"{account_path.name} stayed locked for {timeout:.0f}s")


@asynccontextmanager
async def account_lock(account_path: Path, timeout: float = 120.0) -> AsyncIterator[int]:
    """Hold the account's lock; waits by polling with `asyncio.sleep`, never blocking the event loop.
    Yields the locked descriptor: a child process given a copy holds the lock until it exits too."""
    fd = _open(account_path)
    try:
        waits = _waits(account_path, timeout)
        while not _try_lock(fd):
            await asyncio.sleep(next(waits))
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


@contextmanager
def account_lock_sync(account_path: Path, timeout: float = 120.0) -> Iterator[None]:
    """Blocking variant for command-line code (login, logout)."""
    fd = _open(account_path)
    try:
        waits = _waits(account_path, timeout)
        while not _try_lock(fd):
            time.sleep(next(waits))
        yield
    finally:
        os.close(fd)


@contextmanager
def try_account_lock(account_path: Path) -> Iterator[bool]:
    """Take the account's lock if it is free, without waiting; yields whether it was taken."""
    fd = _open(account_path)
    try:
        yield _try_lock(fd)
    finally:
        os.close(fd)
