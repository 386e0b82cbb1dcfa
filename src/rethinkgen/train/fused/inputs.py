"""The inputs of a fused group: each distinct input set prepared and stored once.

Label corruptions of one dataset share their inputs; input corruptions and seeded subsets give runs
inputs of their own. :class:`SharedInputs` prepares them as the single trainer would,
:class:`Inputs` holds the distinct tensors and which one each run reads.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from rethinkgen.train.config import TrainConfig
from rethinkgen.train.data import PreparedData, load_source, prepare_data, source_key

__all__ = ["Inputs", "SharedInputs", "intern"]


def intern(pool: list[torch.Tensor], x: torch.Tensor) -> int:
    """Index of a tensor equal to ``x`` in ``pool`` (appending it if there is none): equal inputs once."""
    for i, t in enumerate(pool):
        if t is x or (t.shape == x.shape and torch.equal(t, x)):
            return i
    pool.append(x)
    return len(pool) - 1


class SharedInputs:
    """``prepare_data`` for the runs of a group, preprocessing each distinct input set once.

    A label corruption leaves the inputs untouched (``CorruptionSpec.target == "labels"``), so runs
    that differ only in their label corruption share one source and one preprocessed copy: only their
    labels are drawn again. Anything else goes through ``prepare_data`` as in the single trainer.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.memo: dict[tuple, tuple[Any, PreparedData]] = {}  # key -> (source kept alive, prepared data)

    def prepare(self, c: TrainConfig) -> PreparedData:
        from rethinkgen.data.corruptions import CORRUPTIONS, apply_corruption

        if CORRUPTIONS.get(c.corruption).target != "labels":
            return prepare_data(c, self.device)
        key = (source_key(c), c.crop, c.standardize, c.augment, c.flip)
        if key not in self.memo:
            source = load_source(c)  # large sources are not cached: loaded once here, for all the group
            self.memo[key] = (source, prepare_data(c, self.device, source))
            return self.memo[key][1]
        source, first = self.memo[key]
        corrupted = apply_corruption(source, c.corruption, c.level, seed=c.seed,
                                     exclude_true_class=c.exclude_true_class)
        return dataclasses.replace(
            first, y_train=corrupted.dataset.y_train.to(self.device),
            y_train_clean=corrupted.y_train_clean.to(self.device), changed=corrupted.changed.to(self.device),
            realized_noise_rate=float(corrupted.realized_noise_rate))


class Inputs:
    """The distinct input tensors of the active runs, and which one each run reads.

    One distinct tensor (label corruptions of one dataset): kept as (N, ...) and broadcast over runs.
    Several (input corruptions, seeded subsets): stacked once into (U, N, ...) and gathered per run.
    """

    def __init__(self, pool: list[torch.Tensor] | torch.Tensor, which: list[int], device: torch.device,
                 channels_last: bool) -> None:
        used = sorted(set(which))
        remap = {u: i for i, u in enumerate(used)}
        self.which = [remap[u] for u in which]
        self.device, self.channels_last = device, channels_last
        self.shared: torch.Tensor | None = None
        self.stacked: torch.Tensor | None = None
        if len(used) == 1:
            x = pool[used[0]].clone() if isinstance(pool, torch.Tensor) else pool[used[0]]  # frees the stack
            self.shared = x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x
        elif isinstance(pool, torch.Tensor):  # already stacked: keep the rows in use
            self.stacked = pool if used == list(range(pool.shape[0])) else pool[used]
        else:
            self.stacked = torch.stack([pool[u] for u in used])  # (U, N, ...)
        self.index = torch.tensor(self.which, device=device)  # (K,)

    def keep(self, slots: list[int]) -> Inputs:
        """The inputs of the runs at ``slots`` (after others left the group)."""
        pool = self.stacked if self.stacked is not None else [self.shared]
        return Inputs(pool, [self.which[s] for s in slots], self.device, self.channels_last)

    @property
    def n(self) -> int:
        return int((self.shared if self.shared is not None else self.stacked[0]).shape[0])

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """Per-run rows: ``index`` (K, B) -> inputs (K, B, ...)."""
        if self.shared is not None:
            return self.shared[index]
        return self.stacked[self.index[:, None], index]

    def chunk(self, start: int, stop: int, runs: torch.Tensor | None) -> tuple[torch.Tensor, bool]:
        """Rows ``start:stop`` for evaluation: ((b, ...), shared=True) or ((K', b, ...), False)."""
        if self.shared is not None:
            return self.shared[start:stop], True
        index = self.index if runs is None else self.index[runs]
        return self.stacked[index, start:stop], False
