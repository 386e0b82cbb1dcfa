"""Run by tests/test_distributed.py under ``torchrun --nproc-per-node 2`` (CPU, gloo): one rank of a streamed run.

Usage: ``torchrun --standalone --nproc-per-node 2 tests/distributed_script.py TREE OUT``. Each rank writes
``OUT/rank<r>.json``: the (epoch, image, label) triples its DataLoader (2 workers) delivered in two epochs
and the sha256 of the labels it holds. Then the ranks train the run straight through (``train``, labels
file in ``OUT/straight``); rank 0 writes its rows to ``OUT/straight.json`` (the test compares a run stopped
and resumed with the CLI against them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from rethinkgen.train.config import TrainConfig
from rethinkgen.train.loop import train
from rethinkgen.train.resolve import resolve_config
from rethinkgen.train.streaming.distributed import context
from rethinkgen.train.streaming.trainer import StreamTrainer


def config(tree: str) -> TrainConfig:
    return resolve_config(TrainConfig(data="imagenet", data_dir=tree, model="mlp_1x512", crop=16, epochs=3,
                                      batch_size=8, lr=0.05, corruption="random_labels", device="cpu", workers=2,
                                      world_size=2, augment=True, flip=True, seed=5))


def main(tree: str, out: str) -> None:
    cfg = config(tree)
    ctx = context(cfg.world_size, torch.device("cpu"))
    trainer = StreamTrainer(cfg, ctx)
    loader = trainer._loader()
    seen = []
    for epoch in (1, 2):
        loader.sampler.set_epoch(epoch)
        for _, y, i in loader:
            seen += [[epoch, a, b] for a, b in zip(i.tolist(), y.tolist(), strict=True)]
    Path(out, f"rank{ctx.rank}.json").write_text(json.dumps({"rank": ctx.rank, "seen": seen,
                                                             "labels_sha256": trainer.setup.labels.sha256}))
    del trainer, loader
    summary = train(cfg, run_dir=str(Path(out, "straight")))
    if ctx.main:
        Path(out, "straight.json").write_text(json.dumps({"metrics": summary["metrics"]}))
    ctx.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
