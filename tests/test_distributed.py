"""Runs on several processes: DistributedDataParallel under torchrun (2 CPU processes, gloo), labels identical on
every rank, resume of a 2-process run bit for bit, the spawned launcher, and where Ray places such a run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import imagenet_files as files
import rethinkgen
from rethinkgen.data.sources.imagenet import index
from rethinkgen.data.stream.labels import draw_labels, labels_sha256, load_labels
from rethinkgen.errors import ConfigError
from rethinkgen.train.config import TrainConfig, run_key
from rethinkgen.train.resolve import resolve_config

SRC = str(Path(rethinkgen.__file__).resolve().parents[1])
SCRIPT = str(Path(__file__).with_name("distributed_script.py"))
# the run of distributed_script.py, as command-line options
CLI = ["--data", "imagenet", "--model", "mlp_1x512", "--crop", "16", "--epochs", "3", "--batch-size", "8", "--lr",
       "0.05", "--corruption", "random_labels", "--device", "cpu", "--workers", "2", "--augment", "--flip", "--seed",
       "5", "--quiet", "--json"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def torchrun(tmp_path_factory):
    """distributed_script.py on 2 processes; then the CLI on 2 processes (`--nproc-per-node 2`): the same run
    stopped after its first epoch, and `--resume` of it."""
    tree = files.plain_tree(tmp_path_factory.mktemp("tree"))
    out = tmp_path_factory.mktemp("out")
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", SCRIPT,
              str(tree), str(out)]
    done = subprocess.run(launch, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    cli = [sys.executable, "-m", "rethinkgen", "train", "--nproc-per-node", "2"]
    stop = subprocess.run([*cli, *CLI, "--data-dir", str(tree), "--out", str(out / "stopped"), "--stop-after", "1"],
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert stop.returncode == 0, stop.stderr[-3000:]
    again = subprocess.run([*cli, "--resume", str(out / "stopped"), "--stop-after", "1", "--quiet"], env=_env(),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    # without --nproc-per-node: on the run's own 2 processes (it crashed at its first epoch's end)
    resumed = subprocess.run([sys.executable, "-m", "rethinkgen", "train", "--resume", str(out / "stopped"), "--json"],
                             env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return tree, out, stop, resumed


def test_two_ranks_and_their_workers_deliver_the_runs_labels_in_every_epoch(torchrun):
    tree, out, _, _ = torchrun
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    labels = load_labels(out / "straight" / "labels.npy")
    assert np.array_equal(labels, draw_labels(index(tree).train.targets, 4, "random_labels", None, 5).labels)
    assert {r["labels_sha256"] for r in ranks} == {labels_sha256(labels)}  # the same array on both ranks
    for epoch in (1, 2):
        shares = [{i: y for e, i, y in r["seen"] if e == epoch} for r in ranks]
        assert not set(shares[0]) & set(shares[1])  # DistributedSampler: disjoint shares (24 = 2 x 12)
        both = {**shares[0], **shares[1]}
        assert both == dict(enumerate(labels.tolist()))  # every image once, with its drawn label
    assert (out / "stopped" / "labels.npy").read_bytes() == (out / "straight" / "labels.npy").read_bytes()


def test_a_two_process_run_resumed_from_its_checkpoint_matches_the_straight_run_bit_for_bit(torchrun):
    _, out, stop, resumed = torchrun
    straight = json.loads((out / "straight.json").read_text())
    assert "stopped after epoch 1 (--stop-after)" in stop.stderr
    assert "resuming after epoch 2" in resumed.stderr
    rows = list(csv.DictReader((out / "stopped" / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    for ours, ref in zip(rows, straight["metrics"], strict=True):
        for key in ("train_loss", "train_eval_loss", "train_acc", "test_loss", "test_acc", "samples_seen", "step"):
            value = None if ours[key] == "" else float(ours[key])
            assert value == ref[key], (key, ref["epoch"])  # CPU, gloo: exactly equal
    summary = json.loads(resumed.stdout)
    assert summary["numerics"]["world_size"] == 2 and summary["status"] == "max_epochs"
    refused = subprocess.run([sys.executable, "-m", "rethinkgen", "train", "--resume", str(out / "stopped"),
                              "--nproc-per-node", "3"], env=_env(), capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "trained on 2 process(es); resume it with --nproc-per-node 2" in refused.stderr
    assert "torch.distributed" not in refused.stderr  # refused before torchrun started
    assert summary["labels_sha256"] == labels_sha256(load_labels(out / "stopped" / "labels.npy"))


def test_spawned_ranks_train_like_one_process_for_a_model_without_batchnorm(tmp_path):
    """world_size=2 outside torchrun starts 2 local processes (a sweep's worker); for an MLP the 2 x 4 images of
    each step are the 8 a single process takes (DistributedSampler interleaves one permutation), so the
    numbers agree with the single-process run within float tolerance (gradients summed in another order)."""
    from rethinkgen.train.loop import train

    tree = files.plain_tree(tmp_path / "tree")
    base = dict(data="imagenet", data_dir=str(tree), model="mlp_1x512", crop=16, epochs=2, batch_size=8, lr=0.05,
                corruption="random_labels", device="cpu", workers=0, augment=True, flip=True, seed=2)
    epochs = []

    class Epochs:  # sees what a callback sees of a trainer (RunDirWriter reads summary(), history.status)
        def on_epoch_end(self, row, logged, state):
            epochs.append((row["epoch"], state.checkpoint()["epoch"], state.history.finished))
            summary = state.summary()
            assert summary["epochs"] == row["epoch"] and summary["metrics"][-1] == row
            assert state.history.status == summary["status"] == (None if row["epoch"] < 2 else "max_epochs")
            assert state.numerics.world_size == 2  # what a sweep records for the run while it trains

    two = train(**base, world_size=2, callbacks=[Epochs()], run_dir=str(tmp_path / "two"))
    one = train(**base)
    assert epochs == [(0, 0, False), (1, 1, False), (2, 2, True)]  # rank 0's reports, replayed here
    assert two["numerics"]["world_size"] == 2 and two["labels_sha256"] == one["labels_sha256"]
    assert (tmp_path / "two" / "labels.npy").is_file()
    for a, b in zip(two["metrics"], one["metrics"], strict=True):
        assert a["train_eval_loss"] == pytest.approx(b["train_eval_loss"], rel=1e-5)
        assert a["test_acc"] == b["test_acc"] and a["samples_seen"] == b["samples_seen"]


def test_two_ranks_evaluate_the_model_rank_0_saves_batchnorm_statistics_included(tmp_path):
    """Each DDP rank updates BatchNorm's running statistics from its own share of the last batch, so rank 1
    evaluated its shard with other statistics than rank 0 saves: the rows were not those of the saved model
    (train accuracy 29.2% in the rows, 25.0% for the checkpoint's weights, on this tree). CPU; accuracies
    exact, losses to 1e-6 (sums in another order)."""
    from rethinkgen.train.loop import train
    from rethinkgen.train.streaming.distributed import DistContext
    from rethinkgen.train.streaming.trainer import StreamTrainer, checkpoint_labels

    tree = files.plain_tree(tmp_path / "tree")
    base = dict(data="imagenet", data_dir=str(tree), model="inception_small", crop=16, epochs=2, batch_size=8,
                lr=0.05, corruption="random_labels", device="cpu", workers=0, seed=2)
    last = {}

    class Last:
        def on_epoch_end(self, row, logged, state):
            last.update(row=row, ckpt=state.checkpoint())

    train(**base, world_size=2, callbacks=[Last()])
    one = StreamTrainer(resolve_config(TrainConfig(**base)), DistContext(), labels=checkpoint_labels(last["ckpt"]))
    one.restore(last["ckpt"])  # rank 0's weights and BatchNorm statistics, evaluated by one process
    train_counts, test_counts = one._counts("train"), one._counts("test")
    row = last["row"]
    assert (row["train_acc"], row["test_acc"]) == (train_counts["acc"], test_counts["acc"])
    assert row["train_eval_loss"] == pytest.approx(train_counts["loss"], rel=1e-6)
    assert row["test_loss"] == pytest.approx(test_counts["loss"], rel=1e-6)


def test_sigterm_to_the_nproc_per_node_launcher_stops_the_ranks_and_saves_the_run(tmp_path):
    """`rethinkgen train --nproc-per-node 2` killed with SIGTERM (a batch system's stop, `kill`) used to die
    alone: torchrun and both ranks trained on, orphaned, and the folder stayed "running". Now the signal
    reaches the ranks through torchrun and rank 0 saves the run as interrupted. CPU, gloo."""
    import signal
    import time

    tree = files.plain_tree(tmp_path / "tree")
    out = tmp_path / "run"
    options = [o for o in CLI if o not in ("--json",)]
    options[options.index("--epochs") + 1] = "300"  # far more than the test waits for
    options[options.index("--lr") + 1] = "1e-7"  # random labels are not fitted (no "converged" end)
    options[options.index("--workers") + 1] = "0"
    with (tmp_path / "err.txt").open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "rethinkgen", "train", "--nproc-per-node", "2", *options,
                                 "--data-dir", str(tree), "--out", str(out)], env=_env(), stdout=err, stderr=err,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not ((out / "metrics.csv").is_file() and len((out / "metrics.csv").read_text().splitlines()) >= 3):
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "err.txt").read_text()[-3000:]
                time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=120)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever the launcher left in its session
            except ProcessLookupError:
                pass
    log = (tmp_path / "err.txt").read_text()
    assert code == 130, log[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and (out / "checkpoint.pt").is_file()
    assert "interrupted after epoch" in log
    size = (out / "metrics.csv").stat().st_size
    time.sleep(3)
    assert (out / "metrics.csv").stat().st_size == size  # no rank trains on


def test_world_size_is_checked_before_any_work(tmp_path):
    tree = files.plain_tree(tmp_path / "tree", n_train=1, n_val=1)
    with pytest.raises(ConfigError, match="streamed from disk"):
        resolve_config(TrainConfig(data="mnist1d", world_size=2))
    with pytest.raises(ConfigError, match="multiple of it"):
        resolve_config(TrainConfig(data="imagenet", world_size=3, batch_size=8))
    base = resolve_config(TrainConfig(data="imagenet", data_dir=str(tree)))
    assert run_key(base) == run_key(base.replace(world_size=4, workers=8))  # the experiment is the same ...
    from rethinkgen.train.numerics import plan_numerics

    assert plan_numerics(base.replace(world_size=4), "cpu", "image").world_size == 4  # ... its numerics are not
    from rethinkgen.train.streaming.distributed import context

    if "RANK" not in os.environ:
        import torch

        with pytest.raises(ConfigError, match="torchrun --nproc-per-node 2"):
            context(2, torch.device("cpu"))


# ------------------------------------------------------------------------------------------- Ray placement
class FakeRay:
    """Records the options of every task submitted; the tasks never run (their results raise)."""

    def __init__(self, resources):
        self.resources, self.submitted = resources, []

    def is_initialized(self):
        return True

    def cluster_resources(self):
        return self.resources

    def remote(self, target=None, **_):
        if target is None:  # ray.remote(num_cpus=0)(cls)
            return self.remote
        ray = self

        class Handle:
            def options(self, **options):
                ray.submitted.append(options)
                return self

            def remote(self, *args):
                if isinstance(target, type):  # the event sink actor
                    return type("Sink", (), {"take": type("M", (), {"remote": staticmethod(lambda: "events")})()})()
                return ("ref", len(ray.submitted))

        return Handle()

    def wait(self, refs, num_returns, timeout):
        return list(refs), []

    def get(self, ref):
        if ref == "events":
            return []
        if isinstance(ref, list):
            return ref
        raise RuntimeError("fake task")

    def kill(self, *_):
        pass

    def cancel(self, *_, **__):
        pass


@pytest.mark.parametrize(("device", "resources", "gpus"), [("auto", {"CPU": 64.0, "GPU": 16.0}, 8.0),
                                                            ("cuda", {"CPU": 64.0, "GPU": 16.0}, 8.0),
                                                            ("cpu", {"CPU": 64.0, "GPU": 16.0}, 0.0),
                                                            ("auto", {"CPU": 64.0}, 0.0)])
def test_ray_asks_for_a_node_with_the_runs_gpus(monkeypatch, device, resources, gpus):
    from rethinkgen.sweep import ray_executor
    from rethinkgen.sweep.worker import Event, RunTask, WorkItem

    fake = FakeRay(resources)
    monkeypatch.setattr(ray_executor, "import_ray", lambda: fake)
    big = TrainConfig(data="imagenet", model="inception_v3", world_size=8, workers=3, device=device)
    small = TrainConfig(data="mnist1d", device=device)
    items = [WorkItem([RunTask(run_key(big), "table2", big)]), WorkItem([RunTask(run_key(small), "small", small)])]
    executor = ray_executor.RayExecutor()
    assert executor.task_options(items[0]) == {"num_cpus": 32.0, "num_gpus": gpus}  # 8 ranks x (1 + 3 workers)
    events: list[Event] = []
    executor.run(iter(items), events.append)
    small_gpus = 0.25 if "GPU" in resources else 0.0
    assert fake.submitted == [{"max_retries": 2, "num_cpus": 32.0, "num_gpus": gpus},
                              {"max_retries": 2, "num_cpus": 1, "num_gpus": small_gpus}]
    assert [e.kind for e in events] == ["failed", "failed"]  # the fake tasks raise: recorded, not lost


def test_streamed_runs_record_eager_steps_wherever_they_would_resume():
    from rethinkgen.train.numerics import plan_numerics
    from rethinkgen.train.resolve import step_mode

    config = resolve_config(TrainConfig(data="imagenet", model="inception_v3", dropout=0.0))
    assert step_mode(config, "cuda") == step_mode(config, "cpu") == "eager"  # never the captured in-memory step
    assert plan_numerics(config, "cuda", "image").graph is None  # what `--resume` compares with the checkpoint
