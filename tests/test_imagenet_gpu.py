"""Streamed ImageNet runs on CUDA (deselected by default: ``pytest -m gpu``): Inception V3 at 299x299 with bf16
autocast and channels-last, and a 2-GPU DistributedDataParallel run (NCCL) when two GPUs are visible."""

from __future__ import annotations

import pytest
import torch

import imagenet_files as files
from rethinkgen.train.loop import train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _run(tree, **overrides):
    base = dict(data="imagenet", data_dir=str(tree), model="inception_v3", crop=299, epochs=1, batch_size=8,
                lr=0.01, corruption="random_labels", device="cuda", workers=2, augment=True, flip=True)
    return train(**{**base, **overrides})


def test_inception_v3_trains_streamed_on_cuda_in_bf16_channels_last(tmp_path):
    tree = files.plain_tree(tmp_path / "tree", n_train=4, n_val=2)
    summary = _run(tree)
    assert summary["numerics"]["autocast"] == "bfloat16" and summary["numerics"]["channels_last"]
    assert summary["status"] == "max_epochs" and summary["n_params"] == 27_161_264 - 996 * (2048 + 768 + 2)  # 4 classes
    rows = summary["metrics"]
    assert all(r["train_eval_loss"] == r["train_eval_loss"] for r in rows)  # finite (not NaN)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpus_train_one_run_with_nccl(tmp_path):
    tree = files.plain_tree(tmp_path / "tree", n_train=4, n_val=2)
    two = _run(tree, world_size=2)
    assert two["numerics"]["world_size"] == 2 and two["status"] == "max_epochs"
    assert two["labels_sha256"] == _run(tree)["labels_sha256"]  # the same labels on 1 and 2 GPUs
