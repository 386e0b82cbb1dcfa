"""Fused multi-run training equals training each run alone (rethinkgen.train.fused).

Agreement is within float tolerance, not bit for bit: the batched kernels (bmm, grouped convolutions)
may sum in another order than the single-run ones. On these small problems the runs stay within
~1e-6 of each other, so statuses, convergence steps and accuracies come out equal.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from rethinkgen.train.config import TrainConfig, run_key
from rethinkgen.train.fused import can_fuse, fuse_key, group_runs, train_group, why_not_fused
from rethinkgen.train.loop import train

# MNIST-1D, 256 training samples, batches of 32: 8 steps per epoch.
MLP = dict(data="mnist1d", n_train=256, n_test=200, model="mlp_1x512", lr=0.1, device="cpu", batch_size=32,
           log_every=3)
CNN = dict(data="mnist1d", n_train=256, n_test=200, model="cnn1d", device="cpu", batch_size=32, log_every=2)
# Tiny synthetic images for the 2-D convnet (grouped convolutions under vmap) and augmentation.
IMG = dict(data="synthetic", data_options={"shape": "3x12x12"}, n_train=96, n_test=64, device="cpu",
           batch_size=32, crop=10, log_every=1)

# Losses and learning rates: relative 2e-3 (a random-label run, the most sensitive, drifts to ~5e-4 after
# 15 epochs; the others stay within 1e-6). Accuracies: equal (the same samples right and wrong).
REL, ABS = 2e-3, 1e-6
ACC = 1e-9


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these small problems gain nothing from two, and on a shared 2-core machine
    two spinning OpenMP threads slow every step down many times over. The numbers do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_same_run(fused: dict, alone: dict) -> None:
    assert set(fused) == set(alone)
    for key in ("status", "steps", "epochs", "converged_step", "converged_epoch", "n_params", "run_key",
                "config", "realized_noise_rate", "device"):
        assert fused[key] == alone[key], key
    assert len(fused["metrics"]) == len(alone["metrics"])
    for a, b in zip(fused["metrics"], alone["metrics"], strict=True):
        assert set(a) == set(b)
        for key, value in b.items():
            if key == "wall_time_s" or value is None:
                assert key == "wall_time_s" or a[key] is None, key
                continue
            expected = pytest.approx(value, abs=ACC) if "acc" in key else pytest.approx(value, rel=REL, abs=ABS)
            assert a[key] == expected, (key, a["epoch"])
    assert [s for s, _ in fused["step_losses"]] == [s for s, _ in alone["step_losses"]]
    for (_, a), (_, b) in zip(fused["step_losses"], alone["step_losses"], strict=True):
        assert a == pytest.approx(b, rel=REL, abs=ABS)


def test_mlp_runs_that_stop_at_different_epochs_match_separate_training():
    configs = [
        TrainConfig(**MLP, corruption="true_labels", epochs=40),  # converges first
        TrainConfig(**MLP, corruption="random_labels", epochs=40),  # converges later
        TrainConfig(**{**MLP, "lr": 0.05}, corruption="partial_labels", level=0.3, weight_decay=5e-4,
                    epochs=4),  # own lr and weight decay; stops at its epoch limit
        TrainConfig(**MLP, corruption="gaussian", momentum=0.5, seed=1, epochs=40),  # own inputs
    ]
    assert can_fuse(configs)
    fused = train_group(configs)
    alone = [train(c) for c in configs]
    for f, a in zip(fused, alone, strict=True):
        assert_same_run(f, a)
    epochs = [s["epochs"] for s in fused]
    assert [s["status"] for s in fused] == ["converged", "converged", "max_epochs", "converged"]
    assert epochs[0] < epochs[1] and epochs[2] == 4  # they left the group at different epochs


def test_cnn1d_runs_match_separate_training():
    configs = [
        TrainConfig(**CNN, corruption="true_labels", epochs=4),
        TrainConfig(**CNN, corruption="random_labels", epochs=2, lr=0.05),
        TrainConfig(**CNN, corruption="shuffled_pixels", epochs=3, seed=2),
    ]
    fused = train_group(configs)
    for f, c in zip(fused, configs, strict=True):
        assert_same_run(f, train(c))


def test_alexnet_with_augmentation_and_input_corruption_matches_separate_training():
    configs = [
        TrainConfig(**IMG, model="alexnet_small", lr=0.05, corruption="true_labels", epochs=2),
        TrainConfig(**IMG, model="alexnet_small", lr=0.05, corruption="random_pixels", augment=True, flip=True,
                    epochs=1),
    ]
    assert can_fuse(configs)
    fused = train_group(configs)
    for f, c in zip(fused, configs, strict=True):
        assert_same_run(f, train(c))


class Recorder:
    def __init__(self, grab_epoch: int | None = None) -> None:
        self.rows, self.logged, self.ends, self.ckpt = [], [], [], None
        self.grab_epoch = grab_epoch

    def on_epoch_end(self, row, step_losses, state):
        self.rows.append(dict(row))
        self.logged.extend(step_losses)
        if row["epoch"] == self.grab_epoch:
            self.ckpt = state.checkpoint()

    def on_train_end(self, summary):
        self.ends.append(summary)


def test_callbacks_see_each_run_as_the_single_trainer_shows_it():
    # equal hyperparameters: the group steps with torch's own SGD kernel on the stacked tensors
    configs = [TrainConfig(**MLP, corruption="true_labels", epochs=3),
               TrainConfig(**MLP, corruption="random_labels", epochs=2)]
    recorders = [Recorder(), Recorder()]
    fused = train_group(configs, callbacks=[[r] for r in recorders])
    for rec, summary, config in zip(recorders, fused, configs, strict=True):
        assert_same_run(summary, train(config))
        assert rec.rows == summary["metrics"]
        assert [r["epoch"] for r in rec.rows] == list(range(summary["epochs"] + 1))
        assert rec.logged == summary["step_losses"]
        assert len(rec.ends) == 1 and rec.ends[0]["run_key"] == summary["run_key"]


def test_fused_checkpoint_resumes_in_the_single_trainer_and_back():
    configs = [TrainConfig(**MLP, corruption="partial_labels", level=0.5, epochs=4, weight_decay=1e-3),
               TrainConfig(**{**MLP, "lr": 0.05}, corruption="random_labels", epochs=4)]
    recorders = [Recorder(grab_epoch=2), Recorder(grab_epoch=1)]
    fused = train_group(configs, callbacks=[[r] for r in recorders])
    ckpt = recorders[0].ckpt
    assert ckpt["run_key"] == fused[0]["run_key"] == run_key(configs[0].replace(**fused[0]["config"]))
    # (a copy: torch's Optimizer.load_state_dict keeps the checkpoint's momentum tensors as its state)
    resumed = train(configs[0], resume=copy.deepcopy(ckpt))  # the single trainer continues the fused run
    assert_same_run(resumed, fused[0])
    alone = Recorder(grab_epoch=1)
    train(configs[1], callbacks=[alone])  # and the fused trainer continues a single run
    back = train_group(configs, resumes=[ckpt, alone.ckpt])
    assert_same_run(back[0], fused[0])
    assert_same_run(back[1], fused[1])


def test_finished_checkpoint_gives_the_summary_without_training():
    configs = [TrainConfig(**MLP, corruption="true_labels", epochs=1),
               TrainConfig(**MLP, corruption="random_labels", epochs=1)]
    rec = Recorder(grab_epoch=1)
    first = train_group(configs, callbacks=[[rec], []])
    again = train_group(configs, resumes=[rec.ckpt, None], callbacks=[[Recorder()], []])
    assert again[0]["metrics"] == first[0]["metrics"]
    assert again[0]["status"] == "max_epochs"


def test_dropout_is_refused_and_trained_one_by_one():
    configs = [TrainConfig(**MLP, corruption="true_labels", epochs=1, dropout=0.2),
               TrainConfig(**MLP, corruption="random_labels", epochs=1)]
    assert not can_fuse(configs)
    assert "dropout" in why_not_fused(configs)
    fused = train_group(configs)
    for f, c in zip(fused, configs, strict=True):  # sequential fallback: the single trainer itself
        alone = train(c)
        assert [{k: v for k, v in r.items() if k != "wall_time_s"} for r in f["metrics"]] == \
            [{k: v for k, v in r.items() if k != "wall_time_s"} for r in alone["metrics"]]
    assert fuse_key(configs[0])[0] == "alone" and fuse_key(configs[1])[0] == "fused"


def test_batchnorm_statistics_are_stacked_per_run():
    tiny = {**IMG, "n_train": 32, "n_test": 32}
    configs = [TrainConfig(**tiny, model="inception_small", lr=0.05, corruption=c, epochs=e)
               for c, e in (("true_labels", 2), ("random_labels", 1))]
    assert can_fuse(configs) and fuse_key(configs[0]) == fuse_key(configs[1])
    recorders = [Recorder(grab_epoch=1), Recorder()]
    fused = train_group(configs, callbacks=[[r] for r in recorders])
    for f, c in zip(fused, configs, strict=True):
        assert_same_run(f, train(c))
    ckpt = recorders[0].ckpt  # running means and variances travel in the single trainer's format
    assert any(k.endswith("running_mean") for k in ckpt["model"])
    assert_same_run(train(configs[0], resume=copy.deepcopy(ckpt)), fused[0])


def test_different_shapes_are_refused():
    sizes = [TrainConfig(**MLP, epochs=1), TrainConfig(**{**MLP, "n_train": 128}, epochs=1)]
    assert "n_train" in why_not_fused(sizes)
    assert fuse_key(sizes[0]) != fuse_key(sizes[1])
    same = [TrainConfig(**{**MLP, "lr": lr}, corruption="partial_labels", level=p, seed=s)
            for p, lr, s in ((0.0, 0.1, 0), (0.5, 0.01, 1))]
    assert fuse_key(same[0]) == fuse_key(same[1])


def test_global_rng_is_untouched_and_results_are_deterministic():
    configs = [TrainConfig(**MLP, corruption="true_labels", epochs=1),
               TrainConfig(**MLP, corruption="random_labels", epochs=1)]
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    a = train_group(configs)
    assert torch.equal(torch.rand(3), expected)
    b = train_group(configs)
    assert a[1]["step_losses"] == b[1]["step_losses"]


def test_diverging_run_leaves_without_spoiling_the_others():
    configs = [TrainConfig(**{**MLP, "lr": 1e6}, corruption="true_labels", epochs=3),
               TrainConfig(**MLP, corruption="true_labels", epochs=3)]
    fused = train_group(configs)
    assert fused[0]["status"] == "diverged"
    assert fused[1]["status"] == "max_epochs" and all(math.isfinite(v) for _, v in fused[1]["step_losses"])
    assert_same_run(fused[1], train(configs[1]))


def test_label_corrupted_runs_share_one_preprocessed_input_set():
    from rethinkgen.train.data import prepare_data
    from rethinkgen.train.fused import SharedInputs
    from rethinkgen.train.resolve import resolve_config

    shared = SharedInputs(torch.device("cpu"))
    configs = [resolve_config(TrainConfig(**MLP, corruption=c, level=p, seed=s))
               for c, p, s in (("true_labels", None, 0), ("partial_labels", 0.5, 0), ("random_labels", None, 0),
                               ("shuffled_pixels", None, 0))]
    got = [shared.prepare(c) for c in configs]
    assert got[1].x_train is got[0].x_train and got[2].x_test is got[0].x_test  # one copy
    assert got[3].x_train is not got[0].x_train  # input corruptions get their own
    for d, c in zip(got, configs, strict=True):
        want = prepare_data(c, torch.device("cpu"))
        for field in ("x_train", "y_train", "y_train_clean", "changed", "x_test", "y_test"):
            assert torch.equal(getattr(d, field), getattr(want, field)), field
        assert d.realized_noise_rate == want.realized_noise_rate


def test_group_runs_splits_by_key_and_size():
    configs = [TrainConfig(**MLP, corruption="partial_labels", level=i / 10) for i in range(11)]
    configs += [TrainConfig(**CNN), TrainConfig(**MLP, dropout=0.5), TrainConfig(**MLP, dropout=0.5, seed=1)]
    groups = group_runs(configs, max_group=4)
    assert sorted(i for g in groups for i in g) == list(range(14))
    assert [len(g) for g in groups] == [4, 4, 3, 1, 1, 1]  # 11 MLPs in near-equal chunks; dropout runs alone


@pytest.mark.parametrize("spec", [MLP, CNN], ids=["mlp", "cnn1d"])
def test_runs_reading_the_same_batches_share_one_input_and_match_separate_training(spec, monkeypatch):
    """Label corruptions of one seed read the same batches: the fused step feeds them one (B, ...) batch
    (for an MLP the first layer of all runs is one GEMM), with the numbers of separate training."""
    from rethinkgen.train.fused import FusedGroup

    shared_steps = []
    real = FusedGroup._inputs

    def spy(self, index, generators, same_order):
        xb, shared = real(self, index, generators, same_order)
        shared_steps.append(shared)
        return xb, shared

    monkeypatch.setattr(FusedGroup, "_inputs", spy)
    configs = [TrainConfig(**spec, corruption="true_labels", epochs=3),
               TrainConfig(**{**spec, "lr": 0.05}, corruption="partial_labels", level=0.5, epochs=3),
               TrainConfig(**spec, corruption="random_labels", epochs=2)]
    fused = train_group(configs)
    assert shared_steps and all(shared_steps)
    for f, c in zip(fused, configs, strict=True):
        assert_same_run(f, train(c))


def test_the_last_run_of_a_group_goes_on_in_the_single_trainer(monkeypatch):
    from rethinkgen.train.fused import group as group_module

    handed_over = []
    real_train = group_module.train

    def spy(config, **kwargs):
        handed_over.append((config.corruption, kwargs["resume"]["epoch"]))
        return real_train(config, **kwargs)

    monkeypatch.setattr(group_module, "train", spy)
    configs = [TrainConfig(**MLP, corruption="true_labels", epochs=40),  # converges at epoch 9
               TrainConfig(**MLP, corruption="random_labels", epochs=40)]  # then trains alone to epoch 15
    recorders = [Recorder(), Recorder()]
    fused = train_group(configs, callbacks=[[r] for r in recorders])
    monkeypatch.undo()
    assert handed_over == [("random_labels", fused[0]["epochs"])]
    for f, c in zip(fused, configs, strict=True):
        assert_same_run(f, train(c))
    rows = recorders[1].rows  # its callbacks saw every epoch once, across the hand-over
    assert [r["epoch"] for r in rows] == list(range(fused[1]["epochs"] + 1)) and len(recorders[1].ends) == 1
