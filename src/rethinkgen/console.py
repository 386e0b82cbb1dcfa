"""The command line's two consoles and its one way of printing a message (shared by the CLI modules)."""

from __future__ import annotations

from rich.console import Console

__all__ = ["console", "err_console", "say"]

console = Console()
err_console = Console(stderr=True)


def say(to: Console, text: str) -> None:
    """Print one message (rich markup) as one line when not on a terminal: a log file gets one line per
    event, never a message folded at 80 columns."""
    to.print(text, highlight=False, soft_wrap=not to.is_terminal)
