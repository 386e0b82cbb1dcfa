"""Benchmark: the GPU issue's numbers in one command (issue 10), at most 5 minutes on an H200.

Stages, each in its own process group under a time cap (on the cap the whole group is killed, sweep
and DataLoader workers included; a stage may use the time the stages before it left unused), each
writing its results into ``$OUT/gpu_bench.json`` (one key per stage, rewritten as each result comes: a
stage that runs out of time keeps what it measured; inside a stage ``inception_small`` and the group of
11, the issue's targets, are measured first) and the table into ``$OUT/gpu_bench.txt``:

- ``common``: samples/s of the common public loop (pluskid/fitting-random-labels' pattern, as
  ``benchmarks/common_loop.py``: PIL + torchvision transforms + ``DataLoader``, moved to the GPU with
  pinned memory, as ``../shared/gpu/bench.py`` measured it) with 1 and 8 workers;
- ``trainer``: rethinkgen's single-run ``Trainer`` (one epoch timed after a warm-up epoch; training,
  and the epoch with its evaluation of the whole training and test sets);
- ``fused``: ``train_group`` of 6 and of 11 label-corruption runs (the second epoch's wall time from an
  epoch-end callback, evaluation included; samples/s over all runs), with the group's peak reserved GPU
  memory (a captured step's graph pool is reserved, not allocated) next to the sweep's estimate
  (``rethinkgen.sweep.sizing``);
- ``figure1``: one 50,000-image epoch of every run of ``configs/paper/figure1.toml`` (23 runs,
  evaluation included) through ``rethinkgen sweep run`` (``--fuse auto``): the *grid epoch* read from
  the store (per model, the wall time of its runs' epoch 1 — training and evaluation, a fused run's
  being its group's — summed over the models, whose groups ran one after another), and the wall seconds
  of the command and of the sweep (these add process start, data loading and the epoch-0 evaluation);
  again with ``--workers-per-gpu 2`` when the time left allows;
- ``kernel``: ``rethinkgen kernel fit`` on all 60,000 MNIST images (paper §5; skipped with a message
  when the MNIST files are absent).

for ``mlp_1x512``, ``alexnet_small`` and ``inception_small`` on CIFAR-10-sized synthetic files in the
official pickle format (``_bench.fake_cifar10``). Ratios are printed against the common loop with 8
workers, next to the issue's targets. ``--smoke``: tiny sizes on the CPU, mlp_1x512 only (a test in
the default suite runs it end to end, so the script cannot rot; its numbers mean nothing).

    OUT=results python benchmarks/gpu.py                       # on the GPU machine
    python benchmarks/gpu.py --smoke --out /tmp/smoke          # anywhere, in about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

MODELS = ("mlp_1x512", "alexnet_small", "inception_small")  # the table's rows
# Measured in this order inside a stage: the targets first, so that a stage stopped at its cap has
# measured inception_small (and its group of 11) before the others.
PRIORITY = ("inception_small", "alexnet_small", "mlp_1x512")
LEVELS = {6: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0], 11: [i / 10 for i in range(11)]}
# Shares of the time budget per stage (they sum to 1). A stage may use its share plus whatever the stages
# before it left unused, less the shares kept for the stages after it (``cap``), so a fast stage gives its
# time to the next and a slow one cannot starve the last. Sized from ../shared/gpu/README.md's H200 numbers
# (seconds at the baseline speeds, process start and data loading included): common ~20, trainer
# ~30, fused ~80 (inception groups of 11 and 6 at ~40,000 samples/s), figure1 ~55-100 (one grid epoch plus
# its epoch-0 evaluation, 5-10 s of start and data loading per group), kernel ~10.
SHARES = {"common": 0.13, "trainer": 0.16, "fused": 0.31, "figure1": 0.32, "kernel": 0.08}
TARGETS = {"inception_single": 40_000, "inception_fused11": 150_000, "vs_common_w8": 4.0, "figure1_s": 6.0}


# ------------------------------------------------------------------------------ sizes and results
def sizes(smoke: bool) -> dict:
    """Samples and devices per mode: the issue's (50,000 + 10,000 images on CUDA) or a smoke run's."""
    if smoke:
        return dict(device="cpu", rows=256, n_train=512, n_test=128, fused_n=256, groups=(2, 3), workers=(1, 2),
                    batches=8, models=("mlp_1x512",), data_options={"strict": False})
    return dict(device="cuda", rows=10_000, n_train=50_000, n_test=10_000, fused_n=25_000, groups=(6, 11),
                workers=(1, 8), batches=100, models=MODELS, data_options=None)


def save(out: Path, stage: str, value: dict) -> None:
    """Merge ``value`` into ``out/gpu_bench.json`` under ``stage`` (atomically, as each result comes)."""
    path = out / "gpu_bench.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[stage] = {**data.get(stage, {}), **value}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


_CHILD: subprocess.Popen | None = None  # the stage process running now (killed with its group on SIGTERM)


def run_capped(command: list[str], cap: float, capture: bool = False) -> tuple[int | str, str, str]:
    """Run ``command`` in its own process group for at most ``cap`` seconds: (exit status or "timeout",
    stdout, stderr; both "" unless ``capture``). On the cap the *whole group* is killed — a sweep's worker
    processes and a DataLoader's workers too, which would otherwise go on using the GPU during the next
    stage."""
    global _CHILD
    pipe = subprocess.PIPE if capture else None
    _CHILD = proc = subprocess.Popen(command, stdout=pipe, stderr=pipe, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=max(cap, 1.0))
        return proc.returncode, out or "", err or ""
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:  # a process that left the group could hold the pipes open: do not wait for it
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            out, err = "", ""
        return "timeout", out or "", err or ""
    finally:
        _CHILD = None


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _on_sigterm(signum, frame) -> None:  # the session script's own cap: take the stage process group along
    if _CHILD is not None:
        _kill_group(_CHILD)
    raise SystemExit(128 + signum)


def ordered(models) -> list[str]:
    """``models`` in measuring order (:data:`PRIORITY`)."""
    return sorted(models, key=lambda m: PRIORITY.index(m) if m in PRIORITY else len(PRIORITY))


# ------------------------------------------------------------------------------ stage: common loop
def common_dataset(root: Path, n: int):
    """The public loop's dataset (``common_loop.CIFAR10Like``: PIL + CenterCrop(28), ToTensor, Normalize)
    over the first ``n`` training images; built once per stage (reading the pickles takes a second)."""
    from common_loop import CIFAR10Like
    from torchvision import transforms

    normalize = transforms.Normalize(mean=[x / 255.0 for x in [125.3, 123.0, 113.9]],
                                     std=[x / 255.0 for x in [63.0, 62.1, 66.7]])
    return CIFAR10Like(root, n, transforms.Compose([transforms.CenterCrop(28), transforms.ToTensor(), normalize]))


def common_rate(model_name: str, dataset, workers: int, device: str, batches: int) -> float:
    """Samples/s of the public loop on ``device``: the batches after 3 warm-up batches, at most ``batches``."""
    import torch
    import torch.nn.functional as F
    from common_loop import BATCH, accuracy

    from rethinkgen.models import create_model

    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                                         pin_memory=device == "cuda")
    torch.manual_seed(0)
    model = create_model(model_name, (3, 28, 28), 10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    seen, t0 = 0, None
    for i, (inputs, target) in enumerate(loader):
        if i == 3:
            sync(device)
            t0, seen = time.perf_counter(), 0
        if i == 3 + batches:
            break
        inputs, target = inputs.to(device, non_blocking=True), target.to(device, non_blocking=True)
        output = model(inputs)
        loss = F.cross_entropy(output, target)
        _ = float(accuracy(output.data, target)), loss.item()  # the loop's per-batch bookkeeping
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += inputs.size(0)
    sync(device)
    return seen / (time.perf_counter() - t0)


def stage_common(a: argparse.Namespace, s: dict, root: Path) -> None:
    dataset = common_dataset(root, min(s["n_train"], 25_000))
    for model in ordered(s["models"]):
        for workers in s["workers"]:
            try:
                rate = common_rate(model, dataset, workers, s["device"], s["batches"])
                save(a.out, "common", {f"{model}.w{workers}": round(rate)})
            except Exception as exc:  # noqa: BLE001 - a benchmark records what failed and goes on
                save(a.out, "common", {f"{model}.w{workers}": f"error: {exc!r}"[:400]})


# ------------------------------------------------------------------------------ stage: single trainer
def config(s: dict, root: Path, model: str, n_train: int, **changes):
    from rethinkgen.train.config import TrainConfig
    from rethinkgen.train.loop import resolve_config

    return resolve_config(TrainConfig(data="cifar10", data_dir=str(root), data_options=s["data_options"], model=model,
                                      n_train=n_train, n_test=s["n_test"], epochs=2, lr=0.01, device=s["device"],
                                      **changes))


def stage_trainer(a: argparse.Namespace, s: dict, root: Path) -> None:
    import torch

    from rethinkgen.train.loop import Trainer

    for model in ordered(s["models"]):
        try:
            c = config(s, root, model, s["n_train"])
            with torch.random.fork_rng(devices=[0] if s["device"] == "cuda" else []):
                trainer = Trainer(c, torch.device(s["device"]))
                trainer.train_epoch()  # warm-up: kernels chosen, compiled, caches filled
                sync(s["device"])
                t0 = time.perf_counter()
                trainer.train_epoch()
                sync(s["device"])
                train_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                trainer.evaluate_row(0.0)
                sync(s["device"])
                eval_s = time.perf_counter() - t0
            save(a.out, "trainer", {model: {"train_sps": round(s["n_train"] / train_s),
                                            "epoch_sps": round(s["n_train"] / (train_s + eval_s)),
                                            "train_s": round(train_s, 3), "eval_s": round(eval_s, 3),
                                            "numerics": trainer.numerics.describe()}})
            del trainer
        except Exception as exc:  # noqa: BLE001
            save(a.out, "trainer", {model: {"error": repr(exc)[:400]}})


# ------------------------------------------------------------------------------ stage: fused groups
class Stamp:
    """Epoch-end wall clock of one run of a group (the group's epochs end together)."""

    def __init__(self, device: str) -> None:
        self.device, self.t = device, []

    def on_epoch_end(self, row, step_losses, state) -> None:
        sync(self.device)
        self.t.append(time.perf_counter())


def stage_fused(a: argparse.Namespace, s: dict, root: Path) -> None:
    import torch

    from rethinkgen.sweep.sizing import run_memory
    from rethinkgen.train.fused import train_group

    n = s["fused_n"]
    for model in ordered(s["models"]):
        for k in sorted(s["groups"], reverse=True):  # the group of 11 (a target) first
            key = f"{model}.x{k}"
            try:
                levels = LEVELS.get(k) or [i / (k - 1) for i in range(k)]
                configs = [config(s, root, model, n, corruption="partial_labels", level=p) for p in levels]
                stamp = Stamp(s["device"])
                if s["device"] == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                summaries = train_group(configs, callbacks=[[stamp]] + [[] for _ in configs[1:]])
                total = time.perf_counter() - t0
                epoch_s = stamp.t[-1] - stamp.t[-2]  # epoch 2: training and evaluation of every run
                result = {"epoch_s": round(epoch_s, 3), "sps_all_runs": round(k * n / epoch_s),
                          "total_s": round(total, 1), "statuses": sorted({x["status"] for x in summaries}),
                          "estimate_gb": round(run_memory(configs[0]).group(k) / 1e9, 2)}
                if s["device"] == "cuda":  # reserved: a captured step's graph pool is reserved, not allocated
                    result["peak_gb"] = round(torch.cuda.max_memory_reserved() / 1e9, 2)
                    result["peak_allocated_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
                save(a.out, "fused", {key: result})
            except Exception as exc:  # noqa: BLE001
                save(a.out, "fused", {key: {"error": repr(exc)[:400]}})


# ------------------------------------------------------------------------------ stage: Figure 1 epoch
def figure1_spec(s: dict, folder: Path, smoke: bool) -> Path:
    """configs/paper/figure1.toml with one epoch per run (smoke: small subsets, MLPs on the CPU)."""
    text = (REPO / "configs" / "paper" / "figure1.toml").read_text()
    extra = "epochs = 1\n"
    if smoke:
        extra += (f'n_train = {s["n_train"]}\nn_test = {s["n_test"]}\ndevice = "cpu"\n'
                  'data_options = { strict = false }\n')
        text = text.replace('"inception_small"', '"mlp_1x512"').replace('"alexnet_small"', '"mlp_1x512"')
    text = text.replace("[defaults]\n", "[defaults]\n" + extra, 1)
    path = folder / "figure1_epoch.toml"
    path.write_text(text)
    return path


def grid_epoch(store: Path) -> dict:
    """What the store holds of a one-epoch sweep: runs per status and, per model, the wall time of its
    runs' epoch 1 (training and evaluation). The runs of one fused group record the same value (the
    group's time), a run trained alone its own, so the sum over the distinct values of a model is the
    time its groups and lone runs took one after another (one worker process), and ``grid_epoch_s``,
    the sum over the models, one epoch of the whole grid — without the process start, data loading and
    epoch-0 evaluation that the command's time includes. Readable after a stop at the cap too: the groups
    that finished their epoch are in it (``epoch1_runs`` says how many runs)."""
    import sqlite3

    if not store.exists():
        return {}
    with sqlite3.connect(store) as db:
        statuses = dict(db.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
        rows = db.execute("SELECT r.config_json, e.wall_time_s FROM runs r JOIN epochs e ON e.run_key = r.run_key "
                          "WHERE e.epoch = 1").fetchall()
    walls: dict[str, set[float]] = {}
    runs: dict[str, int] = {}
    for config_json, wall in rows:
        model = json.loads(config_json)["model"]
        walls.setdefault(model, set()).add(float(wall or 0.0))
        runs[model] = runs.get(model, 0) + 1
    result: dict = {"statuses": statuses, "epoch1_runs": runs,
                    "epoch1_groups": {m: len(v) for m, v in walls.items()},
                    "epoch1_s": {m: round(sum(v), 2) for m, v in walls.items()}}
    if walls:
        result["grid_epoch_s"] = round(sum(sum(v) for v in walls.values()), 2)
    return result


def sweep_epoch(spec: Path, store: Path, root: Path, timeout: float, extra: list[str]) -> dict:
    """Run ``rethinkgen sweep run`` once: wall seconds of the command and of the sweep as it reports them,
    and what the store holds (:func:`grid_epoch`)."""
    command = [sys.executable, "-m", "rethinkgen.cli", "sweep", "run", str(spec), "--store", str(store),
               "--data-dir", str(root), "--quiet", *extra]
    t0 = time.perf_counter()
    code, out, err = run_capped(command, timeout, capture=True)
    out += err
    wall = time.perf_counter() - t0
    result = {"command_s": round(wall, 2), "exit": code, "options": " ".join(extra) or "(defaults)"}
    match = re.search(r"resumed from a checkpoint: \d+[^;]*; ([0-9.]+) s", out)
    if match:
        result["sweep_s"] = float(match.group(1))
    result.update(grid_epoch(store))
    if code != 0:
        result["output_tail"] = out[-1500:]
    return result


def stage_figure1(a: argparse.Namespace, s: dict, root: Path, cap: float) -> None:
    with tempfile.TemporaryDirectory(prefix="rethinkgen-fig1-") as tmp:
        spec = figure1_spec(s, Path(tmp), a.smoke)
        t0 = time.perf_counter()
        first = sweep_epoch(spec, Path(tmp) / "one.db", root, cap, [])
        save(a.out, "figure1", {"workers_per_gpu_1": first})
        left = cap - (time.perf_counter() - t0)
        if not a.smoke and first.get("exit") == 0 and left > 1.5 * first["command_s"]:
            save(a.out, "figure1", {"workers_per_gpu_2": sweep_epoch(spec, Path(tmp) / "two.db", root, left,
                                                                     ["--workers-per-gpu", "2"])})


# ------------------------------------------------------------------------------ stage: kernel solve
def stage_kernel(a: argparse.Namespace, s: dict, cap: float) -> None:
    if a.smoke:
        args = ["--data", "mnist1d", "--n", "300", "--n-test", "100", "--bandwidth", "auto", "--device", "cpu"]
    else:
        mnist = Path(a.mnist_dir).expanduser() if a.mnist_dir else None
        found = mnist is not None and any((mnist / sub / "train-images-idx3-ubyte.gz").exists()
                                          or (mnist / sub / "train-images-idx3-ubyte").exists()
                                          for sub in (".", "mnist", "MNIST/raw"))
        if not found:
            save(a.out, "kernel", {"skipped": f"MNIST not found at {mnist} (give --mnist-dir with the four IDX "
                                              "files; gpu_session.sh passes .gpu-carry/mnist when present)"})
            return
        args = ["--data", "mnist", "--data-dir", str(mnist), "--bandwidth", "5.096", "--dtype", "float64",
                "--device", "cuda"]
    t0 = time.perf_counter()
    code, out, err = run_capped([sys.executable, "-m", "rethinkgen.cli", "kernel", "fit", *args, "--json"], cap,
                                capture=True)
    wall = time.perf_counter() - t0
    if code == "timeout":
        save(a.out, "kernel", {"error": f"timed out after {cap:.0f} s", "output_tail": (out + err)[-1500:]})
        return
    if code != 0 or "{" not in out:
        save(a.out, "kernel", {"error": (out + err)[-1500:], "command_s": round(wall, 1)})
        return
    fit = json.loads(out[out.index("{"):])
    keep = ("n_train", "n_test", "test_error", "rel_residual", "time_s", "bandwidth", "dtype", "device")
    save(a.out, "kernel", {"command_s": round(wall, 1), **{k: fit.get(k) for k in keep if k in fit}})


# ------------------------------------------------------------------------------ the table
def _num(value) -> str:
    return f"{value:,.0f}" if isinstance(value, int | float) else "—"


def _ratio(value, base) -> str:
    return f"{value / base:.1f}x" if isinstance(value, int | float) and isinstance(base, int | float) and base else "—"


def report(results: dict, s: dict, smoke: bool) -> str:
    common, trainer, fused = results.get("common", {}), results.get("trainer", {}), results.get("fused", {})
    w_lo, w_hi = s["workers"]
    g_lo, g_hi = s["groups"]
    head = ["model", f"common w{w_lo}", f"common w{w_hi}", "trainer", f"vs w{w_hi}", "trainer+eval",
            f"fused x{g_lo} (all runs)", f"vs w{w_hi}", f"fused x{g_hi} (all runs)", f"vs w{w_hi}",
            f"x{g_hi} mem est/peak GB"]
    rows = []
    for model in s["models"]:
        base = common.get(f"{model}.w{w_hi}")
        t = trainer.get(model, {})
        f_lo, f_hi = fused.get(f"{model}.x{g_lo}", {}), fused.get(f"{model}.x{g_hi}", {})
        rows.append([model, _num(common.get(f"{model}.w{w_lo}")), _num(base), _num(t.get("train_sps")),
                     _ratio(t.get("train_sps"), base), _num(t.get("epoch_sps")), _num(f_lo.get("sps_all_runs")),
                     _ratio(f_lo.get("sps_all_runs"), base), _num(f_hi.get("sps_all_runs")),
                     _ratio(f_hi.get("sps_all_runs"), base),
                     f"{f_hi.get('estimate_gb', '—')}/{f_hi.get('peak_gb', '—')}"])
    from _bench import table

    lines = ["samples/s" + (" (SMOKE: tiny CPU run, not a measurement)" if smoke else ""),
             table(rows, head)]
    for stage in ("common", "trainer", "fused"):
        for key, value in results.get(stage, {}).items():
            if (isinstance(value, str) and value.startswith("error")) or (isinstance(value, dict) and "error" in value):
                lines.append(f"{stage} {key}: {value if isinstance(value, str) else value['error']}")
    for stage in SHARES:
        if "timed_out" in results.get(stage, {}):
            lines.append(f"{stage}: {results[stage]['timed_out']}")
    for value in results.get("figure1", {}).values():
        done, runs = sum(value.get("epoch1_runs", {}).values()), sum(value.get("statuses", {}).values())
        lines.append(f"figure1 ({value.get('options')}): grid epoch {value.get('grid_epoch_s', '—')} s over {done} "
                     f"of {runs} runs (epoch 1 of each model's runs: {value.get('epoch1_s', {})}), command "
                     f"{value.get('command_s')} s, sweep {value.get('sweep_s', '—')} s, exit {value.get('exit')}, "
                     f"runs {value.get('statuses')}")
    kernel = results.get("kernel", {})
    if kernel:
        lines.append("kernel: " + ", ".join(f"{k} {v}" for k, v in kernel.items()))
    inception = trainer.get("inception_small", {}).get("train_sps")
    fused11 = fused.get(f"inception_small.x{g_hi}", {}).get("sps_all_runs")
    fig = results.get("figure1", {}).get("workers_per_gpu_1", {})
    ratios = {m: _ratio(trainer.get(m, {}).get("train_sps"), common.get(f"{m}.w{w_hi}")) for m in s["models"]}
    lines += ["targets (issue 10, on one H200):",
              f"  inception_small single run >= {TARGETS['inception_single']:,} samples/s: {_num(inception)}",
              f"  fused group of 11 inception_small >= {TARGETS['inception_fused11']:,} samples/s: {_num(fused11)}",
              f"  every paper model >= {TARGETS['vs_common_w8']:.0f}x the common loop with 8 workers: "
              + ", ".join(f"{m} {r}" for m, r in ratios.items()),
              f"  Figure 1 grid epoch <= {TARGETS['figure1_s']:.0f} s: {fig.get('grid_epoch_s', '—')} s of epoch 1 "
              f"over {sum(fig.get('epoch1_runs', {}).values())} runs (whole sweep {fig.get('sweep_s', '—')} s, "
              f"command {fig.get('command_s', '—')} s)"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ main
MIN_CAP = 10.0  # seconds: below this a stage only starts its process


def cap_of(stages: list[str], i: int, left: float, budget: float) -> float:
    """The time stage ``stages[i]`` may use: what is ``left`` of the budget less the shares of the stages
    after it (its own share plus whatever the stages before it did not use), at least ``MIN_CAP``."""
    later = sum(SHARES[name] for name in stages[i + 1:]) * budget
    return max(MIN_CAP, left - later)


def child(a: argparse.Namespace) -> None:
    s = sizes(a.smoke)
    s["models"] = tuple(a.models or s["models"])
    root = Path(a.data_dir)
    {"common": stage_common, "trainer": stage_trainer, "fused": stage_fused}[a.child](a, s, root)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (a test runs this)")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(Path(tempfile.gettempdir()) / "rethinkgen-gpu-out"),
                    help="folder for gpu_bench.json and gpu_bench.txt (default $OUT)")
    ap.add_argument("--budget", type=float, default=None, help="seconds for all stages (default 285; smoke 240)")
    ap.add_argument("--stages", nargs="+", default=list(SHARES), choices=list(SHARES))
    ap.add_argument("--models", nargs="+", default=None, choices=list(MODELS))
    ap.add_argument("--data-dir", default=None, help="synthetic CIFAR-10 folder (default: a temp folder)")
    default_data = os.environ.get("RETHINKGEN_DATA") or str(Path.home() / ".cache" / "rethinkgen")
    ap.add_argument("--mnist-dir", default=default_data,
                    help="folder of the MNIST IDX files for the kernel stage (default $RETHINKGEN_DATA or "
                         "~/.cache/rethinkgen; it may also hold them in mnist/ or MNIST/raw/)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.out = Path(a.out)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.child:
        child(a)
        return
    from _bench import fake_cifar10, machine

    signal.signal(signal.SIGTERM, _on_sigterm)
    s = sizes(a.smoke)
    budget = a.budget or (240.0 if a.smoke else 285.0)
    t_start = time.perf_counter()
    deadline = t_start + budget  # writing the synthetic files counts too
    default_root = Path(tempfile.gettempdir()) / ("rethinkgen-gpu-cifar-smoke" if a.smoke else "rethinkgen-gpu-cifar")
    root = fake_cifar10(Path(a.data_dir) if a.data_dir else default_root, rows=s["rows"])
    (a.out / "gpu_bench.json").unlink(missing_ok=True)
    save(a.out, "machine", {"description": machine(), "smoke": a.smoke, "budget_s": budget})
    print(f"machine: {machine()}; budget {budget:.0f} s; results in {a.out}", flush=True)
    for i, stage in enumerate(a.stages):
        cap = cap_of(a.stages, i, deadline - time.perf_counter(), budget)
        t0 = time.perf_counter()
        if stage in ("common", "trainer", "fused"):
            command = [sys.executable, __file__, "--child", stage, "--out", str(a.out), "--data-dir", str(root)]
            command += (["--smoke"] if a.smoke else []) + (["--models", *a.models] if a.models else [])
            code, _, _ = run_capped(command, cap)
            if code == "timeout":
                save(a.out, stage, {"timed_out": f"stopped at its cap of {cap:.0f} s; the results above it are "
                                                 "complete, the missing ones were not measured"})
            elif code != 0:
                save(a.out, stage, {"exit": code})
        elif stage == "figure1":
            stage_figure1(a, s, root, cap)
        else:
            stage_kernel(a, s, cap)
        print(f"[{stage}] {time.perf_counter() - t0:.1f} s (cap {cap:.0f} s)", flush=True)
    results = json.loads((a.out / "gpu_bench.json").read_text())
    text = report(results, {**s, "models": tuple(a.models or s["models"])}, a.smoke)
    text += f"\ntotal {time.perf_counter() - t_start:.0f} s"
    (a.out / "gpu_bench.txt").write_text(text + "\n")
    print(text, flush=True)


if __name__ == "__main__":
    main()
