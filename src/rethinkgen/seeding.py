"""Explicit, separate random streams (design §2: randomness is explicit).

One integer seed is split with ``numpy.random.SeedSequence(seed).spawn`` into named, independent
streams, so changing e.g. the data order never changes the corrupted labels. Library code never
seeds a global RNG; the trainer draws torch randomness inside ``torch.random.fork_rng``.
"""

from __future__ import annotations

import numpy as np

# Fixed order: adding a stream at the end never changes the existing ones.
STREAMS = ("corruption", "init", "order", "augment", "dropout", "data", "measure")


def stream_seed(seed: int, stream: str, *extra: int) -> int:
    """A 63-bit integer seed for ``stream`` of ``seed`` (optionally refined by ``extra``, e.g. epoch)."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; valid: {', '.join(STREAMS)}")
    child = np.random.SeedSequence(seed).spawn(len(STREAMS))[STREAMS.index(stream)]
    if extra:
        child = np.random.SeedSequence([int(child.generate_state(1)[0]), *map(int, extra)])
    return int(child.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def rng(seed: int, stream: str, *extra: int) -> np.random.Generator:
    """A numpy Generator for ``stream`` of ``seed``."""
    return np.random.default_rng(stream_seed(seed, stream, *extra))
