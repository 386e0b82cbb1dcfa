"""Progress bars of training runs: one rich bar per run over its epochs, with loss and accuracies.

Used by both trainers (one bar for :func:`rethinkgen.train.loop.train`, one per run of a fused group);
a no-op when disabled (``--quiet``, ``--json``, no terminal).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from rethinkgen.train.config import TrainConfig


def run_title(config: TrainConfig) -> str:
    """``model · corruption`` (and ``p=level`` for partial labels)."""
    level = f" p={config.level:g}" if config.corruption == "partial_labels" and config.level is not None else ""
    return f"{config.model} · {config.corruption}{level}"


class Progress:
    """One bar per run: ``runs`` holds (key, config, epochs already done) triples."""

    def __init__(self, runs: Sequence[tuple[Hashable, TrainConfig, int]], enabled: bool) -> None:
        self.runs, self.enabled, self.tasks = list(runs), enabled, {}

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bars

            self.progress = Bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn())
            self.progress.__enter__()
            for key, config, done in self.runs:
                self.tasks[key] = self.progress.add_task(run_title(config), total=config.epochs, completed=done,
                                                         info="")
        return self

    def update(self, key: Hashable, row: dict[str, Any]) -> None:
        """Show the epoch row ``row`` of run ``key``."""
        if not self.enabled:
            return
        loss = row["train_loss"]
        info = (f"loss {loss:.3f} · " if loss is not None else "") + \
            f"train {100 * row['train_acc']:.1f}% · test {100 * row['test_acc']:.1f}%"
        self.progress.update(self.tasks[key], completed=row["epoch"], info=info)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.progress.__exit__(*exc)
