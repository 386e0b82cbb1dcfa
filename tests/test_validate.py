"""One validator for `rethinkgen train`, the Python API and sweep specs (train.validate), options that are
not config fields (--threads, --jobs, kernel fit --reg), and the flag on a schedule that starves the lr."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

import rethinkgen
from rethinkgen import cli
from rethinkgen.errors import ConfigError
from rethinkgen.sweep.spec import parse_spec
from rethinkgen.train import loop
from rethinkgen.train.config import TrainConfig, run_key
from rethinkgen.train.resolve import resolve_config
from rethinkgen.train.schedule import schedule_warnings

# (field, CLI option, bad value as typed, as Python / TOML, expected words)
BAD = [
    ("epochs", "--epochs", "0", 0, "epochs must be > 0, got 0"),
    ("lr", "--lr", "inf", math.inf, "lr must be > 0 and finite, got inf"),
    ("lr", "--lr", "nan", math.nan, "lr must be > 0 and finite, got nan"),
    ("lr", "--lr", "-0.1", -0.1, "lr must be > 0 and finite, got -0.1"),
    ("weight_decay", "--weight-decay", "inf", math.inf, "weight_decay must be >= 0 and finite, got inf"),
    ("weight_decay", "--weight-decay", "-1e-4", -1e-4, "weight_decay must be >= 0 and finite"),
    ("batch_size", "--batch-size", "0", 0, "batch_size must be > 0, got 0"),
    ("momentum", "--momentum", "1.0", 1.0, "momentum must be in [0, 1), got 1.0"),
    ("dropout", "--dropout", "1", 1.0, "dropout must be in [0, 1), got 1.0"),
    ("target_train_acc", "--target-train-acc", "0", 0.0, "target_train_acc must be in (0, 1], got 0.0"),
    ("seed", "--seed", "-1", -1, "seed must be >= 0, got -1"),
    ("log_every", "--log-every", "0", 0, "log_every must be > 0, got 0"),
    ("lr_decay", "--lr-decay", "0", 0.0, "lr_decay must be in (0, 1], got 0.0"),
    ("n_train", "--n-train", "0", 0, "n_train must be > 0, got 0"),
    ("precision", "--precision", "fp16", "fp16",
     "precision must be one of float32, bfloat16 (unset: automatic), got 'fp16'"),
]


@pytest.fixture
def no_training(monkeypatch):
    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("training started"))


@pytest.mark.parametrize(("field", "option", "typed", "value", "words"), BAD)
def test_cli_api_and_specs_refuse_the_same_values_with_the_same_words(tmp_path, no_training, field, option,
                                                                      typed, value, words):
    result = CliRunner().invoke(cli.app, ["train", option, typed, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert words in " ".join(result.output.split()), result.output
    assert not (tmp_path / "run").exists()  # refused before the output folder was even made

    with pytest.raises(ConfigError, match="invalid config") as api:
        TrainConfig(**{field: value})  # what rethinkgen.train(**overrides) builds
    assert words in str(api.value)

    toml_value = {math.inf: "inf", -math.inf: "-inf"}.get(value, repr(value)) if isinstance(value, float) else value
    if isinstance(value, float) and math.isnan(value):
        toml_value = "nan"
    if isinstance(value, str):
        toml_value = json.dumps(value)  # a TOML basic string
    with pytest.raises(ConfigError) as spec:
        parse_spec(f"[defaults]\n{field} = {toml_value}\n", source="s.toml")
    assert f"defaults.{field}: {words}" in str(spec.value)


def test_the_python_api_refuses_before_loading_data():
    with pytest.raises(ConfigError, match="lr must be > 0 and finite, got inf"):
        rethinkgen.train(data="no-such-dataset", lr=math.inf)  # the value is refused before the name is looked up


def test_all_problems_are_reported_together():
    with pytest.raises(ConfigError) as info:
        TrainConfig(epochs=0, lr=math.inf, device="tpu")
    text = str(info.value)
    assert "epochs must be > 0" in text and "lr must be > 0 and finite" in text and "device must be one of" in text


def test_numbers_are_stored_as_their_fields_type():
    assert TrainConfig(lr=1).lr == 1.0 and isinstance(TrainConfig(lr=1).lr, float)
    assert run_key(resolve_config(TrainConfig(lr=1))) == run_key(resolve_config(TrainConfig(lr=1.0)))
    with pytest.raises(ConfigError, match="epochs must be an integer"):
        TrainConfig(epochs=2.5)
    with pytest.raises(ConfigError, match="augment must be a boolean"):
        TrainConfig(augment=1)


def test_threads_and_jobs_are_checked_before_work(tmp_path, no_training):
    runner = CliRunner()
    result = runner.invoke(cli.app, ["train", "--threads", "0", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--threads must be >= 1, got 0" in result.output
    spec = tmp_path / "s.toml"
    spec.write_text('[defaults]\ndata = "mnist1d"\nepochs = 1\n')
    for option in ("--threads", "--jobs"):
        result = runner.invoke(cli.app, ["sweep", "run", str(spec), "--store", str(tmp_path / "s.db"), option, "0"])
        assert result.exit_code == 2, result.output
        assert f"{option} must be >= 1, got 0" in result.output
    assert not (tmp_path / "s.db").exists()


def test_kernel_fit_refuses_a_negative_ridge_before_loading_data(monkeypatch):
    import rethinkgen.data.sources as sources

    monkeypatch.setattr(sources, "load_dataset", lambda *a, **k: pytest.fail("data was loaded"))
    result = CliRunner().invoke(cli.app, ["kernel", "fit", "--data", "mnist1d", "--reg", "-1"])
    assert result.exit_code == 2, result.output
    assert "--reg (the ridge λ) must be a finite number >= 0, got -1" in result.output


# ------------------------------------------------------------------------ a starved learning rate
def test_schedule_that_starves_the_lr_in_the_first_epoch_is_flagged():
    base = resolve_config(TrainConfig(data="mnist1d"))  # lr x0.95 per 50,000 samples
    assert schedule_warnings(base, 4000) == []
    assert schedule_warnings(base.replace(lr_decay_every=0), 4000) == []  # x0.95 once per epoch
    (warning,) = schedule_warnings(base.replace(lr_decay_every=1), 4000)
    assert "falls to 4e-89 of its start" in warning and "first epoch" in warning and "--lr-decay-every" in warning
    # the threshold: 1e-3 of the start. 0.5 ** 9 = 0.002 is kept, 0.5 ** 10 = 0.00098 is flagged
    one = base.replace(epochs=1)
    assert schedule_warnings(one.replace(lr_decay=0.5, lr_decay_every=400, batch_size=400), 4000) == []
    assert schedule_warnings(one.replace(lr_decay=0.5, lr_decay_every=360, batch_size=400), 4000) != []
    assert schedule_warnings(base.replace(lr_decay=1.0, lr_decay_every=1), 4000) == []


@pytest.mark.parametrize("change, n_train, epoch", [
    # --lr-decay-every taken for steps per epoch (390 steps of 128 on CIFAR-10): x0.95 every 390 samples
    # leaves 1.4e-3 after epoch 1 (not below 1e-3) and 2e-6 after epoch 2
    (dict(lr_decay_every=390, epochs=300), 50_000, 2),
    (dict(lr_decay=0.5, lr_decay_every=1000, epochs=20), 4000, 3),  # 0.5 ** 11 at epoch 3's last step
    (dict(lr_decay=0.1, lr_decay_every=0, epochs=20), 4000, 5),  # x0.1 per epoch: 1e-4 after epoch 5
    (dict(lr_decay_every=0, epochs=1360), 50_000, 136),  # x0.95 per epoch past a tenth of a long budget
])
def test_schedule_that_starves_the_lr_after_the_first_epoch_is_flagged(change, n_train, epoch):
    base = resolve_config(TrainConfig(data="mnist1d"))
    (warning,) = schedule_warnings(base.replace(**change), n_train)
    assert f"by the end of epoch {epoch} of {change['epochs']}" in warning


def test_the_papers_schedule_and_a_mild_one_are_not_flagged():
    base = resolve_config(TrainConfig(data="mnist1d"))
    # x0.95 per 50,000-sample epoch: below 1e-3 only after 135 epochs, past a tenth of 300 or 1,350
    assert schedule_warnings(base.replace(lr_decay_every=50_000, epochs=300), 50_000) == []
    assert schedule_warnings(base.replace(lr_decay_every=0, epochs=1350), 50_000) == []
    assert schedule_warnings(base.replace(lr_decay=0.5, lr_decay_every=0, epochs=20), 4000) == []  # 0.03 at 5


def test_train_prints_and_records_the_schedule_warning(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--n-train", "512", "--epochs", "1", "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(cli.app, [*args, "--lr-decay-every", "1"])
    assert result.exit_code == 0, result.output
    assert "warning: the learning rate falls to" in " ".join(result.output.split())
    (warning,) = json.loads((out / "summary.json").read_text())["warnings"]
    assert "first epoch" in warning
    result = CliRunner().invoke(cli.app, [*args, "--overwrite"])
    assert "warning" not in result.output
    assert json.loads((out / "summary.json").read_text())["warnings"] == []
