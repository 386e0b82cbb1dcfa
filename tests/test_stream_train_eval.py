"""Streamed runs (ImageNet) evaluating the training set on a fixed subset (``train_eval_samples``): which
images, the same in every epoch and after a resume, rows that are that subset's accuracy, and the option
refused where the data lives in memory. CPU, one process, tiny generated JPEG trees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import imagenet_files as files
from rethinkgen.data.stream.loader import Shard, make_loader
from rethinkgen.data.stream.transforms import model_input
from rethinkgen.errors import ConfigError
from rethinkgen.train.config import TrainConfig, run_key
from rethinkgen.train.resolve import resolve_config
from rethinkgen.train.streaming.distributed import DistContext
from rethinkgen.train.streaming.trainer import StreamTrainer, train_eval_subset

BASE = dict(data="imagenet", model="mlp_1x512", crop=16, epochs=2, batch_size=8, lr=0.05, device="cpu", workers=0,
            corruption="random_labels", seed=3)


def test_the_subset_is_drawn_once_from_the_seed_and_none_when_it_covers_the_set():
    config = TrainConfig(**BASE, train_eval_samples=5)
    first, again = train_eval_subset(config, 40), train_eval_subset(config, 40)
    assert np.array_equal(first, again) and len(set(first.tolist())) == 5 and list(first) == sorted(first)
    assert not np.array_equal(first, train_eval_subset(config.replace(seed=4), 40))
    assert train_eval_subset(config, 5) is None  # k >= n: the whole set
    assert train_eval_subset(config.replace(train_eval_samples=None), 40) is None


def test_rows_give_the_subsets_training_accuracy(tmp_path):
    """Each row's training accuracy is the eval-mode accuracy on exactly the chosen images (recomputed here
    from the trained model, with the run's labels)."""
    tree = files.plain_tree(tmp_path / "tree", n_train=6)  # 4 classes x 6 = 24 training images
    config = resolve_config(TrainConfig(**BASE, data_dir=str(tree), train_eval_samples=7))
    trainer = StreamTrainer(config, DistContext())
    summary = trainer.fit()
    chosen = trainer.train_eval_index
    assert chosen is not None and len(chosen) == 7 and trainer.setup.n_train == 24
    data = trainer._dataset("train", train_mode=False)
    correct, seen = 0, []
    trainer.model.eval()
    with torch.no_grad():
        for x, y, idx in make_loader(data, Shard(len(data), indices=chosen), 4, 0):
            logits = trainer.model(model_input(x, trainer.device, config.standardize, False))
            correct += int((logits.argmax(1) == y).sum())
            seen += idx.tolist()
    assert seen == chosen.tolist()
    assert summary["metrics"][-1]["train_acc"] == pytest.approx(correct / 7, abs=1e-9)


def test_the_option_changes_the_run_key_and_is_refused_for_data_in_memory():
    plain = resolve_config(TrainConfig(**{**BASE, "data_dir": "/nowhere"}))
    assert run_key(plain) != run_key(plain.replace(train_eval_samples=1000))
    assert "train_eval_samples" not in plain.to_dict() or plain.to_dict()["train_eval_samples"] is None
    with pytest.raises(ConfigError, match="train_eval_samples must be >= 1"):
        TrainConfig(**BASE, train_eval_samples=0)
    with pytest.raises(ConfigError, match="train_eval_samples is for data streamed from disk"):
        resolve_config(TrainConfig(data="mnist1d", device="cpu", train_eval_samples=100))
