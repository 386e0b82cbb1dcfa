"""What a running sweep shows: a rich live display on a terminal, plain log lines otherwise.

Live mode: an overall bar (finished runs of the sweep, skipped ones included), one line per running
run (epoch, train and test accuracy) and the counts of converged / max_epochs / diverged / failed
runs. Quiet mode (``--quiet``, or whenever stdout is not a terminal, e.g. a batch job's log): one line
per started, finished or failed run, the warnings, and every ``progress_every_s`` seconds a progress line
(runs finished, statuses, the running runs and their epochs). Off a terminal every event is one line,
however long (never folded at 80 columns), and run names are never cut.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["SweepDisplay"]


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


class SweepDisplay:
    """Receives the runner's notifications and renders them (live or as log lines)."""

    def __init__(self, console: Console | None = None, quiet: bool | None = None, max_rows: int = 12,
                 sinks: list[Any] | tuple[Any, ...] = (), progress_every_s: float = 60.0,
                 clock: Any = time.monotonic) -> None:
        self.console = console or Console(soft_wrap=True)
        self.sinks = list(sinks)  # e.g. train.tensorboard.TensorBoardRuns: get the same notifications
        self.quiet = (not self.console.is_terminal) if quiet is None else quiet
        self.max_rows = max_rows
        self.counts = {"converged": 0, "max_epochs": 0, "diverged": 0, "failed": 0}
        self.running: dict[str, dict[str, Any]] = {}
        self.total = 0
        self.done = 0
        self.live: Live | None = None
        self.progress_every_s, self.clock = progress_every_s, clock
        self.started_at = self.last_progress = clock()

    # ------------------------------------------------------------------ lifecycle
    def start(self, sweep: str, total: int, skipped: int, executor: str) -> None:
        self.total, self.done = total, skipped
        self.started_at = self.last_progress = self.clock()
        self._log(f"sweep [bold]{escape(sweep)}[/]: {total} runs, {skipped} already finished, "
                  f"{total - skipped} to run ({executor})")
        if self.quiet or total == skipped:
            return
        self.bar = Progress(TextColumn("[bold]runs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[counts]}"), console=self.console)
        self.task = self.bar.add_task("runs", total=total, completed=skipped, counts=self._counts_text())
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self.live.__enter__()

    def _forward(self, method: str, *args: Any) -> None:
        for sink in self.sinks:
            if hasattr(sink, method):
                getattr(sink, method)(*args)

    def stop(self) -> None:
        self._forward("close")
        if self.live is not None:
            self.live.update(self._render())
            self.live.__exit__(None, None, None)
            self.live = None

    # --------------------------------------------------------------- notifications
    def run_started(self, run_key: str, name: str, epochs: int, resumed_from: int | None) -> None:
        self._forward("run_started", run_key, name, epochs, resumed_from)
        self.running[run_key] = {"name": name, "epoch": resumed_from or 0, "epochs": epochs,
                                 "train_acc": None, "test_acc": None}
        if self.quiet:
            extra = f" (resuming after epoch {resumed_from})" if resumed_from is not None else ""
            self._log(f"start      {escape(name)} ({run_key[:10]}){extra}")
        self._refresh()

    def epoch_recorded(self, run_key: str, row: dict[str, Any], step_losses: list | tuple = ()) -> None:
        """The runner committed an epoch (its row and logged losses): tell the sinks, update the display."""
        self._forward("epoch", run_key, row, step_losses)
        self.epoch(run_key, row)

    def epoch(self, run_key: str, row: dict[str, Any]) -> None:
        info = self.running.get(run_key)
        if info is not None:
            info.update(epoch=row["epoch"], train_acc=row.get("train_acc"), test_acc=row.get("test_acc"))
            self._refresh()
        self._maybe_progress_line()

    def run_finished(self, run_key: str, name: str, summary: dict[str, Any]) -> None:
        self._forward("run_finished", run_key, name, summary)
        self.running.pop(run_key, None)
        status = summary.get("status", "?")
        self.counts[status] = self.counts.get(status, 0) + 1
        self.done += 1
        if status == "diverged":  # its accuracies are those of NaN outputs: never shown as numbers
            self._log(f"{status:<10} {escape(name)}: the loss became NaN or infinite by epoch "
                      f"{summary.get('epochs')}; its accuracies are not results")
        elif self.quiet:
            self._log(f"{status:<10} {escape(name)}: {summary.get('epochs')} epochs, "
                      f"train {_pct(summary.get('train_acc'))}, test {_pct(summary.get('test_acc'))}")
        for warning in summary.get("warnings") or ():  # e.g. a schedule that starved the lr (train.schedule)
            self.warn(f"{name}: {warning}")
        self._refresh()

    def run_failed(self, run_key: str, name: str, error: str) -> None:
        self._forward("run_failed", run_key, name, error)
        self.running.pop(run_key, None)
        self.counts["failed"] += 1
        self.done += 1
        last = error.strip().splitlines()[-1] if error.strip() else "unknown error"
        self._log(f"[red]failed[/]     {escape(name)}: {escape(last)}")
        self._refresh()

    def warn(self, message: str) -> None:
        self._log(f"[yellow]warning:[/] {escape(message)}")

    def note(self, message: str) -> None:
        self._log(escape(message))

    # ------------------------------------------------------------------- rendering
    def _log(self, text: str) -> None:
        console = self.live.console if self.live is not None else self.console
        console.print(text, highlight=False, soft_wrap=not console.is_terminal)  # a log file: one line per event

    def _maybe_progress_line(self) -> None:
        """In quiet mode, a progress line at most every ``progress_every_s`` seconds (long runs in a log)."""
        if not self.quiet or self.clock() - self.last_progress < self.progress_every_s:
            return
        self.last_progress = self.clock()
        running = [f"{escape(i['name'])} epoch {i['epoch']}/{i['epochs']}" for i in self.running.values()]
        shown = ", ".join(running[:3]) + (f" and {len(running) - 3} more" if len(running) > 3 else "")
        minutes = (self.last_progress - self.started_at) / 60
        self._log(f"progress   {self.done}/{self.total} runs finished ({self._counts_text()}); "
                  f"{len(running)} running{': ' + shown if running else ''}; {minutes:.1f} min")

    def _counts_text(self) -> str:
        c = self.counts
        text = f"converged {c['converged']} · max_epochs {c['max_epochs']} · diverged {c['diverged']}"
        return text + (f" · [red]failed {c['failed']}[/]" if c["failed"] else " · failed 0")

    def _render(self) -> Group:
        self.bar.update(self.task, completed=self.done, counts=self._counts_text())
        table = Table(box=None, show_header=bool(self.running), pad_edge=False)
        for col in ("run", "epoch", "train acc", "test acc"):  # a long run name folds, never cut
            table.add_column(col, justify="left" if col == "run" else "right", overflow="fold",
                             no_wrap=col != "run")
        rows = list(self.running.items())
        for _key, info in rows[: self.max_rows]:
            table.add_row(escape(info["name"]), f"{info['epoch']}/{info['epochs']}", _pct(info["train_acc"]),
                          _pct(info["test_acc"]))
        if len(rows) > self.max_rows:
            table.add_row(f"... and {len(rows) - self.max_rows} more", "", "", "")
        return Group(self.bar, table)

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._render())
