"""Which trainer trains a run, and why a run cannot join a fused group.

- The streamed trainer (:mod:`rethinkgen.train.streaming.trainer`) for datasets whose spec streams
  them from disk (``imagenet``), on one process or ``world_size`` processes under torchrun.
- The in-memory :class:`~rethinkgen.train.loop.Trainer` for sets that live on the device as one tensor.
- The fused multi-run trainer (:mod:`rethinkgen.train.fused`) for groups of in-memory runs, except runs
  of models with auxiliary logits (Inception V3).
"""

from __future__ import annotations

from rethinkgen.train.config import TrainConfig

__all__ = ["streams", "streaming_refusal"]


def streams(config: TrainConfig) -> bool:
    """Whether ``config``'s dataset is streamed from disk (its spec has an ``index``)."""
    from rethinkgen.data.sources import DATASETS

    return DATASETS.get(config.data).index is not None


def streaming_refusal(config: TrainConfig) -> str | None:
    """Why ``config`` (resolved) cannot be fused with other runs for reasons of this package, or None."""
    from rethinkgen.models import MODELS

    if streams(config):
        return f"dataset {config.data} is streamed from disk; fused training needs the whole set in memory"
    if (config.world_size or 1) > 1:
        return f"world_size={config.world_size}: a run on several processes is trained alone"
    if MODELS.get(config.model).aux_logits:
        return (f"model {config.model} returns auxiliary logits in training, which the fused trainer's "
                "vmapped step does not compute")
    return None
