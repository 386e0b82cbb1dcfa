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
from rethinkgen.train.fused.batchnorm import StackableBatchNorm, vmappable
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


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def assert_same_run(fused: dict, alone: dict) -> None:
    assert set(fused) == set(alone)
    for key in ("status", "steps", "epochs", "converged_step", "converged_epoch", "converged_train_acc",
                "eval_every", "convergence_resolution_steps", "n_params", "run_key", "config", "realized_noise_rate",
                "device"):
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


def test_runs_with_their_own_eval_every_converge_at_the_steps_the_single_trainer_finds():
    """Evaluations between epoch ends in a group: each run on its own schedule (every step, every 3rd,
    per epoch), the same convergence steps — mid-epoch ones included — as trained alone."""
    configs = [TrainConfig(**MLP, corruption="random_labels", epochs=40, eval_every=1),
               TrainConfig(**MLP, corruption="random_labels", epochs=40, eval_every=3),
               TrainConfig(**MLP, corruption="true_labels", epochs=40)]
    fused = train_group(configs)
    for f, c in zip(fused, configs, strict=True):
        assert_same_run(f, train(c))
    steps = [s["converged_step"] for s in fused]
    assert steps[0] % 8 != 0 and steps[0] <= steps[1]  # 8 steps per epoch: the first one is mid-epoch
    assert [s["convergence_resolution_steps"] for s in fused] == [1, 3, 8]


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
    layouts = [TrainConfig(**{**IMG, "channels_last": cl}, model="alexnet_small", epochs=1) for cl in (None, True)]
    assert "channels_last" in why_not_fused(layouts)  # one memory format per group
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


# ------------------------------------------------------------------ BatchNorm and channels-last under vmap
# Float32 on the CPU: the plain-reduction BatchNorm sums in another order than torch's kernel (which
# accumulates in float64 on the CPU), so outputs and gradients agree to ~1e-6 of their size.
BN_TOL = dict(rtol=1e-5, atol=1e-5)


def _bn_pair(kind, momentum, formulation="reductions"):
    g = torch.Generator().manual_seed(0)
    ref = kind(5, momentum=momentum)
    with torch.no_grad():
        ref.weight.copy_(0.5 + torch.rand(5, generator=g))
        ref.bias.copy_(torch.rand(5, generator=g) - 0.5)
    return ref, StackableBatchNorm(copy.deepcopy(ref), formulation)


@pytest.mark.parametrize("formulation", ["reductions", "native"])
@pytest.mark.parametrize("kind, shape, channels_last, momentum", [
    (torch.nn.BatchNorm2d, (8, 5, 6, 6), False, 0.1),
    (torch.nn.BatchNorm2d, (8, 5, 6, 6), True, 0.1),
    (torch.nn.BatchNorm2d, (8, 5, 3, 4), True, None),  # cumulative average of the batch statistics
    (torch.nn.BatchNorm1d, (8, 5), False, 0.1),
    (torch.nn.BatchNorm1d, (8, 5, 7), False, 0.1),
])
def test_stackable_batchnorm_equals_torch_batchnorm_in_train_and_eval_mode(kind, shape, channels_last, momentum,
                                                                           formulation):
    ref, ours = _bn_pair(kind, momentum, formulation)
    gen = torch.Generator().manual_seed(1)
    for mode in ("train", "train", "train", "eval"):
        ref.train(mode == "train")
        ours.train(mode == "train")
        x = (3 * torch.randn(shape, generator=gen) + 1).requires_grad_()
        if channels_last:
            x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
        upstream = torch.randn(shape, generator=gen)
        y_ref, y = ref(x), ours(x)
        torch.testing.assert_close(y, y_ref, **BN_TOL)
        grads_ref = torch.autograd.grad((y_ref * upstream).sum(), [x, ref.weight, ref.bias])
        grads = torch.autograd.grad((y * upstream).sum(), [x, ours.weight, ours.bias])
        for g, g_ref in zip(grads, grads_ref, strict=True):
            torch.testing.assert_close(g, g_ref, **BN_TOL)
        torch.testing.assert_close(ours.running_mean, ref.running_mean, **BN_TOL)
        torch.testing.assert_close(ours.running_var, ref.running_var, **BN_TOL)
        assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked)
    assert int(ref.num_batches_tracked) == 3  # eval mode left the statistics alone


@pytest.mark.parametrize("formulation", ["reductions", "native"])
def test_stackable_batchnorm_on_bfloat16_inputs_computes_in_float32(formulation):
    """Under autocast a BatchNorm sees bfloat16 activations: statistics in float32, output in bfloat16,
    equal to torch's kernel within bfloat16 rounding (relative 1e-2)."""
    ref, ours = _bn_pair(torch.nn.BatchNorm2d, 0.1, formulation)
    x = (3 * torch.randn(8, 5, 6, 6, generator=torch.Generator().manual_seed(2)) + 1).to(torch.bfloat16)
    y_ref, y = ref(x), ours(x)
    assert y.dtype == torch.bfloat16 and ours.running_mean.dtype == torch.float32
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(ours.running_var, ref.running_var, rtol=1e-3, atol=1e-3)


CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                        reason="needs a CUDA device")])


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("formulation", ["reductions", "native"])
def test_stackable_batchnorm_under_vmap_updates_each_runs_own_statistics(formulation, device):
    """Three runs' BatchNorms stacked and vmapped over channels-last inputs — on CUDA the very case in
    which torch's own BatchNorm raises — against each run's nn.BatchNorm2d applied alone (float32)."""
    from torch.func import functional_call, stack_module_state, vmap

    gen = torch.Generator().manual_seed(1)
    refs = [torch.nn.BatchNorm2d(4).to(device) for _ in range(3)]
    for i, m in enumerate(refs):  # each run its own parameters and statistics
        with torch.no_grad():
            m.weight.fill_(1.0 + i)
            m.bias.fill_(-0.5 * i)
        m.running_mean.fill_(0.1 * i)
        m.running_var.fill_(1.0 + i)
    params, stats = stack_module_state(refs)
    template = vmappable(refs[0], formulation).to("meta")
    x = (2 * torch.randn(3, 6, 4, 8, 8, generator=gen) + 1).to(device)  # (K, B, C, H, W): per-run inputs
    x = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)  # channels-last within each run
    out = vmap(lambda p, s, xb: functional_call(template, (p, s), (xb,)))(params, stats, x)
    for k, m in enumerate(refs):
        torch.testing.assert_close(out[k], m(x[k]), **BN_TOL)
        torch.testing.assert_close(stats["running_mean"][k], m.running_mean, **BN_TOL)
        torch.testing.assert_close(stats["running_var"][k], m.running_var, **BN_TOL)
    assert stats["num_batches_tracked"].tolist() == [1, 1, 1]


@pytest.mark.parametrize("model", ["inception_small", "resnet18"])
def test_vmappable_keeps_the_models_state_dict_names(model):
    from rethinkgen.models import create_model

    with torch.device("meta"):
        original = create_model(model, (3, 28, 28), 10)
    swapped = vmappable(original)
    assert list(swapped.state_dict()) == list(original.state_dict())
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in swapped.modules())


def test_channels_last_inception_group_never_calls_torch_batch_norm_and_matches_separate_runs(monkeypatch):
    """The CUDA crash (torch's batch_norm asking a vmapped channels-last tensor for its memory format)
    cannot happen on the CPU; what can be shown here: with channels_last forced, the fused group never
    calls torch's batch_norm, and equals the single trainer (which uses nn.BatchNorm2d, channels-last)."""
    tiny = {**IMG, "n_train": 32, "n_test": 32, "channels_last": True}
    configs = [TrainConfig(**tiny, model="inception_small", lr=0.05, corruption="true_labels", epochs=2),
               TrainConfig(**tiny, model="inception_small", lr=0.05, corruption="random_labels", epochs=2),
               TrainConfig(**tiny, model="inception_small", lr=0.05, corruption="true_labels", epochs=1,
                           augment=True, flip=True, seed=1)]  # per-run augmented inputs: the (K, B, ...) path
    assert can_fuse(configs)

    def refuse(*args, **kwargs):
        raise AssertionError("torch.nn.functional.batch_norm called inside the fused group")

    monkeypatch.setattr(torch.nn.functional, "batch_norm", refuse)
    fused = train_group(configs)
    monkeypatch.undo()
    for f, c in zip(fused, configs, strict=True):
        assert_same_run(f, train(c))


def test_the_single_trainer_stores_weights_and_inputs_channels_last_when_asked():
    from rethinkgen.train.loop import Trainer
    from rethinkgen.train.resolve import resolve_config

    for asked in (True, False, None):  # None on the CPU: channels-first
        trainer = Trainer(resolve_config(TrainConfig(**IMG, model="alexnet_small", channels_last=asked)),
                          torch.device("cpu"))
        conv = trainer.model.conv1.weight if hasattr(trainer.model, "conv1") else next(
            p for p in trainer.model.parameters() if p.dim() == 4)
        assert conv.is_contiguous(memory_format=torch.channels_last) == bool(asked)
        assert trainer.data.x_train.is_contiguous(memory_format=torch.channels_last) == bool(asked)


def _registered_models(aux_logits: bool = False):
    from rethinkgen.models import MODELS

    return [n for n in MODELS.names() if MODELS.get(n).aux_logits == aux_logits]


@pytest.mark.parametrize("model", _registered_models())
def test_every_registered_model_trains_fused_as_it_trains_alone(model):
    """A fused group of two runs (one SGD step each, channels-last for image models) equals the runs
    trained alone within the module's tolerance: every model a sweep can name fuses, except those
    with auxiliary logits (below)."""
    from rethinkgen.models import MODELS

    if model == "resnet50":  # it takes >= 32×32; at 32×32 its last stage is 1×1 (BatchNorm over 8 values)
        base = {**IMG, "data_options": {"shape": "3x64x64"}, "crop": 0, "n_train": 8, "n_test": 8,
                "batch_size": 8, "channels_last": True}
    elif MODELS.get(model).layouts[0] == "image":
        base = {**IMG, "n_train": 8, "n_test": 8, "batch_size": 8, "channels_last": True}
    else:
        base = {**CNN, "n_train": 8, "n_test": 8, "batch_size": 8}
    lr = 0.001 if model == "resnet50" else 0.01  # 50 layers: lr 0.01 takes one step's eval loss to ~40 nats,
    # where float differences between grouped and plain convolutions exceed the tolerance
    configs = [TrainConfig(**{**base, "model": model}, lr=lr, corruption=c, epochs=1)
               for c in ("true_labels", "random_labels")]
    assert can_fuse(configs), why_not_fused(configs)
    for f, c in zip(train_group(configs), configs, strict=True):
        assert_same_run(f, train(c))


@pytest.mark.parametrize("model", _registered_models(aux_logits=True))
def test_models_with_auxiliary_logits_are_never_fused(model):
    configs = [TrainConfig(**{**IMG, "data_options": {"shape": "3x299x299"}, "crop": 0, "model": model},
                           corruption=c, epochs=1) for c in ("true_labels", "random_labels")]
    reason = why_not_fused(configs)
    assert reason is not None and "auxiliary logits" in reason
    assert fuse_key(configs[0])[0] == "alone"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
def test_fused_inception_group_on_cuda_matches_separate_runs(amp):
    """The crash of issue 10 (fp32 takes torch's cuDNN BatchNorm branch): a fused inception_small group
    on CUDA, channels-last by default there, against the same runs alone on CUDA. Tolerance: TF32
    convolutions and (with amp) bfloat16 activations sum differently in grouped and single kernels;
    losses within relative 2e-2, accuracies within 0.1."""
    tiny = {**IMG, "device": "cuda", "n_train": 64, "n_test": 32, "amp": amp}
    configs = [TrainConfig(**tiny, model="inception_small", lr=0.05, corruption=c, epochs=2)
               for c in ("true_labels", "random_labels", "shuffled_pixels")]
    fused = train_group(configs)
    for f, c in zip(fused, configs, strict=True):
        alone = train(c)
        assert (f["status"], f["steps"], f["epochs"]) == (alone["status"], alone["steps"], alone["epochs"])
        for a, b in zip(f["metrics"][1:], alone["metrics"][1:], strict=True):
            assert a["train_eval_loss"] == pytest.approx(b["train_eval_loss"], rel=2e-2)
            assert abs(a["train_acc"] - b["train_acc"]) <= 0.1 and abs(a["test_acc"] - b["test_acc"]) <= 0.1


def test_a_group_whose_last_batch_of_one_the_model_cannot_train_on_is_refused_before_training():
    """9 images in batches of 4 leave a last batch of 1, where ResNet-18 on 8-pixel images normalises a 1x1
    map: the single trainer refuses this before training (train.last_batch); the fused group computed
    BatchNorm from reductions instead, with a variance of 0, and trained on silently. CPU."""
    from rethinkgen.errors import ConfigError

    base = dict(data="synthetic", data_options={"shape": "3x8x8"}, n_train=9, n_test=4, model="resnet18",
                batch_size=4, epochs=1, device="cpu")
    configs = [TrainConfig(**base, seed=s) for s in (0, 1)]
    assert can_fuse(configs)
    with pytest.raises(ConfigError, match=r"last minibatch .* 1 sample \(9 samples in batches of 4\)"):
        train_group(configs)
