"""Sweep specs: expansion, precedence, deduplication, and every validation error (reported together)."""

from __future__ import annotations

import importlib

import pytest

from rethinkgen.errors import ConfigError
from rethinkgen.sweep.spec import load_spec, parse_spec
from rethinkgen.train.config import run_key
from rethinkgen.train.loop import resolve_config

BASE = """
name = "demo"
[defaults]
data = "mnist1d"
epochs = 3
n_train = 200
"""


def problems(text: str, source: str = "spec.toml") -> str:
    with pytest.raises(ConfigError) as info:
        parse_spec(text, source=source)
    return str(info.value)


def test_grid_is_a_cartesian_product_in_file_order():
    spec = parse_spec(BASE + """
[grid]
seed = [0, 1]
corruption = ["true_labels", "random_labels", "shuffled_pixels"]
""")
    assert spec.name == "demo" and len(spec) == 6
    names = [r.name for r in spec.runs]
    assert names[0] == "demo/seed=0,corruption=true_labels"
    assert names[-1] == "demo/seed=1,corruption=shuffled_pixels"
    for run in spec.runs:
        assert run.run_key == run_key(resolve_config(run.config))  # resolved, keyed like the trainer
        assert run.config.lr is not None and run.config.epochs == 3


def test_experiments_union_and_dedup_by_run_key():
    spec = parse_spec(BASE + """
[[experiment]]
name = "types"
grid = { corruption = ["true_labels", "random_labels"] }
[[experiment]]
name = "levels"
grid = { corruption = ["partial_labels"], level = [0.5] }
[[experiment]]
name = "again"
defaults = { corruption = "random_labels" }
""")
    assert [r.name for r in spec.runs] == ["types/corruption=true_labels", "types/corruption=random_labels",
                                          "levels/corruption=partial_labels,level=0.5"]
    random = spec.runs[1]
    assert random.experiments == ("types", "again")  # trained once, both memberships kept


def test_precedence_experiment_defaults_replace_top_grid_axes():
    spec = parse_spec(BASE + """
[grid]
model = ["mlp_1x512", "mlp_3x512"]
[[experiment]]
name = "one-model"
defaults = { model = "cnn1d", epochs = 2 }
[[experiment]]
name = "both"
grid = { lr = [0.05] }
""")
    models = [(r.experiment, r.config.model, r.config.epochs, r.config.lr) for r in spec.runs]
    assert models == [("one-model", "cnn1d", 2, 0.1), ("both", "mlp_1x512", 3, 0.05),
                      ("both", "mlp_3x512", 3, 0.05)]


def test_ints_for_float_fields_give_the_same_run_key():
    a = parse_spec(BASE + "[grid]\ncorruption = ['partial_labels']\nlevel = [1]\nlr = [1]\n")
    b = parse_spec(BASE + "[grid]\ncorruption = ['partial_labels']\nlevel = [1.0]\nlr = [1.0]\n")
    assert a.runs[0].run_key == b.runs[0].run_key
    assert isinstance(a.runs[0].config.level, float)


def test_overrides_and_relative_data_dir(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(BASE + 'data_dir = "data"\n')
    spec = load_spec(path)
    assert spec.runs[0].config.data_dir == str((tmp_path / "data").resolve())
    forced = load_spec(path, overrides={"device": "cpu", "data_dir": "/elsewhere"})
    assert forced.runs[0].config.device == "cpu" and forced.runs[0].config.data_dir == "/elsewhere"
    assert forced.runs[0].run_key == spec.runs[0].run_key  # device and data_dir are not part of the key
    with pytest.raises(ConfigError, match="--device: device must be one of"):
        load_spec(path, overrides={"device": "tpu"})


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_spec(bad)


def test_all_problems_are_reported_together_with_file_and_key_paths():
    text = problems("""
name = "x"
epochs = 3
[defaults]
data = "mnist1d"
lrr = 0.1
[grid]
seed = [0, -1]
[[experiment]]
name = "e0"
grid = { model = ["mlp_1x512", "mlp_9x9"] }
[[experiment]]
name = "e1"
grid = { model = ["alexnet_small"], corruption = ["random_pixels"], level = [0.5] }
""", source="study.toml")
    assert text.startswith("study.toml: 6 problems in the sweep spec:")
    for expected in (
        "epochs: unknown top-level key",  # a TrainConfig field outside [defaults]/[grid]
        "TrainConfig fields go under [defaults] or [grid]",
        "defaults.lrr: unknown config key 'lrr' (did you mean 'lr'?); valid keys:",
        "grid.seed[1]: seed must be >= 0, got -1",
        "experiment[0].grid.model[1]: unknown model 'mlp_9x9'",
        "valid models: alexnet_small, cnn1d, inception_small",
        "experiment[1].grid.model[0]: model 'alexnet_small' takes image inputs but dataset 'mnist1d' "
        "(defaults.data) is signal data; models for signal data: cnn1d, mlp_1x512, mlp_3x512",
        "experiment[1].grid.level[0]: level 0.5 given for corruption 'random_pixels'",
    ):
        assert expected in text, expected


@pytest.mark.parametrize(("snippet", "expected"), [
    ('[defaults]\ndata = "cifar100"', "defaults.data: unknown dataset 'cifar100' (did you mean 'cifar10'?); "
                                     "valid datasets: cifar10,"),
    ('[grid]\ncorruption = ["label_noise"]', "grid.corruption[0]: unknown corruption 'label_noise'; valid "
                                              "corruptions: gaussian, partial_labels"),
    ('[grid]\ncorruption = ["partial_labels"]\nlevel = [0.2, 1.5]', "grid.level[1]: level must be in [0, 1], "
                                                                     "got 1.5"),
    ('[grid]\ncorruption = ["partial_labels"]\nlevel = [-0.1]', "grid.level[0]: level must be in [0, 1]"),
    ('[grid]\ncorruption = ["gaussian"]\nlevel = [0.3]', "grid.level[0]: level 0.3 given for corruption "
                                                         "'gaussian' (grid.corruption[0]), which takes no level"),
    ('[grid]\ncorruption = ["random_labels"]\nlevel = [0.3]', "which takes no level (its level is 1)"),
    ('[grid]\ncorruption = ["partial_labels"]', "grid.corruption[0]: corruption 'partial_labels' needs a level"),
    ('[grid]\nmodel = ["inception_small"]', "grid.model[0]: model 'inception_small' takes image inputs but "
                                            "dataset 'mnist1d' (defaults.data) is signal data"),
    ('[grid]\naugment = [true]', "grid.augment[0]: augment = true needs image data but dataset 'mnist1d'"),
    ('[grid]\nflip = true', "grid.flip: flip = true needs image data"),
    ('[grid]\ncrop = [24]', "grid.crop[0]: crop = 24 needs image data"),
    ('[grid]\nepochs = [0]', "grid.epochs[0]: epochs must be > 0, got 0"),
    ('[grid]\nbatch_size = [-8]', "grid.batch_size[0]: batch_size must be > 0, got -8"),
    ('[grid]\nlr = [0.0]', "grid.lr[0]: lr must be > 0 and finite, got 0.0"),
    ('[grid]\nlr = ["0.1"]', "grid.lr[0]: lr must be a number, got '0.1' (str)"),
    ('[grid]\nepochs = [2.5]', "grid.epochs[0]: epochs must be an integer, got 2.5 (float)"),
    ('[grid]\naugment = [1]', "grid.augment[0]: augment must be a boolean (true/false), got 1 (int)"),
    ('[grid]\nmodel = [3]', "grid.model[0]: model must be a string, got 3 (int)"),
    ('[grid]\nseed = []', "grid.seed: an empty axis would make no runs"),
    ('[grid]\nmomentum = [1.0]', "grid.momentum[0]: momentum must be in [0, 1)"),
    ('[grid]\nstandardize = ["zca"]', "grid.standardize[0]: standardize must be one of per_image, per_feature, "
                                      "inception, none, got 'zca'"),
    ('[[experiment]]\nname = "a"\nmodel = "cnn1d"', "experiment[0].model: unknown experiment key; valid: name, "
                                                    "description, defaults, grid; put config fields in its"),
    ('[[experiment]]\nname = "a"\n[[experiment]]\nname = "a"', "experiment[1].name: experiment name 'a' is "
                                                              "used twice"),
    ('[defaults]\nmodle = "cnn1d"', "defaults.modle: unknown config key 'modle' (did you mean 'model'?)"),
])
def test_each_validation_error_names_file_key_and_allowed_values(snippet, expected):
    text = problems(_merge(snippet))
    assert text.startswith("spec.toml: ")
    assert expected in text


def _merge(snippet: str) -> str:
    """BASE with ``snippet`` appended; a snippet's [defaults] keys are merged into BASE's table."""
    if snippet.startswith("[defaults]\n"):
        lines = snippet.removeprefix("[defaults]\n").splitlines()
        keys = {line.split("=")[0].strip() for line in lines}
        base = "\n".join(line for line in BASE.splitlines() if line.split("=")[0].strip() not in keys)
        return base + "\n" + "\n".join(lines) + "\n"
    return BASE + snippet + "\n"


def test_resolve_errors_are_collected_per_run(monkeypatch):
    loop = importlib.import_module("rethinkgen.train.loop")

    real = loop.resolve_config

    def picky(config):
        if config.seed == 1:
            raise ConfigError("invalid config:\n  - something only the trainer knows")
        return real(config)

    monkeypatch.setattr(loop, "resolve_config", picky)
    text = problems(BASE + "[grid]\nseed = [0, 1, 2]\n")
    assert "1 problem" in text
    assert "run demo/seed=1: invalid config:   - something only the trainer knows" in text
