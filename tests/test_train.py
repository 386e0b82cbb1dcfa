"""The trainer on small real inputs: the paper's randomization findings, determinism, resume, errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

import rethinkgen
from rethinkgen.errors import ConfigError, UnknownNameError
from rethinkgen.train.config import TrainConfig, canonical_json, run_key
from rethinkgen.train.fused import train_group
from rethinkgen.train.loop import resolve_config, train

ROW_KEYS = {"epoch", "step", "samples_seen", "lr", "train_loss", "train_eval_loss", "train_acc",
            "train_acc_corrupted", "train_acc_clean", "test_loss", "test_acc", "wall_time_s", "train_acc_top5",
            "test_acc_top5"}

# A small MNIST-1D problem: 1,000 training samples, so a run takes a second or two.
SMALL = dict(data="mnist1d", n_train=1000, n_test=500, model="mlp_1x512", lr=0.1, device="cpu")


def test_random_labels_are_memorized_and_test_stays_at_chance():
    summary = train(TrainConfig(**SMALL, corruption="random_labels", epochs=300))
    assert summary["status"] == "converged"
    assert summary["train_acc"] == 1.0
    rows = summary["metrics"]
    # per-epoch evaluation: the convergence step is the end of the first epoch whose row reaches 100%
    first = next(r for r in rows if r["train_acc"] >= 1.0)
    assert (summary["converged_step"], summary["converged_epoch"]) == (first["step"], first["epoch"]) != (0, 0)
    assert rows[-1]["epoch"] == first["epoch"] < 300  # it stopped there, not at the epoch limit
    assert summary["convergence_resolution_steps"] == math.ceil(1000 / 128)
    assert 0.03 < summary["test_acc"] < 0.2  # chance is 0.10 on 10 classes
    assert 0.85 < summary["realized_noise_rate"] < 0.95  # p(1 - 1/K) = 0.9


def test_true_labels_generalize_far_above_chance():
    summary = train(TrainConfig(**SMALL, corruption="true_labels", epochs=300))
    assert summary["status"] == "converged"
    assert summary["test_acc"] > 0.35
    assert summary["realized_noise_rate"] == 0.0


def test_partial_labels_report_realized_noise_rate():
    summary = train(TrainConfig(data="mnist1d", model="mlp_1x512", corruption="partial_labels", level=0.5,
                                epochs=1, device="cpu"))
    assert abs(summary["realized_noise_rate"] - 0.45) < 0.03  # 4,000 samples: 3 sigma ~ 0.024


def test_rows_have_fixed_keys_and_epoch_zero():
    summary = train(TrainConfig(**SMALL, epochs=2, target_train_acc=1.0))
    rows = summary["metrics"]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert all(set(r) == ROW_KEYS for r in rows)
    assert rows[0]["train_loss"] is None and rows[0]["step"] == 0
    assert rows[2]["step"] == 2 * math.ceil(1000 / 128)
    assert rows[0]["train_acc_corrupted"] is None  # true labels: no changed sample


def test_corrupted_and_clean_accuracies_cover_the_split():
    summary = train(TrainConfig(**SMALL, corruption="partial_labels", level=0.5, epochs=3))
    row = summary["metrics"][-1]
    noise = summary["realized_noise_rate"]
    mixed = noise * row["train_acc_corrupted"] + (1 - noise) * row["train_acc_clean"]
    assert abs(mixed - row["train_acc"]) < 1e-6


def test_same_seed_same_numbers_different_seed_different():
    config = TrainConfig(**SMALL, corruption="partial_labels", level=0.3, epochs=2, dropout=0.2)
    a, b = train(config), train(config)
    assert [_numbers(r) for r in a["metrics"]] == [_numbers(r) for r in b["metrics"]]
    assert a["step_losses"] == b["step_losses"]
    c = train(config.replace(seed=1))
    assert c["step_losses"] != a["step_losses"]


def _numbers(row):
    return {k: v for k, v in row.items() if k != "wall_time_s"}


def test_global_rng_is_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(TrainConfig(**SMALL, epochs=1))
    assert torch.equal(torch.rand(3), expected)


class Interrupt(Exception):
    pass


class StopAfter:
    """A callback that keeps the checkpoint of epoch ``epoch`` and then interrupts the run."""

    def __init__(self, epoch: int) -> None:
        self.epoch, self.ckpt, self.rows = epoch, None, []

    def on_epoch_end(self, row, step_losses, state):
        self.rows.append(row["epoch"])
        if row["epoch"] == self.epoch:
            self.ckpt = state.checkpoint()
            raise Interrupt


def test_an_interrupted_run_resumes_to_the_numbers_of_an_uninterrupted_one():
    """CPU, bit for bit: dropout masks, data order and the optimizer state all continue exactly."""
    config = TrainConfig(**SMALL, corruption="partial_labels", level=0.4, epochs=4, dropout=0.1)
    full = train(config)
    stop = StopAfter(2)
    with pytest.raises(Interrupt):
        train(config, callbacks=[stop])
    assert stop.rows == [0, 1, 2] and stop.ckpt["epoch"] == 2  # it really stopped at epoch 2 of 4
    resumed_rows = []

    class Rows:
        def on_epoch_end(self, row, step_losses, state):
            resumed_rows.append(row["epoch"])

    resumed = train(config, resume=stop.ckpt, callbacks=[Rows()])
    assert resumed_rows == [3, 4]  # only the epochs after the checkpoint were trained again
    assert [_numbers(r) for r in resumed["metrics"]] == [_numbers(r) for r in full["metrics"]]
    assert resumed["step_losses"] == full["step_losses"]
    again = train(config, resume=stop.ckpt)  # resuming must not consume the checkpoint
    assert again["step_losses"] == full["step_losses"]


def test_huge_learning_rate_diverges_and_stops_at_the_first_non_finite_loss():
    summary = train(TrainConfig(**{**SMALL, "lr": 1e6}, epochs=5))
    assert summary["status"] == "diverged" and summary["converged_step"] is None
    rows = summary["metrics"]
    finite = [all(math.isfinite(r[k]) for k in ("train_loss", "train_eval_loss") if r[k] is not None) for r in rows]
    assert finite[-1] is False and all(finite[:-1])  # the last row is the first non-finite one
    assert summary["epochs"] == rows[-1]["epoch"] < 5  # it stopped there instead of running to epochs=5
    # NaN outputs have no accuracy (their argmax is class 0): none in the last row nor the summary
    assert math.isnan(rows[-1]["train_eval_loss"]) and math.isnan(rows[-1]["test_loss"])
    assert rows[-1]["train_acc"] is None and rows[-1]["test_acc"] is None and rows[-1]["train_acc_clean"] is None
    assert summary["train_acc"] is None and summary["test_acc"] is None
    assert all(r["train_acc"] is not None for r in rows[:-1])
    fused = train_group([TrainConfig(**{**SMALL, "lr": 1e6}, epochs=5), TrainConfig(**SMALL, epochs=1)])
    assert fused[0]["status"] == "diverged" and fused[0]["train_acc"] is None and fused[0]["test_acc"] is None
    assert fused[1]["train_acc"] is not None


def test_lr_decays_per_samples_seen():
    summary = train(TrainConfig(**SMALL, epochs=3, lr_decay_every=500, lr_decay=0.5))
    # after epoch 1 (1,000 samples; last step started at 896 samples) the rate is 0.1 * 0.5**1
    assert summary["metrics"][1]["lr"] == pytest.approx(0.1 * 0.5)
    per_epoch = train(TrainConfig(**SMALL, epochs=2, lr_decay_every=0, lr_decay=0.5))
    assert per_epoch["metrics"][2]["lr"] == pytest.approx(0.1 * 0.5)


def test_resolve_fills_dataset_and_model_defaults():
    resolved = resolve_config(TrainConfig(data="mnist1d", model="mlp_1x512", corruption="random_labels"))
    assert resolved.lr == 0.1 and resolved.level == 1.0 and resolved.epochs > 0
    assert resolved.lr_decay_every == 50_000 and resolved.standardize == "per_feature"
    assert run_key(resolved) == run_key(resolve_config(resolved))  # idempotent
    assert run_key(resolved) != run_key(resolved.replace(seed=1))
    # where and in which memory format it runs is not part of what is computed
    assert run_key(resolved) == run_key(resolved.replace(device="cuda", data_dir="/elsewhere", channels_last=True))


@pytest.mark.parametrize("change, words", [
    (dict(model="nope"), ["unknown model 'nope'", "mlp_1x512"]),
    (dict(data="nope"), ["unknown dataset 'nope'", "mnist1d"]),
    (dict(corruption="nope"), ["unknown corruption 'nope'", "random_labels"]),
    (dict(corruption="partial_labels", level=1.5), ["level must be in [0, 1]"]),
    (dict(corruption="partial_labels"), ["--level"]),
    (dict(corruption="gaussian", level=0.3), ["takes no level"]),
    (dict(augment=True), ["augment", "image data", "signal"]),
    (dict(model="alexnet_small"), ["alexnet_small", "signal"]),
    (dict(batch_size=0), ["batch_size"]),
    (dict(channels_last=True), ["channels_last needs image data", "signal"]),
])
def test_bad_configs_name_the_fix(change, words):
    with pytest.raises((ConfigError, UnknownNameError)) as info:
        train(TrainConfig(**{**SMALL, **change}, epochs=1))
    for word in words:
        assert word in str(info.value)


def test_package_level_train_is_the_function():
    import rethinkgen.train.loop as loop  # the submodules stay importable

    assert callable(rethinkgen.train) and callable(loop.train)
    summary = rethinkgen.train(**SMALL, epochs=1)
    assert json.loads(json.dumps(summary["config"]))["model"] == "mlp_1x512"


# ------------------------------------------------------------------ convergence at a stated resolution
# 256 MNIST-1D samples in batches of 32: 8 SGD steps per epoch. Random labels: the training accuracy
# first touches 100% inside an epoch and is below it again at that epoch's end (CPU, one seed).
CONV = dict(data="mnist1d", n_train=256, n_test=200, model="mlp_1x512", lr=0.1, device="cpu", batch_size=32,
            log_every=3, corruption="random_labels", epochs=40)
STEPS_PER_EPOCH = 8


def test_convergence_step_is_found_between_epoch_ends_at_the_stated_resolution():
    per_epoch = train(TrainConfig(**CONV))
    every_step = train(TrainConfig(**CONV, eval_every=1))
    every_3 = train(TrainConfig(**CONV, eval_every=3))
    assert [s["status"] for s in (per_epoch, every_step, every_3)] == ["converged"] * 3
    # resolutions: an epoch, one step, three steps
    assert [s["convergence_resolution_steps"] for s in (per_epoch, every_step, every_3)] == [STEPS_PER_EPOCH, 1, 3]
    assert [s["eval_every"] for s in (per_epoch, every_step, every_3)] == [None, 1, 3]
    assert per_epoch["converged_step"] % STEPS_PER_EPOCH == 0  # today's resolution: epoch ends only
    first = every_step["converged_step"]
    assert first % STEPS_PER_EPOCH != 0 and first < per_epoch["converged_step"]  # inside an epoch, earlier
    assert every_step["converged_train_acc"] == 1.0
    assert every_step["converged_epoch"] == -(-first // STEPS_PER_EPOCH)  # the epoch that step fell in
    # the run finishes the epoch it converged in: whole epochs, and here the accuracy dipped again
    assert every_step["steps"] == every_step["epochs"] * STEPS_PER_EPOCH
    assert every_step["train_acc"] < 1.0 == every_step["converged_train_acc"]
    # a coarser resolution finds an evaluated step at or after the first one
    assert every_3["converged_step"] >= first
    assert every_3["converged_step"] % 3 == 0 or every_3["converged_step"] % STEPS_PER_EPOCH == 0
    # ... and both are exactly the steps a per-step evaluation from outside the trainer finds
    accs = _accuracy_after_every_step(TrainConfig(**CONV))
    assert first == next(s for s, a in accs if a >= 1.0)
    assert every_3["converged_step"] == next(s for s, a in accs if a >= 1.0 and (s % 3 == 0 or s % 8 == 0))
    # evaluating changes nothing about the training itself: the same rows and losses, as far as both go
    n = len(every_step["metrics"])
    assert [_numbers(r) for r in every_step["metrics"]] == [_numbers(r) for r in per_epoch["metrics"][:n]]
    assert every_step["step_losses"] == per_epoch["step_losses"][:len(every_step["step_losses"])]


def _accuracy_after_every_step(config: TrainConfig) -> list[tuple[int, float]]:
    """(step, eval-mode accuracy on the whole training set) after every SGD step of ``config``'s run,
    measured by wrapping the step from outside (the model has no dropout or BatchNorm: evaluating it
    changes nothing about its training)."""
    from rethinkgen.train.loop import Trainer
    from rethinkgen.train.metrics import predict_correct

    accs: list[tuple[int, float]] = []
    step = Trainer._sgd_step

    def measured(self, index, augment, lr):
        loss = step(self, index, augment, lr)
        self.model.eval()
        _, correct = predict_correct(self.model, self.data.x_train, self.data.y_train, 4096, False)
        self.model.train()
        accs.append((len(accs) + 1, float(correct.float().mean())))
        return loss

    Trainer._sgd_step = measured
    try:
        train(config)
    finally:
        Trainer._sgd_step = step
    return accs


def test_evaluations_between_epochs_are_in_eval_mode_and_leave_batchnorm_statistics_alone():
    """A train-mode evaluation would update BatchNorm's running statistics (and every later row):
    with eval_every=1 the small Inception's rows and losses are those of per-epoch evaluation."""
    config = TrainConfig(data="synthetic", data_options={"shape": "3x12x12"}, n_train=32, n_test=16, crop=10,
                         model="inception_small", lr=0.05, batch_size=8, epochs=2, log_every=1, device="cpu",
                         target_train_acc=1.0)
    plain, evaluated = train(config), train(config.replace(eval_every=1))
    assert evaluated["epochs"] == plain["epochs"] == 2
    assert [_numbers(r) for r in evaluated["metrics"]] == [_numbers(r) for r in plain["metrics"]]
    assert evaluated["step_losses"] == plain["step_losses"]


def test_eval_every_is_validated_in_configs_and_specs():
    from rethinkgen.sweep.spec import parse_spec

    with pytest.raises(ConfigError, match="eval_every must be >= 1"):
        train(TrainConfig(**SMALL, epochs=1, eval_every=0))
    with pytest.raises(ConfigError, match="eval_every must be >= 1"):
        parse_spec('name = "x"\n[defaults]\ndata = "mnist1d"\neval_every = 0\n')
    spec = parse_spec('name = "x"\n[defaults]\ndata = "mnist1d"\n[grid]\neval_every = [1, 50]\n')
    assert sorted(r.config.eval_every for r in spec.runs) == [1, 50]
    # unset, it leaves the run key as it was before the field existed; set, it is part of the key
    base = resolve_config(TrainConfig(**SMALL))
    assert '"eval_every"' not in canonical_json(base)
    assert run_key(base) != run_key(base.replace(eval_every=10))


# ------------------------------------------------------------------ the row's learning rate
def test_row_lr_is_the_rate_of_the_epochs_last_step_in_both_trainers():
    """1,000 samples in batches of 128: the last step of epoch e starts at 1000·e − 104 samples. With a
    decay every 950 samples the rate changes *inside* that last batch, so "the rate after the last
    sample" (0.05 for epoch 1) and "the rate of the last step" (0.1) differ; the row says the latter,
    which is also what the optimizer holds after the epoch. Epoch 0: the initial rate."""
    from rethinkgen.train.fused import train_group

    config = TrainConfig(**SMALL, epochs=3, lr_decay_every=950, lr_decay=0.5)
    optimizer_lrs = []

    class Spy:
        def on_epoch_end(self, row, step_losses, state):
            optimizer_lrs.append(state.optimizer.param_groups[0]["lr"])

    summary = train(config, callbacks=[Spy()])
    lrs = [r["lr"] for r in summary["metrics"]]
    assert lrs == [0.1, 0.1, 0.05, 0.0125]  # last steps start at 896, 1896, 2896 samples: decays 0, 1, 3
    assert lrs[1:] == optimizer_lrs[1:]  # the rate the last step used
    other = config.replace(corruption="random_labels")
    fused = train_group([config, other])  # the fused trainer writes the same rows' rates
    assert [r["lr"] for r in fused[0]["metrics"]] == lrs
    assert [r["lr"] for r in fused[1]["metrics"]] == lrs


def test_trainer_used_directly_leaves_the_global_rng_alone():
    """Trainer (public) initialises its model and draws dropout masks from seeded streams; the caller's
    global torch RNG is where the caller left it, on construction and after an epoch."""
    from rethinkgen.train.loop import Trainer

    config = resolve_config(TrainConfig(**SMALL, epochs=1, dropout=0.3))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    trainer = Trainer(config, torch.device("cpu"))
    trainer.train_epoch()
    assert torch.equal(torch.rand(3), expected)
    # and the numbers do not depend on the caller's RNG state
    torch.manual_seed(7)
    again = Trainer(config, torch.device("cpu"))
    assert again.train_epoch() == Trainer(config, torch.device("cpu")).train_epoch()


# ------------------------------------------------------------------ what the trainer measures
def test_test_accuracy_is_against_the_true_labels_when_training_labels_are_random():
    """Design §2: test labels are never corrupted. The row's test accuracy is recomputed here from the
    trained model and the source's own test labels (loaded independently), while ~90% of the training
    labels the trainer used differ from the source's."""
    from rethinkgen.data.sources import load_dataset
    from rethinkgen.train.loop import Trainer

    config = resolve_config(TrainConfig(**SMALL, corruption="random_labels", epochs=3))
    trainer = Trainer(config, torch.device("cpu"))
    summary = trainer.fit()
    source = load_dataset("mnist1d", None, n_train=1000, n_test=500, seed=0)
    assert (trainer.data.y_train != source.y_train).float().mean() > 0.8
    assert torch.equal(trainer.data.y_test, source.y_test)  # the labels the trainer evaluates against
    trainer.model.eval()
    with torch.no_grad():
        predicted = trainer.model(trainer.data.x_test).argmax(dim=1)
    true_acc = (predicted == source.y_test).float().mean().item()
    assert summary["metrics"][-1]["test_acc"] == pytest.approx(true_acc, abs=1e-7)  # float32 mean vs float


def test_training_accuracy_is_measured_in_eval_mode():
    """With dropout 0.5 the network's train-mode predictions are noisy: the row's training accuracy is
    the eval-mode one (recomputed here), not a train-mode one (which differs on these 1,000 samples)."""
    from rethinkgen.train.loop import Trainer
    from rethinkgen.train.rng import seeded

    config = resolve_config(TrainConfig(**SMALL, epochs=2, dropout=0.5))
    trainer = Trainer(config, torch.device("cpu"))
    summary = trainer.fit()
    x, y = trainer.data.x_train, trainer.data.y_train
    with torch.no_grad():
        trainer.model.eval()
        eval_acc = (trainer.model(x).argmax(1) == y).float().mean().item()
        trainer.model.train()
        with seeded(0, torch.device("cpu")):
            train_mode_acc = (trainer.model(x).argmax(1) == y).float().mean().item()
    assert summary["metrics"][-1]["train_acc"] == pytest.approx(eval_acc, abs=1e-7)
    assert abs(train_mode_acc - eval_acc) > 1e-3
