"""The one-driver lock of a results store: an exclusive ``fcntl.flock`` on ``STORE.lock``.

Only one ``sweep run`` may drive a store (so no run is trained twice); readers never take the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Any

from rethinkgen.sweep.schema import StoreError, StoreLockedError

__all__ = ["SweepLock", "lock_holder"]


class SweepLock:
    """An exclusive ``fcntl.flock`` on ``STORE.lock`` held by the one driver of a store.

    The kernel drops the lock when the process dies (even by SIGKILL), so a stale lock file never
    blocks the next run. The file holds the PID and host of the holder, for the refusal message.
    """

    def __init__(self, store_path: str | Path) -> None:
        self.store_path = Path(store_path)
        self.path = self.store_path.with_name(self.store_path.name + ".lock")
        self.fd: int | None = None

    def acquire(self, wait_s: float = 1.0) -> SweepLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {self.path}: {exc.strerror}; the store's folder "
                             "must be writable") from None
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise StoreLockedError(
                        f"store {self.store_path} is in use by another sweep ({holder}; lock file "
                        f"{self.path}). Two sweeps on one store are refused so that no run is trained twice: "
                        "wait for it to finish, stop it, or use another --store.") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()} {time.time():.0f}\n".encode())
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing drops the flock; the file stays (unlinking would race)
            self.fd = None

    def __enter__(self) -> SweepLock:
        return self.acquire() if self.fd is None else self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").split()
    except OSError:
        text = []
    if not text:
        return "PID unknown"
    return f"PID {text[0]}" + (f" on {text[1]}" if len(text) > 1 else "")


def lock_holder(store_path: str | Path) -> str | None:
    """``"PID 123 on host"`` when a sweep holds the store's lock, else None (never blocks a sweep)."""
    path = Path(str(store_path) + ".lock")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        return _read_holder(fd)
    finally:
        os.close(fd)
