"""`rethinkgen data inspect` and `data fetch`, and data errors worded for the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from data_files import REAL_FASHION, write_cifar, write_image_tree
from rethinkgen import cli


@pytest.fixture
def wide(monkeypatch):
    monkeypatch.setattr(cli, "console", Console(width=200, force_terminal=False, color_system=None))
    monkeypatch.setattr(cli, "err_console", Console(width=200, stderr=True, force_terminal=False,
                                                    color_system=None))


def _invoke(*args: str):
    return CliRunner().invoke(cli.app, list(args))


def _nhw(tmp_path):
    g = np.random.default_rng(0)
    x = g.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    y = np.repeat([3, 7], 20)
    np.savez(tmp_path / "d.npz", x=x[:30], y=y[:30], x_test=x[30:], y_test=y[30:])
    return tmp_path / "d.npz"


def test_inspect_shows_layout_scaling_classes_and_what_corruptions_permute(tmp_path, wide):
    result = _invoke("data", "inspect", "npz", "--data-option", f"path={_nhw(tmp_path)}")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "image (N, 1, 28, 28), stored as NHW (30, 28, 28) uint8" in out
    assert "uint8 0..255 divided by 255 -> [0, 1]" in out
    assert "classes (K = 2)" in out and "0=3 (20/0)" in out and "1=7 (10/10)" in out and "3 -> 0, 7 -> 1" in out
    assert "one permutation of the 28x28 = 784 pixel positions" in out
    for name in ("true_labels", "partial_labels", "random_labels", "shuffled_pixels", "random_pixels", "gaussian"):
        assert name in out


def test_inspect_json_is_the_record_runs_carry(tmp_path, wide):
    result = _invoke("data", "inspect", "npz", "--data-option", f"path={_nhw(tmp_path)}", "--json",
                     "--n-train", "10")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output[result.output.index("{"):])
    assert info["layout_found"] == "NHW" and info["input_shape"] == [1, 28, 28] and info["n_train"] == 10
    assert info["class_mapping"] == {"3": 0, "7": 1} and info["subset"]["n_train_available"] == 30
    assert info["values_train"][0]["min"] >= 0 and info["values_train"][0]["max"] <= 1


def test_inspect_an_image_folder(tmp_path, wide):
    write_image_tree(tmp_path / "tree")
    result = _invoke("data", "inspect", "folder", "--data-dir", str(tmp_path), "--data-option",
                     f"path={tmp_path / 'tree'}", "--data-option", "size=12")
    assert result.exit_code == 0, result.output
    assert "0=cat (8/3)" in result.output and "1 RGBA (alpha dropped)" in result.output
    assert "12x12 = 144 pixel positions (the 3 channels of a pixel move together)" in result.output


@pytest.mark.parametrize("args, fix", [
    (["data", "inspect", "npz"], "--data-option path=FILE"),
    (["train", "--data", "npz", "--model", "mlp_1x512"], "--data-option path=FILE"),
    (["data", "inspect", "folder", "--data-option", "path=TREE"], "--data-option size=32"),
    (["train", "--data", "npz", "--data-option", "path=AMBIG"], "--data-option layout=NHW"),
])
def test_errors_name_the_command_line_option(tmp_path, wide, args, fix):
    write_image_tree(tmp_path / "tree")
    np.savez(tmp_path / "ambig.npz", x=np.zeros((4, 20, 30), np.float32), y=np.arange(4) % 2,
             x_test=np.zeros((2, 20, 30), np.float32), y_test=np.arange(2))
    args = [a.replace("TREE", str(tmp_path / "tree")).replace("AMBIG", str(tmp_path / "ambig.npz")) for a in args]
    result = _invoke(*args)
    assert result.exit_code == 2
    assert fix in result.output and "load_dataset(" not in result.output


def test_fetch_verifies_before_it_says_ready(tmp_path, wide):
    write_cifar(tmp_path, rows=4)
    result = _invoke("data", "fetch", "cifar10", "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "not the official files" in result.output and "--data-option strict=false" in result.output
    assert result.output.strip().endswith(f"ready in {tmp_path / 'cifar-10-batches-py'}")
    result = _invoke("data", "fetch", "npz", "--data-dir", str(tmp_path))
    assert result.exit_code == 0 and "nothing to fetch" in result.output and "ready" not in result.output


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason=f"real Fashion-MNIST not found at {REAL_FASHION}")
def test_fetch_fashion_mnist_finds_and_verifies_a_copy(wide):
    result = _invoke("data", "fetch", "fashion_mnist", "--data-dir", str(REAL_FASHION))
    assert result.exit_code == 0, result.output
    assert "match the official SHA-256 sums" in result.output and "ready in" in result.output
