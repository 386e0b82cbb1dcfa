"""Helpers shared by the training benchmarks: machine description, load, CIFAR-shaped data, timing.

Not a benchmark itself. The data is *synthetic* CIFAR-10 — random uint8 pixels and labels written in
the official ``cifar-10-batches-py`` pickle format (5 x 10,000 training rows, 10,000 test rows) — so
the benchmarks read it through the same ``cifar10`` source a real sweep worker uses, without network.
"""

from __future__ import annotations

import os
import pickle
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROWS = 10_000  # rows per official CIFAR-10 batch file


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    return (f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min) on {os.cpu_count()} cores"


def fake_cifar10(folder: Path | None = None, seed: int = 0, rows: int = ROWS) -> Path:
    """Write (once) synthetic CIFAR-10 in the official format under ``folder``; returns the data dir.

    ``rows`` per batch file (the official 10,000: 50,000 training and 10,000 test images; fewer for
    smoke runs)."""
    folder = Path(folder or Path(tempfile.gettempdir()) / "rethinkgen-bench-cifar")
    batches = folder / "cifar-10-batches-py"
    done = batches / ".complete"
    if done.exists() and done.read_text().strip() in ("", str(rows)):  # "": written before rows existed
        return folder
    batches.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        data = rng.integers(0, 256, size=(rows, 3 * 32 * 32), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=rows)]
        with open(batches / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data, "filenames": ["x.png"] * rows},
                        f, protocol=4)
    with open(batches / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": rows,
                     "num_vis": 3 * 32 * 32}, f, protocol=4)
    done.write_text(str(rows))
    return folder


def peak_rss_mb() -> float:
    """Peak resident memory of this process (ru_maxrss, KiB on Linux) in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Clock:
    """Wall and CPU seconds (this process and its finished children) of a block."""

    def __enter__(self) -> Clock:
        self.wall0 = time.perf_counter()
        self.cpu0 = _cpu()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = _cpu() - self.cpu0


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, rule, *body])
