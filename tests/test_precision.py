"""The precision switch (``TrainConfig.precision``): bf16 autocast forced on the CPU, so the CPU tests cover the
bf16 code paths that run automatically on CUDA only (the single trainer's eager and static steps, the fused
group's vmapped forward and its static step, evaluation under autocast, resume).

Every run here names ``device="cpu"``. Tolerances, per test: the static step equals the eager one **bit for
bit** in bf16 as in float32 (the same operations in the same order; measured equal); a fused group equals its
runs trained alone within relative 2e-2 on losses (bf16 keeps 8 bits of mantissa and the grouped and the plain
kernels round at other places: measured up to 2e-5 on evaluation losses, 4e-3 on step losses of
``inception_small``) and 0.1 on accuracies (these untrained-scale models sit near chance, where logits are
near-ties: 4 of 64 samples changed side in the measured ``inception_small`` run).
"""

from __future__ import annotations

import json

import pytest
import torch

from rethinkgen.errors import ConfigError
from rethinkgen.sweep.spec import parse_spec
from rethinkgen.train.config import TrainConfig, canonical_json, run_key
from rethinkgen.train.fused import train_group, why_not_fused
from rethinkgen.train.loop import Trainer, train
from rethinkgen.train.numerics import NumericsMismatchError, describe, plan_numerics
from rethinkgen.train.resolve import autocast_dtype, autocast_name, resolve_config
from test_cli_train import TINY, interrupted_after_epoch_2, invoke
from test_cli_train import numbers as folder_numbers

# MNIST-1D, 300 samples in batches of 64 (4 full batches and one of 44).
MLP = dict(data="mnist1d", n_train=300, n_test=100, model="mlp_1x512", lr=0.1, device="cpu", batch_size=64,
           log_every=2)
# Tiny synthetic images, 12x12 cropped to 10x10: 64 samples in batches of 32.
IMG = dict(data="synthetic", data_options={"shape": "3x12x12"}, n_train=64, n_test=32, device="cpu",
           batch_size=32, crop=10, log_every=1)
BF16 = dict(rel=2e-2, abs=1e-6)  # losses: bf16 rounding at other places (module docstring)
ACC = 0.1  # accuracies of near-chance models (module docstring)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def numbers(summary: dict) -> tuple:
    return ([{k: v for k, v in r.items() if k != "wall_time_s"} for r in summary["metrics"]],
            summary["step_losses"], summary["status"], summary["converged_step"])


def losses(summary: dict) -> list[float]:
    """Every loss a run recorded: per row (training, evaluation on both sets), then each logged step's."""
    rows = [r[k] for r in summary["metrics"] for k in ("train_loss", "train_eval_loss", "test_loss")
            if r[k] is not None]
    return rows + [v for _, v in summary["step_losses"]]


def accuracies(summary: dict) -> list[float]:
    return [r[k] for r in summary["metrics"] for k in ("train_acc", "test_acc")]


def worst_relative(a: dict, b: dict) -> float:
    """max |a - b| / |b| over every loss of two runs."""
    return max(abs(x - y) / abs(y) for x, y in zip(losses(a), losses(b), strict=True))


# ------------------------------------------------------------------------------ the field
def test_autocast_follows_the_field_on_every_device():
    plain = TrainConfig()
    for device in ("cpu", "cuda", "mps"):
        assert autocast_name(plain.replace(precision="bfloat16"), device) == "bfloat16"
        assert autocast_name(plain.replace(precision="float32"), device) is None
    # None: automatic, as before the field existed (amp: the model's dtype on CUDA only)
    assert autocast_name(plain, "cuda") == "bfloat16" and autocast_name(plain, "cpu") is None
    assert autocast_name(plain, "mps") is None and autocast_name(plain.replace(amp=False), "cuda") is None
    assert autocast_name(plain.replace(amp=False, precision="float32"), "cuda") is None
    assert autocast_dtype(plain.replace(precision="bfloat16"), "cpu") == torch.bfloat16
    forced = plan_numerics(resolve_config(TrainConfig(**MLP, precision="bfloat16")), "cpu", "signal", threads=1)
    assert forced.autocast == "bfloat16" and describe(forced.to_dict()) == "cpu, bf16 autocast, 1 thread"


def test_unknown_values_and_a_contradiction_with_amp_are_refused_naming_the_fix():
    with pytest.raises(ConfigError, match=r"precision must be one of float32, bfloat16 \(unset: automatic\), "
                                          r"got 'float16'"):
        TrainConfig(precision="float16")
    with pytest.raises(ConfigError) as info:
        TrainConfig(precision="bfloat16", amp=False)
    assert "amp=false turns autocast off; drop amp=false" in str(info.value)
    assert "precision=float32" in str(info.value)
    with pytest.raises(ConfigError, match="drop amp=false"):
        TrainConfig(amp=False).replace(precision="bfloat16")
    TrainConfig(precision="float32", amp=False)  # no contradiction: float32 either way
    # sweep specs: the key path of each problem, every problem at once
    with pytest.raises(ConfigError) as spec:
        parse_spec('[defaults]\namp = false\n[grid]\nprecision = ["bfloat16", "fp16"]\n', source="s.toml")
    text = str(spec.value)
    assert "grid.precision[1]: precision must be one of float32, bfloat16" in text
    assert "grid.precision[0]: precision=bfloat16 asks for bf16 autocast" in text and "(defaults.amp)" in text
    with pytest.raises(ConfigError, match=r"--precision: precision=bfloat16 asks .* \(defaults.amp\)"):
        parse_spec("[defaults]\namp = false\n", source="s.toml", overrides={"precision": "bfloat16"})


def test_the_field_is_outside_the_run_key_so_every_stored_key_stays_as_it_was():
    """Keys computed before the field existed (hard-coded here), for a default and a non-default config: the
    field leaves them as they were, whatever its value (the numerics record the autocast dtype)."""
    signal = TrainConfig(data="mnist1d", corruption="random_labels", seed=1, epochs=300, lr=0.1,
                         lr_decay_every=50000, crop=0, standardize="per_feature", level=1.0)
    image = TrainConfig(data="synthetic", data_options={"shape": "3x32x32"}, crop=28, model="inception_small",
                        corruption="partial_labels", level=0.2, amp=False, epochs=100, lr=0.1, lr_decay_every=50000,
                        standardize="per_feature", device="cpu", channels_last=True, cuda_graphs=True)
    before = [(signal, "51bc989fade37ddf3aad4e22669f4d2359fc22c034500f71e666439c2adfd235"),
              (image, "83cf5d0a564fd7234afcf2091bb53c43887f36e510691a239657e2f69a56278f")]
    for config, key in before:
        assert run_key(config) == key
        assert run_key(config.replace(precision="float32")) == key
        assert '"precision"' not in canonical_json(config)
    assert run_key(signal.replace(precision="bfloat16")) == before[0][1]


def test_a_group_shares_its_precision_and_a_spec_cannot_ask_for_two_under_one_key():
    cfg = resolve_config(TrainConfig(**MLP))
    assert "precision" in why_not_fused([cfg, cfg.replace(precision="bfloat16", seed=1)])
    assert why_not_fused([cfg.replace(precision="bfloat16"), cfg.replace(precision="bfloat16", seed=1)]) is None
    # a grid over precision would be one run in the store (the key is the same): refused, with the fix
    with pytest.raises(ConfigError) as info:
        parse_spec('[defaults]\ndata = "mnist1d"\n[grid]\nprecision = ["float32", "bfloat16"]\n', source="s.toml")
    text = " ".join(str(info.value).split())
    assert "only in precision (float32 vs bfloat16), which is not part of the run key" in text
    assert "Set precision in [defaults] and run each value into a store of its own" in text
    spec = parse_spec('[defaults]\ndata = "mnist1d"\nprecision = "bfloat16"\n[grid]\nseed = [0, 1]\n')
    assert [r.config.precision for r in spec.runs] == ["bfloat16", "bfloat16"]
    overridden = parse_spec('[defaults]\ndata = "mnist1d"\n[grid]\nseed = [0, 1]\n', overrides={"precision": "float32"})
    assert {r.config.precision for r in overridden.runs} == {"float32"}


# ------------------------------------------------------------------------------ the single trainer
def test_forced_bf16_trains_a_cpu_run_in_bf16_and_records_it():
    """inception_small (BatchNorm) with random crops and flips, 2 epochs: the numerics say bf16 on the CPU;
    the numbers are not float32's (autocast really ran) but within bf16 rounding of them; weights, BatchNorm
    statistics and momentum buffers stay float32."""
    config = TrainConfig(**IMG, model="inception_small", lr=0.05, epochs=2, augment=True, flip=True)
    trainer = Trainer(resolve_config(config.replace(precision="bfloat16")), torch.device("cpu"))
    assert trainer.autocast == torch.bfloat16 and trainer.numerics.autocast == "bfloat16"

    class Keep:
        def on_epoch_end(self, row, logged, state):
            self.ckpt = state.checkpoint()

    keep = Keep()
    bf16 = train(config.replace(precision="bfloat16"), callbacks=[keep])
    fp32 = train(config)
    assert (bf16["numerics"]["device"], bf16["numerics"]["autocast"]) == ("cpu", "bfloat16")
    assert fp32["numerics"]["autocast"] is None
    assert keep.ckpt["numerics"]["autocast"] == "bfloat16"
    assert {v.dtype for v in keep.ckpt["model"].values()} <= {torch.float32, torch.int64}  # int64: BN's counter
    assert {s["momentum_buffer"].dtype for s in keep.ckpt["optimizer"]["state"].values()} == {torch.float32}
    assert bf16["run_key"] == fp32["run_key"]
    assert bf16["status"] == fp32["status"] and bf16["steps"] == fp32["steps"]
    assert losses(bf16) != losses(fp32)  # bf16 rounding changed the numbers
    assert losses(bf16) == pytest.approx(losses(fp32), **BF16)
    assert accuracies(bf16) == pytest.approx(accuracies(fp32), abs=ACC)


@pytest.mark.parametrize("name", ["mlp_dropout", "inception_bn_augment", "alexnet_channels_last"])
def test_the_static_step_gives_the_eager_numbers_bit_for_bit_in_bf16_on_the_cpu(name):
    """CPU, exact equality in bf16 as in float32 (tests/test_step.py): the static step (cuda_graphs=True) runs
    the eager step's operations in the same order under the same autocast (only its weight-cast cache is off)."""
    config = {
        "mlp_dropout": TrainConfig(**MLP, corruption="partial_labels", level=0.3, epochs=2, dropout=0.2),
        "inception_bn_augment": TrainConfig(**IMG, model="inception_small", lr=0.05, epochs=1, augment=True,
                                            flip=True),
        "alexnet_channels_last": TrainConfig(**IMG, model="alexnet_small", lr=0.01, epochs=2, channels_last=True,
                                             corruption="random_labels"),
    }[name].replace(precision="bfloat16")
    eager, static = train(config), train(config.replace(cuda_graphs=True))
    assert eager["numerics"]["autocast"] == static["numerics"]["autocast"] == "bfloat16"
    assert numbers(static) == numbers(eager)


def test_a_bf16_cpu_run_resumes_bit_for_bit_and_a_float32_checkpoint_is_refused_in_bf16():
    config = TrainConfig(**MLP, corruption="random_labels", epochs=3)

    class Interrupt(Exception):
        pass

    class StopAt1:
        def on_epoch_end(self, row, logged, state):
            if row["epoch"] == 1:
                self.ckpt = state.checkpoint()
                raise Interrupt

    def checkpoint(c: TrainConfig) -> dict:
        stop = StopAt1()
        with pytest.raises(Interrupt):
            train(c, callbacks=[stop])
        return stop.ckpt

    bf16 = config.replace(precision="bfloat16")
    assert numbers(train(bf16, resume=checkpoint(bf16))) == numbers(train(bf16))  # same numerics: exact
    fp32_ckpt = checkpoint(config)
    with pytest.raises(NumericsMismatchError) as info:
        train(bf16, resume=fp32_ckpt)
    message = str(info.value)
    assert info.value.differences == ["autocast: trained with float32 (no autocast), here bfloat16 autocast"]
    assert "(cpu, float32, 1 thread)" in message and "(cpu, bf16 autocast, 1 thread)" in message
    assert "Fix: run with precision='float32'" in message
    with pytest.raises(NumericsMismatchError, match="run with precision='bfloat16'"):
        train(config, resume=checkpoint(bf16))
    # the fix it names resumes the float32 run (precision="float32" is what None does on the CPU)
    assert numbers(train(config.replace(precision="float32"), resume=fp32_ckpt)) == numbers(train(config))


# ------------------------------------------------------------------------------ fused groups
@pytest.mark.parametrize("model, lr, epochs, corruptions", [
    ("alexnet_small", 0.01, 2, ("true_labels", "random_labels", "shuffled_pixels")),
    ("inception_small", 0.05, 1, ("true_labels", "random_labels")),  # BatchNorm under vmap, statistics in float32
])
def test_a_fused_convnet_group_in_forced_bf16_equals_its_runs_alone_in_bf16(model, lr, epochs, corruptions):
    """CPU: grouped convolutions under vmap, cast to bf16 as autocast casts a lone model's (fused/autocast.py),
    against each run trained alone under bf16 autocast; tolerances in the module docstring."""
    configs = [TrainConfig(**IMG, model=model, lr=lr, corruption=c, epochs=epochs, precision="bfloat16")
               for c in corruptions]
    assert why_not_fused(configs) is None
    for fused, config in zip(train_group(configs), configs, strict=True):
        alone = train(config)
        assert fused["numerics"] == alone["numerics"] and fused["numerics"]["autocast"] == "bfloat16"
        assert (fused["status"], fused["steps"], fused["epochs"]) == (alone["status"], alone["steps"],
                                                                      alone["epochs"])
        assert losses(fused) == pytest.approx(losses(alone), **BF16)
        assert accuracies(fused) == pytest.approx(accuracies(alone), abs=ACC)


def test_a_fused_mlp_group_computes_in_bf16_when_forced():
    """CPU: the fused MLP's batched matrix products (no vmap) run under autocast too. Each fused run is within
    relative 1e-5 of itself alone in bf16 (measured 1.4e-7: the same bf16 roundings, other summation order)
    and further than that from itself alone in float32 (measured 1.3e-4 to 4.8e-4): bf16 really ran."""
    configs = [TrainConfig(**MLP, corruption=c, epochs=2, precision="bfloat16")
               for c in ("true_labels", "random_labels")]
    for fused, config in zip(train_group(configs), configs, strict=True):
        assert fused["numerics"]["autocast"] == "bfloat16"
        assert worst_relative(fused, train(config)) < 1e-5
        assert worst_relative(fused, train(config.replace(precision=None))) > 1e-5


# ------------------------------------------------------------------------------ the command line
def test_the_train_command_forces_bf16_and_a_resume_names_the_precision_that_continues_it(tmp_path, monkeypatch):
    forced = invoke("train", *TINY, "--epochs", "1", "--precision", "bfloat16", "--json", "--quiet",
                    "--out", tmp_path / "bf16")
    assert forced.exit_code == 0, forced.output
    summary = json.loads((tmp_path / "bf16" / "summary.json").read_text())
    assert summary["numerics"]["autocast"] == "bfloat16" and summary["config"]["precision"] == "bfloat16"
    bad = invoke("train", *TINY, "--precision", "fp16", "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "precision must be one of float32, bfloat16" in " ".join(bad.output.split())

    out = interrupted_after_epoch_2(tmp_path, [*TINY, "--epochs", "4"], monkeypatch)  # float32 (CPU default)
    before = (out / "summary.json").read_text()
    refused = invoke("train", "--resume", out, "--precision", "bfloat16")
    assert refused.exit_code == 2, refused.output
    text = " ".join(refused.output.split())
    assert "autocast: trained with float32 (no autocast), here bfloat16 autocast" in text
    assert "run with --precision float32" in text
    assert (out / "summary.json").read_text() == before  # refused before the folder was touched
    resumed = invoke("train", "--resume", out, "--precision", "float32")
    assert resumed.exit_code == 0, resumed.output
    assert folder_numbers(out)[1:] == folder_numbers(tmp_path / "reference")[1:]  # rows and step losses: exact


@pytest.mark.parametrize("precision, words", [("bfloat16", "cpu, bf16 autocast, 1 thread"),
                                              ("float32", "cpu, float32, 1 thread")])
def test_the_train_table_says_how_the_run_was_computed(tmp_path, precision, words):
    """CPU only. The table that ends `rethinkgen train` names the run's numerics, so a bf16 and a float32 run
    (otherwise alike in the table) can be told apart on the terminal, as `sweep plan` names them."""
    done = invoke("train", *TINY, "--epochs", "1", "--precision", precision, "--out", tmp_path / precision)
    assert done.exit_code == 0, done.output
    row = [line for line in done.output.splitlines() if "computed as" in line]
    assert len(row) == 1 and words in row[0], done.output
