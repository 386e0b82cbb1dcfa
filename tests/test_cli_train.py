"""`rethinkgen train` never loses a run: the output folder is checked before any work, the files follow
the epochs, Ctrl-C / SIGTERM / an error leave a resumable folder, and `--resume` ends with the numbers
of an uninterrupted run (CPU, one thread: bit for bit)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rethinkgen import cli
from rethinkgen.train import loop
from rethinkgen.train.config import TrainConfig
from rethinkgen.train.run_dir import RunDir, RunDirWriter

# A tiny MNIST-1D run on the CPU with one thread: the numbers are bit-reproducible.
TINY = ["--data", "mnist1d", "--n-train", "512", "--n-test", "256", "--corruption", "random_labels",
        "--lr", "0.01", "--device", "cpu", "--threads", "1"]


def invoke(*args: str):
    return CliRunner().invoke(cli.app, list(map(str, args)))


def numbers(folder: Path) -> tuple[dict, list, list]:
    """(summary without times, metrics rows without times, step losses) of a run folder."""
    summary = json.loads((folder / "summary.json").read_text())
    drop = ("wall_time_s", "hardware")
    summary = {k: v for k, v in summary.items() if k not in drop}
    with open(folder / "metrics.csv", newline="") as f:
        rows = [{k: v for k, v in r.items() if k != "wall_time_s"} for r in csv.DictReader(f)]
    with open(folder / "step_losses.csv", newline="") as f:
        losses = list(csv.reader(f))
    return summary, rows, losses


# ------------------------------------------------------------------------------ the output folder
def test_out_that_is_a_file_fails_before_any_training(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("training started"))
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    result = invoke("train", *TINY, "--epochs", "3", "--out", target)
    assert result.exit_code == 2, result.output
    assert "is a file" in result.output and "--out" in result.output
    assert target.read_text() == "keep me"
    result = invoke("train", *TINY, "--epochs", "3", "--out", target / "sub")
    assert result.exit_code == 2 and "is a file" in result.output


def test_read_only_out_fails_before_any_training(readonly_dir, monkeypatch):
    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("training started"))
    for out in (readonly_dir, readonly_dir / "run"):
        result = invoke("train", *TINY, "--epochs", "3", "--out", out)
        assert result.exit_code == 2, result.output
        assert "--out" in result.output and ("not writable" in result.output or "cannot create" in result.output)


def test_missing_dataset_files_fail_before_the_run_folder_exists(tmp_path, monkeypatch):
    """A dataset whose files are not there is bad input, not a failed run: the error names where it looked and
    the fetch command, and no folder is left behind with a `--resume` hint that cannot help."""
    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("training started"))
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("train", "--data", "cifar10", "--data-dir", empty, "--device", "cpu", "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "rethinkgen data fetch cifar10" in text and str(empty) in text and "--resume" not in text
    assert not (tmp_path / "run").exists()


def test_resume_without_the_datasets_files_leaves_the_folder_as_it_was(tmp_path):
    """An interrupted CIFAR-10-format run (20 images per batch, CPU, one thread) whose data folder is gone:
    --resume refuses with the fetch command and leaves summary.json, metrics.csv and the checkpoint untouched."""
    import shutil

    import data_files

    data = tmp_path / "data"
    data_files.write_cifar(data, rows=20)
    out = tmp_path / "run"
    result = invoke("train", "--data", "cifar10", "--data-dir", data, "--data-option", "strict=false", "--epochs", "3",
                    "--stop-after", "1", "--device", "cpu", "--threads", "1", "--quiet", "--out", out)
    assert result.exit_code == 0, result.output
    before = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    assert json.loads(before["summary.json"])["status"] == "interrupted" and "checkpoint.pt" in before
    shutil.rmtree(data)
    result = invoke("train", "--resume", out)
    assert result.exit_code == 2, result.output
    assert "rethinkgen data fetch cifar10" in " ".join(result.output.split())
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == before


def test_files_follow_the_epochs(tmp_path):
    """With no throttling, metrics.csv and step_losses.csv hold every finished epoch when the next starts."""
    config = loop.resolve_config(TrainConfig(data="mnist1d", n_train=512, n_test=256, epochs=4, device="cpu",
                                                   log_every=1))
    folder = RunDir(tmp_path / "run")
    folder.prepare("key")
    writer = RunDirWriter(folder, config, csv_every_s=0.0, checkpoint_every_s=0.0)
    seen = []

    class Check:
        def on_epoch_end(self, row, step_losses, trainer):
            with open(folder.path / "metrics.csv", newline="") as f:
                epochs = [int(r["epoch"]) for r in csv.DictReader(f)]
            with open(folder.path / "step_losses.csv", newline="") as f:
                logged = [int(r["step"]) for r in csv.DictReader(f)]
            assert logged == [int(s) for s, _ in trainer.history.step_losses]  # this epoch's steps included
            assert logged == list(range(1, row["step"] + 1))  # every step of the finished epochs
            seen.append(epochs)
            assert json.loads((folder.path / "summary.json").read_text())["status"] == "running"
            assert folder.checkpoint_path.exists()

    writer.start()
    summary = loop.train(config, callbacks=[writer, Check()])
    writer.finish(summary)
    assert seen == [list(range(e + 1)) for e in range(5)]
    assert json.loads((folder.path / "summary.json").read_text())["status"] == "max_epochs"
    assert not folder.checkpoint_path.exists()  # finished: no checkpoint left behind


def test_the_last_line_names_the_files_the_run_folder_holds(tmp_path):
    """The closing `wrote ...` line lists what is there: a run on streamed data (a 4-class ImageNet look-alike,
    CPU, no DataLoader workers) also has its drawn labels, labels.npy; an in-memory run has none."""
    import imagenet_files

    tree = imagenet_files.plain_tree(tmp_path / "tree", n_train=2, n_val=1)
    result = invoke("train", "--data", "imagenet", "--data-dir", tree, "--model", "mlp_1x512", "--crop", "16",
                    "--epochs", "1", "--batch-size", "4", "--corruption", "random_labels", "--device", "cpu",
                    "--workers", "0", "--threads", "1", "--out", tmp_path / "streamed")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "streamed" / "labels.npy").is_file()
    assert "summary.json, metrics.csv, step_losses.csv and labels.npy" in " ".join(result.output.split())
    result = invoke("train", *TINY, "--epochs", "1", "--out", tmp_path / "memory")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "memory" / "labels.npy").exists()
    assert "summary.json, metrics.csv and step_losses.csv" in " ".join(result.output.split())


# ----------------------------------------------------------------------- interrupt, fail, resume
def epochs_written(folder: Path) -> int:
    try:
        with open(folder / "metrics.csv", newline="") as f:
            return max(int(r["epoch"]) for r in csv.DictReader(f))
    except (FileNotFoundError, ValueError):
        return -1


def interrupted_after_epoch_2(tmp_path: Path, args: list, monkeypatch) -> Path:
    """Train ``args`` into tmp_path/reference, then again into tmp_path/run with a Ctrl-C in epoch 3 (exit
    130); returns the interrupted run's folder, the trainer restored."""
    assert invoke("train", *args, "--out", tmp_path / "reference").exit_code == 0
    original = loop.Trainer.train_epoch

    def interrupted_in_epoch_3(self):
        if self.history.epoch == 2:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(loop.Trainer, "train_epoch", interrupted_in_epoch_3)
    out = tmp_path / "run"
    assert invoke("train", *args, "--out", out).exit_code == 130
    monkeypatch.setattr(loop.Trainer, "train_epoch", original)
    return out


def test_sigterm_mid_run_then_resume_ends_with_the_uninterrupted_numbers(tmp_path):
    # 4,000 samples x 150 epochs: about 7 s of training here, long enough to be stopped in the middle.
    args = [*TINY, "--n-train", "4000", "--epochs", "150"]
    reference = invoke("train", *args, "--out", tmp_path / "reference")
    assert reference.exit_code == 0, reference.output

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rethinkgen", "train", *args, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while epochs_written(out) < 1:  # epoch 0 is written at once, later epochs 2 s later
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run ended before the test could stop it:\n{proc.communicate()[0]}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    stopped = json.loads((out / "summary.json").read_text())
    assert stopped["status"] == "interrupted", stopped
    assert 0 < stopped["epochs"] < 150, "the signal did not land mid-run"
    assert (out / "checkpoint.pt").exists()
    assert "--resume" in output
    _, rows, _ = numbers(out)
    assert [int(r["epoch"]) for r in rows] == list(range(stopped["epochs"] + 1))

    resumed = invoke("train", "--resume", out)
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming after epoch {stopped['epochs']}" in resumed.output
    assert numbers(out) == numbers(tmp_path / "reference")
    assert not (out / "checkpoint.pt").exists()


def test_an_error_mid_run_is_saved_as_failed_and_resumes(tmp_path, monkeypatch):
    args = [*TINY, "--epochs", "6"]
    assert invoke("train", *args, "--out", tmp_path / "reference").exit_code == 0
    original = loop.Trainer.train_epoch

    def breaks_in_epoch_4(self):
        if self.history.epoch == 3:
            raise RuntimeError("simulated device failure")
        return original(self)

    monkeypatch.setattr(loop.Trainer, "train_epoch", breaks_in_epoch_4)
    out = tmp_path / "run"
    result = invoke("train", *args, "--out", out)
    assert result.exit_code == 1
    assert isinstance(result.exception, RuntimeError)
    failed = json.loads((out / "summary.json").read_text())
    assert failed["status"] == "failed" and failed["epochs"] == 3
    assert "RuntimeError: simulated device failure" in failed["error"]
    assert (out / "checkpoint.pt").exists()

    # Without --resume the folder is not silently started over ...
    again = invoke("train", *args, "--out", out)
    assert again.exit_code == 2 and "--resume" in again.output
    # ... and --resume continues from epoch 3 to the uninterrupted numbers.
    monkeypatch.setattr(loop.Trainer, "train_epoch", original)
    resumed = invoke("train", "--resume", out)
    assert resumed.exit_code == 0, resumed.output
    assert "resuming after epoch 3" in resumed.output  # continued, not started over
    assert numbers(out) == numbers(tmp_path / "reference")


def test_resume_keeps_the_saved_config(tmp_path):
    result = invoke("train", "--resume", tmp_path / "run", "--lr", "0.5")
    assert result.exit_code == 2 and "--lr" in result.output and "config saved" in result.output
    result = invoke("train", "--resume", tmp_path / "nothing-here")
    assert result.exit_code == 2 and "no rethinkgen run there" in result.output


def test_finished_run_of_another_config_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    assert invoke("train", *TINY, "--epochs", "1", "--out", out).exit_code == 0
    before = (out / "summary.json").read_text()
    result = invoke("train", *TINY, "--epochs", "2", "--out", out)
    assert result.exit_code == 2 and "another config" in result.output and "--overwrite" in result.output
    assert (out / "summary.json").read_text() == before
    assert invoke("train", *TINY, "--epochs", "1", "--out", out).exit_code == 0  # same config: rerun
    assert invoke("train", *TINY, "--epochs", "2", "--out", out, "--overwrite").exit_code == 0
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2


def test_progress_lines_when_not_on_a_terminal(tmp_path):
    result = invoke("train", *TINY, "--epochs", "3", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("epoch ")]
    assert lines[0].startswith("epoch 0/3 · step 0 · train")
    assert lines[-1].startswith("epoch 3/3") and lines[-1].endswith("max_epochs")
    quiet = invoke("train", *TINY, "--epochs", "3", "--out", tmp_path / "run", "--quiet")
    assert not [line for line in quiet.output.splitlines() if line.startswith("epoch ")]


def test_threads_are_validated_and_restored(tmp_path):
    before = torch.get_num_threads()
    result = invoke("train", *TINY[:-2], "--threads", "0", "--epochs", "1", "--out", tmp_path / "run")
    assert result.exit_code == 2 and "--threads must be >= 1" in result.output
    assert invoke("train", *TINY, "--epochs", "1", "--out", tmp_path / "run").exit_code == 0
    assert torch.get_num_threads() == before
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["threads"] == 1


def test_resume_with_other_threads_is_refused_before_the_folder_is_touched(tmp_path, monkeypatch):
    """A resume whose numerics differ (here the CPU thread count) is refused with the command-line fix,
    and leaves the run as it was: still interrupted, still recorded with its own thread count, so a
    plain --resume afterwards continues it to the uninterrupted numbers (CPU, bit for bit)."""
    args = [*TINY, "--epochs", "5"]
    out = interrupted_after_epoch_2(tmp_path, args, monkeypatch)
    before = (out / "summary.json").read_text()
    assert json.loads(before)["status"] == "interrupted" and json.loads(before)["threads"] == 1
    assert json.loads(before)["epochs"] == 2 and (out / "checkpoint.pt").exists()

    refused = invoke("train", "--resume", out, "--threads", "2")
    assert refused.exit_code == 2, refused.output
    assert "threads: trained with 1 thread, here 2 threads" in refused.output
    assert "--threads 1" in refused.output and "torch.set_num_threads" not in refused.output
    assert "failed" not in refused.output
    assert (out / "summary.json").read_text() == before  # not marked failed, threads not rewritten

    resumed = invoke("train", "--resume", out)
    assert resumed.exit_code == 0, resumed.output
    assert "resuming after epoch 2" in resumed.output  # continued, not started over
    assert numbers(out) == numbers(tmp_path / "reference")


def test_out_on_a_read_only_file_system_names_that_not_chmod(tmp_path, monkeypatch):
    """A read-only mount (or a full disk) is not fixed by chmod: the message says what is (no root or
    mount needed: the probe file's creation fails as it would there)."""
    import errno

    import rethinkgen.files as files

    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("training started"))
    for code, words in ((errno.EROFS, "read-only file system, which no chmod changes"),
                        (errno.ENOSPC, "the disk or quota is full")):
        def refuse(*args, code=code, **kwargs):
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
        result = invoke("train", *TINY, "--epochs", "1", "--out", tmp_path / "run")
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and words in text and "chmod u+w" not in text, result.output


def test_out_that_is_a_dangling_symlink_names_its_target(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("training started"))
    link = tmp_path / "latest"
    link.symlink_to(tmp_path / "gone")
    result = invoke("train", *TINY, "--epochs", "1", "--out", link)
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and f"symbolic link to {tmp_path / 'gone'}, which does not exist" in text


def test_a_diverged_run_prints_no_accuracy_as_a_result(tmp_path):
    """lr 1000 diverges in epoch 2; the outputs are NaN and their argmax is class 0 (12.4% of the training
    labels), which the summary table used to print as the run's train accuracy (CPU, one thread)."""
    out = tmp_path / "run"
    result = invoke("train", *TINY, "--n-train", "500", "--lr", "1000", "--epochs", "5", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["train_acc"] is None and summary["test_acc"] is None
    with open(out / "metrics.csv", newline="") as f:
        last = list(csv.DictReader(f))[-1]
    assert last["train_eval_loss"] == "nan" and last["train_acc"] == "" and last["test_acc"] == "", last
    rows = [line for line in result.output.splitlines() if "accuracy" in line]
    assert len(rows) == 2 and all("– (diverged)" in r and "%" not in r for r in rows), rows
    assert "its accuracies are not results" in " ".join(result.output.split())
    assert "--lr" in result.output


def test_sweep_log_line_of_a_diverged_run_has_no_accuracies():
    import io

    from rich.console import Console

    from rethinkgen.sweep.progress import SweepDisplay

    buffer = io.StringIO()
    display = SweepDisplay(console=Console(file=buffer, width=200), quiet=False)
    display.run_finished("k" * 64, "huge_lr/level=0", {"status": "diverged", "epochs": 2, "train_acc": 0.124,
                                                       "test_acc": 0.102})
    text = buffer.getvalue()
    assert "diverged" in text and "by epoch 2" in text and "%" not in text, text


def test_resume_from_an_unreadable_checkpoint_says_so_and_restarts(tmp_path, monkeypatch):
    """A truncated checkpoint (a full disk, a copy cut short) is detected; the resume says it could not
    be read — not "no checkpoint was saved" — and training from epoch 0 gives the uninterrupted numbers
    (CPU, one thread)."""
    args = [*TINY, "--epochs", "4"]
    out = interrupted_after_epoch_2(tmp_path, args, monkeypatch)
    blob = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(blob[: len(blob) // 2])
    resumed = invoke("train", "--resume", out)
    text = " ".join(resumed.output.split())
    assert resumed.exit_code == 0, resumed.output
    assert "truncated" in text and "a restart from scratch" in text and "previous checkpoint" not in text
    assert "its checkpoint could not be read; starting the run again from epoch 0" in text
    assert "stopped before its first epoch" not in text
    assert numbers(out) == numbers(tmp_path / "reference")


def test_a_folder_another_process_trains_into_is_refused(tmp_path, monkeypatch):
    """Two `rethinkgen train` into one folder (a job started twice) used to run side by side and leave the
    files of either; the second is now refused, naming the holder, before any work — for a new run,
    --overwrite and --resume alike. The kernel drops the lock when the holder ends."""
    out = tmp_path / "run"
    out.mkdir()
    holder = RunDir(out)
    holder.lock()  # stands for another process: flock locks of two open files conflict in one process too
    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("training started"))
    for extra in ([], ["--overwrite"]):
        result = invoke("train", *TINY, "--epochs", "1", "--out", out, *extra)
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and f"is in use: PID {os.getpid()}" in text, result.output
    (out / "summary.json").write_text(json.dumps({"status": "interrupted", "config": {"data": "mnist1d"}}))
    result = invoke("train", "--resume", out)
    assert result.exit_code == 2 and "is in use" in result.output, result.output
    monkeypatch.undo()
    holder.unlock()
    assert invoke("train", *TINY, "--epochs", "1", "--out", out, "--overwrite").exit_code == 0
    again = invoke("train", *TINY, "--epochs", "1", "--out", out)  # the lock was released at the end
    assert again.exit_code == 0, again.output
