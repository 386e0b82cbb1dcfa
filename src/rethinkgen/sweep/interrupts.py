"""Ctrl-C and SIGTERM in the sweep driver: held while an event is being recorded, then raised.

The driver shields "receive an event and record it" (:meth:`InterruptGuard.shield`), so a signal can
never split an event (checkpoint written, row not committed); a batch system's SIGTERM behaves like
Ctrl-C.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

__all__ = ["GUARD", "InterruptGuard"]


class InterruptGuard:
    """SIGINT and SIGTERM become KeyboardInterrupt, except inside :meth:`shield`, where they are held
    until the shielded block ends. The driver shields "receive an event and record it" so a Ctrl-C can
    never split an event (checkpoint written, row not committed, next event recorded: a missing row)."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending: int | None = None
        self.previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.depth > 0:
            self.pending = signum
            return
        raise KeyboardInterrupt(f"signal {signum}")

    def install(self) -> bool:
        """Install the handlers (main thread only; elsewhere Python's defaults stay)."""
        import threading

        if threading.current_thread() is not threading.main_thread() or self.previous:
            return False
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handler)
        return True

    def uninstall(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()
        self.pending = None

    @contextlib.contextmanager
    def shield(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.depth == 0 and self.pending is not None:
            self.pending = None
            raise KeyboardInterrupt("deferred signal")


GUARD = InterruptGuard()
