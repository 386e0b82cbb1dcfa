"""``rethinkgen train``: one run into its folder (paper §2, Figure 1; Table 2 on ImageNet).

The command, its options and the life of the run's folder (:mod:`rethinkgen.train.run_dir`): checked
before any work, written as the epochs finish, saved on Ctrl-C / SIGTERM / an error and continued by
``--resume``. Under torchrun (``--nproc-per-node``) only rank 0 writes and prints. Mounted on the root
command line by :mod:`rethinkgen.cli`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from rethinkgen.console import console, err_console, say
from rethinkgen.errors import ConfigError

__all__ = ["print_summary", "train"]

DATA, CORR, OPT, RUN = "Data", "Corruption (paper §2.1)", "Model and optimisation", "Run and output"
DIST = "Several processes (streamed data: imagenet)"


def _parse_options(pairs: list[str] | None) -> dict[str, Any] | None:
    if not pairs:
        return None
    options: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--data-option takes KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _opt(panel: str, *decls: str, **kwargs: Any) -> Any:
    return typer.Option(*decls, rich_help_panel=panel, **kwargs)


def train(
    ctx: typer.Context,
    data: Annotated[str, _opt(DATA, help="dataset name (rethinkgen list datasets)")] = "mnist1d",
    data_dir: Annotated[Path | None, _opt(DATA, metavar="DIR", help="folder of file-based datasets")] = None,
    data_option: Annotated[list[str] | None, _opt(DATA, metavar="KEY=VALUE", help="source option, "
                                                  "repeatable, e.g. path=x.npz")] = None,
    n_train: Annotated[int | None, _opt(DATA, help="use a seeded subset of the training set")] = None,
    n_test: Annotated[int | None, _opt(DATA, help="use a seeded subset of the test set")] = None,
    corruption: Annotated[str, _opt(CORR, help="corruption name (rethinkgen list corruptions)")] = "true_labels",
    level: Annotated[float | None, _opt(CORR, metavar="P", help="label-corruption probability p in [0, 1], for "
                                        "partial_labels")] = None,
    exclude_true_class: Annotated[bool, _opt(CORR, "--exclude-true-class/--include-true-class",
                                             show_default=False,
                                             help="draw a corrupted label from the other classes only (always "
                                                  "changed), or from all [default: all, as the paper]")] = False,
    model: Annotated[str, _opt(OPT, help="model name (rethinkgen list models)")] = "mlp_1x512",
    dropout: Annotated[float, _opt(OPT, help="dropout probability in hidden layers")] = 0.0,
    epochs: Annotated[int | None, _opt(OPT, help="maximum epochs [default: per dataset]")] = None,
    batch_size: Annotated[int, _opt(OPT, help="samples per SGD step")] = 128,
    lr: Annotated[float | None, _opt(OPT, help="initial learning rate [default: per dataset/model]")] = None,
    momentum: Annotated[float, _opt(OPT, help="SGD momentum")] = 0.9,
    weight_decay: Annotated[float, _opt(OPT, help="L2 coefficient")] = 0.0,
    lr_decay: Annotated[float, _opt(OPT, help="learning-rate decay factor")] = 0.95,
    lr_decay_every: Annotated[int | None, _opt(OPT, help="samples seen per decay; 0: once per epoch [default: "
                                                         "per dataset]")] = None,
    crop: Annotated[int | None, _opt(OPT, help="crop side in pixels; for imagenet the network's input (299 "
                                     "inception_v3, 224 resnet50) [default: per dataset]")] = None,
    standardize: Annotated[str | None, _opt(OPT, help="per_image | per_feature | inception ([-1, 1]) | none "
                                            "[default: per dataset]")] = None,
    augment: Annotated[bool, _opt(OPT, "--augment/--no-augment", help="random-crop augmentation (images)")] = False,
    flip: Annotated[bool, _opt(OPT, "--flip/--no-flip", help="random horizontal flips (images)")] = False,
    target_train_acc: Annotated[float, _opt(OPT, help="stop at this training accuracy (0-1)")] = 1.0,
    seed: Annotated[int, _opt(OPT, help="the run's seed")] = 0,
    log_every: Annotated[int, _opt(OPT, help="steps between recorded training losses")] = 10,
    eval_every: Annotated[int | None, _opt(OPT, metavar="N", help="SGD steps between evaluations of the whole "
                                           "training set, the resolution of the convergence step [default: "
                                           "once per epoch]")] = None,
    device: Annotated[str, _opt(RUN, help="auto | cpu | cuda | mps")] = "auto",
    precision: Annotated[str | None, _opt(RUN, help="float32 | bfloat16 (bf16 autocast on any device; slow on "
                                          "the CPU, for tests and reproducing a GPU run) [default: bf16 on "
                                          "CUDA, float32 elsewhere]")] = None,
    threads: Annotated[int | None, _opt(RUN, help="CPU threads [default: torch's; on --resume: the run's]")]
    = None,
    out: Annotated[Path | None, _opt(RUN, metavar="DIR", help="output folder [default: runs/<run key>]")] = None,
    resume: Annotated[Path | None, _opt(RUN, metavar="DIR", help="continue the interrupted run in DIR")] = None,
    overwrite: Annotated[bool, _opt(RUN, "--overwrite/--no-overwrite", help="replace the run --out holds")] = False,
    tensorboard: Annotated[Path | None, _opt(RUN, metavar="DIR", help="also write TensorBoard scalars to "
                                             "DIR/<name of --out> (needs tensorboard)")] = None,
    quiet: Annotated[bool, _opt(RUN, "--quiet/--no-quiet", help="no progress display")] = False,
    as_json: Annotated[bool, _opt(RUN, "--json/--no-json", help="print the summary as JSON")] = False,
    stop_after: Annotated[int | None, _opt(RUN, metavar="N", help="stop after N epochs in this call, saved as an "
                                           "interruption is; --resume continues")] = None,
    nproc_per_node: Annotated[int | None, _opt(DIST, metavar="N", help="train on N processes (one per GPU) of "
                                               "this node: reruns this command under torchrun")] = None,
    world_size: Annotated[int | None, _opt(DIST, help="DDP processes of the run [default: torchrun's "
                                           "WORLD_SIZE, else 1]; outside torchrun, as --nproc-per-node")] = None,
    workers: Annotated[int | None, _opt(DIST, help="DataLoader processes per rank for data streamed from disk "
                                        "(imagenet) [default: CPUs / ranks, at most 16]")] = None,
    train_eval_samples: Annotated[int | None, _opt(DIST, metavar="N", help="streamed data: evaluate training "
                                                   "accuracy each epoch on a fixed subset of N images "
                                                   "[default: all]")] = None,
) -> None:
    """Train one run into a folder: summary.json, metrics.csv, step_losses.csv (paper §2, Figure 1; Table 2 on
    ImageNet, on several GPUs with --nproc-per-node or torchrun).

    The files follow the epochs; Ctrl-C or SIGTERM leave an interrupted run that --resume continues.
    """
    from rethinkgen.train.config import TrainConfig
    from rethinkgen.train.streaming.distributed import in_torchrun
    from rethinkgen.train.validate import check_option

    check_option("--stop-after", stop_after, minimum=1, integer=True)
    if resume is not None and not in_torchrun():
        nproc_per_node = _resume_processes(resume, nproc_per_node)
    launch = nproc_per_node or (world_size if world_size and world_size > 1 and resume is None else None)

    def config_of(processes: int | None) -> TrainConfig:
        return TrainConfig(
            data=data, data_dir=str(data_dir) if data_dir else None, data_options=_parse_options(data_option),
            n_train=n_train, n_test=n_test, corruption=corruption, level=level,
            exclude_true_class=exclude_true_class, model=model, dropout=dropout, epochs=epochs,
            batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay, lr_decay=lr_decay,
            lr_decay_every=lr_decay_every, augment=augment, flip=flip, target_train_acc=target_train_acc,
            log_every=log_every, eval_every=eval_every, seed=seed, device=device, precision=precision, crop=crop,
            standardize=standardize, world_size=processes, workers=workers, train_eval_samples=train_eval_samples)

    if launch and not in_torchrun():  # this command again, under torchrun, on N processes of this node
        if resume is None and launch > 1:  # the run's checks here, once, before torchrun starts N processes
            from rethinkgen.train.resolve import resolve_config
            from rethinkgen.train.streaming.data import check_ready

            check_ready(resolve_config(config_of(world_size or launch)))
        _relaunch_under_torchrun(launch, add_world_size=world_size is None and resume is None)
    if in_torchrun() and world_size is None and resume is None:
        world_size = int(os.environ["WORLD_SIZE"])
    if resume is not None:
        _refuse_config_options(ctx, allowed={"resume", "threads", "device", "precision", "data_dir", "quiet",
                                             "as_json", "tensorboard", "stop_after", "nproc_per_node", "workers"})
        return _resume_run(resume, threads=threads, device=device if _given(ctx, "device") else None,
                           precision=precision,
                           data_dir=data_dir, tensorboard=tensorboard, quiet=quiet, as_json=as_json,
                           stop_after=stop_after, workers=workers)
    config = config_of(world_size)
    _start_run(config, out=out, overwrite=overwrite, threads=threads, tensorboard=tensorboard, quiet=quiet,
               as_json=as_json, stop_after=stop_after)


def _resume_processes(path: Path, nproc_per_node: int | None) -> int | None:
    """The processes ``--resume PATH`` runs on: the run's own ``world_size`` (from its summary; a run of
    several processes is resumed under torchrun as it was started, even without ``--nproc-per-node``).
    ConfigError, before anything starts, when ``--nproc-per-node`` asks for another number: it is part of
    the run's numerics (each process takes batch_size / W images of a step)."""
    from rethinkgen.train.run_dir import FINISHED, RunDir

    try:
        old = RunDir(path).read_summary() or {}
    except ConfigError:
        return nproc_per_node  # the resume itself names the problem
    config = old.get("config") if isinstance(old.get("config"), dict) else {}
    saved = int(config.get("world_size") or 1)
    if nproc_per_node is not None and nproc_per_node != saved:
        raise ConfigError(f"{path} holds a run trained on {saved} process(es); resume it with --nproc-per-node "
                          f"{saved} (the number of processes is part of the run's numerics: each takes batch_size / "
                          "W images of every step), or start a new run with --nproc-per-node "
                          f"{nproc_per_node}")
    if old.get("status") in FINISHED:
        return None  # nothing to resume: said by this process
    return saved if saved > 1 else nproc_per_node


def _relaunch_under_torchrun(nproc: int, add_world_size: bool) -> None:
    """Run this very command line again as ``torchrun --standalone --nproc-per-node N -m rethinkgen ...``
    (rethinkgen.train.streaming.distributed) and exit with its status.

    torchrun runs in a session of its own and this process forwards SIGINT, SIGTERM and SIGHUP to it, once
    each time, then waits for it: torchrun hands the signal to the ranks and rank 0 saves the run as
    interrupted. (A launcher that died of the signal, or killed torchrun, left the ranks training on,
    orphaned.) Exit status 130 when the run was interrupted so."""
    import subprocess

    from rethinkgen.train.streaming.distributed import torchrun_command

    argv = _without_option(sys.argv[1:], "--nproc-per-node")
    if add_world_size:
        argv += ["--world-size", str(nproc)]
    child = subprocess.Popen(torchrun_command(nproc, argv), start_new_session=True)
    forwarded: list[int] = []

    def forward(signum, frame):
        forwarded.append(signum)
        if child.poll() is None:
            child.send_signal(signum)

    caught = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, forward) for s in caught}
    try:
        code = child.wait()  # resumed after each forwarded signal (PEP 475)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    raise typer.Exit(130 if forwarded and code != 0 else code)


def _without_option(argv: list[str], name: str) -> list[str]:
    """``argv`` without ``name VALUE`` / ``name=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


def _rank() -> int:
    """This process's rank under torchrun (0 otherwise): only rank 0 writes the run's folder and prints."""
    from rethinkgen.train.streaming.distributed import in_torchrun

    return int(os.environ.get("RANK", "0")) if in_torchrun() else 0


# ------------------------------------------------------------------- train: the run folder's life
def _given(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _refuse_config_options(ctx: typer.Context, allowed: set[str]) -> None:
    given = sorted(p.opts[0] for p in ctx.command.params
                   if p.name not in allowed and p.name != "ctx" and _given(ctx, p.name))
    if given:
        raise ConfigError(f"--resume continues the run with the config saved in its folder; drop "
                          f"{', '.join(given)} (only --threads, --device, --precision, --data-dir, "
                          "--tensorboard, --quiet and --json may be given with it)")


def _start_run(config, *, out: Path | None, overwrite: bool, threads: int | None, tensorboard: Path | None,
               quiet: bool, as_json: bool, stop_after: int | None = None) -> None:
    """Validate, check the output folder, then train (every check before any work)."""
    from rethinkgen.train.config import run_key
    from rethinkgen.train.resolve import resolve_config
    from rethinkgen.train.run_dir import RunDir

    _check_threads(threads)
    _check_tensorboard(tensorboard)
    resolved = resolve_config(config)
    _check_data(resolved)
    key = run_key(resolved)
    folder = RunDir(out or Path("runs") / key[:12])
    if _rank() != 0:  # another rank of a torchrun run: rank 0 checks and locks the folder, and writes it
        _run_into(folder, resolved, state=None, threads=threads, tensorboard=tensorboard, quiet=quiet,
                  as_json=as_json, stop_after=stop_after)
        return
    folder.prepare(key, overwrite=overwrite)  # takes the folder's lock
    try:
        _run_into(folder, resolved, state=None, threads=threads, tensorboard=tensorboard, quiet=quiet,
                  as_json=as_json, stop_after=stop_after)
    finally:
        folder.unlock()


def _check_data(config) -> None:
    """Raise DatasetNotFoundError (where it looked, the command that fetches it) when the files of
    ``config.data`` are missing; cheap (found, not read), so it runs before the run folder is touched."""
    from rethinkgen.data.sources import check_available

    check_available(config.data, config.data_dir)


def _resume_run(path: Path, *, threads: int | None, device: str | None, data_dir: Path | None,
                tensorboard: Path | None, quiet: bool, as_json: bool, stop_after: int | None = None,
                workers: int | None = None, precision: str | None = None) -> None:
    from rethinkgen.train.run_dir import RunDir

    _check_threads(threads)
    _check_tensorboard(tensorboard)
    folder = RunDir(path)
    main = _rank() == 0  # under torchrun only rank 0 locks and writes the folder
    if folder.path.is_dir() and main:
        folder.lock()  # released when the run ends (_run_into), or below on a refusal
    try:
        _resume_locked(folder, path, threads=threads, device=device, data_dir=data_dir, tensorboard=tensorboard,
                       quiet=quiet, as_json=as_json, stop_after=stop_after, workers=workers, precision=precision)
    finally:
        if main:
            folder.unlock()


def _resume_locked(folder, path: Path, *, threads: int | None, device: str | None, data_dir: Path | None,
                   tensorboard: Path | None, quiet: bool, as_json: bool, stop_after: int | None = None,
                   workers: int | None = None, precision: str | None = None) -> None:
    from rethinkgen.train.run_dir import FINISHED

    config, state, old, unreadable = _load_resume(folder)
    if old.get("status") in FINISHED:
        if _rank() == 0:
            say(err_console, f"{path} holds a finished run (status {old['status']}); nothing to resume")
            if as_json:
                print(json.dumps(old, indent=2))
        return
    changes = {k: v for k, v in (("device", device), ("data_dir", str(data_dir) if data_dir else None),
                                 ("workers", workers), ("precision", precision)) if v is not None}
    config = config.replace(**changes) if changes else config
    _check_data(config)  # before the folder is written: a missing dataset is not a failed run
    saved = (state or {}).get("numerics") or {}
    threads = threads or saved.get("threads") or old.get("threads")  # the checkpoint's count first
    if state is not None:  # numerics refused here, before the folder is touched (train.numerics)
        from rethinkgen.train.numerics import check_resume, numerics_here

        here = numerics_here(config, threads=threads)
        if here is not None:
            check_resume(saved, here, run=f"the run in {path}", context="train")
    tensorboard = tensorboard or (Path(old["tensorboard"]) if old.get("tensorboard") else None)
    if _rank() != 0:  # another rank of a torchrun run: rank 0 says what happens
        pass
    elif state is None and unreadable:
        say(err_console, f"{path}: its checkpoint could not be read; starting the run again from epoch 0 (on the "
            "CPU it gives the same numbers again)")
    elif state is None:
        say(err_console, f"{path}: no checkpoint was saved (stopped before its first epoch); starting the run "
            "again")
    else:
        say(err_console, f"{path}: resuming after epoch {state['epoch']}")
    _run_into(folder, config, state=state, threads=threads, tensorboard=tensorboard, quiet=quiet, as_json=as_json,
              stop_after=stop_after)


def _load_resume(folder) -> tuple[Any, dict | None, dict, list[str]]:
    """``folder.load_resume()`` plus the notes on checkpoints it could not read, printed as one-line warnings
    (not Python warnings with a source line)."""
    import warnings

    from rethinkgen.sweep.checkpoint import CheckpointWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CheckpointWarning)
        config, state, old = folder.load_resume()
    notes = []
    for w in caught:
        if issubclass(w.category, CheckpointWarning):
            notes.append(str(w.message))
            say(err_console, f"[yellow]warning:[/] {escape(str(w.message))}")
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return config, state, old, notes


def _run_into(folder, config, *, state: dict | None, threads: int | None, tensorboard: Path | None, quiet: bool,
              as_json: bool, stop_after: int | None = None) -> None:
    """Train ``config`` (from ``state`` if given) writing ``folder`` as it goes; exit 130 when
    interrupted and 1 when the run failed, after saving the last finished epoch; after ``stop_after``
    epochs in this call, save as on an interruption and exit 0. Under torchrun, ranks other than 0 train
    without writing or printing."""
    import torch

    from rethinkgen.train.loop import train as train_run
    from rethinkgen.train.run_dir import RunDirWriter
    from rethinkgen.train.stopping import StopAfter, StopRequested

    stops = [StopAfter(int((state or {}).get("epoch", 0)) + stop_after)] if stop_after else []
    if _rank() != 0:  # another rank of a torchrun run: rank 0 writes the folder and reports
        if threads:
            torch.set_num_threads(threads)
        try:
            with _sigterm_as_interrupt():
                train_run(config, callbacks=stops, resume=state)
        except StopRequested:
            pass
        except KeyboardInterrupt:  # rank 0 saves the run and says so
            raise typer.Exit(130) from None
        return

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    extra: dict[str, Any] = {"threads": torch.get_num_threads()}
    if tensorboard is not None:
        extra["tensorboard"] = str(tensorboard)
    writer = RunDirWriter(folder, config, extra=extra)
    live = not quiet and not as_json and sys.stderr.isatty()
    callbacks: list[Any] = [writer, _WarnOnce(), *stops]
    if not quiet and not as_json and not live:
        callbacks.append(_ProgressLines(config))
    sink = None
    if tensorboard is not None:
        from rethinkgen.train.tensorboard import TensorBoardSink, run_folder

        sink = TensorBoardSink(run_folder(tensorboard, folder.path.resolve().name), fresh=state is None)
        callbacks.append(sink)
    try:
        writer.start(state)
        with _sigterm_as_interrupt():
            summary = train_run(config, callbacks=callbacks, resume=state, progress=live, run_dir=str(folder.path))
        writer.finish(summary)
    except StopRequested as stop:
        with _signals_ignored():
            writer.stop("interrupted")
        say(err_console, f"stopped after epoch {stop.epoch} (--stop-after); saved in {folder.path}. "
            f"Continue with: rethinkgen train --resume {folder.path}")
        return
    except KeyboardInterrupt:
        with _signals_ignored():
            writer.stop("interrupted")
        say(err_console, f"[yellow]interrupted[/] {_when(writer)}; saved in {folder.path}. "
            f"Continue with: rethinkgen train --resume {folder.path}")
        raise typer.Exit(130) from None
    except Exception as exc:
        with _signals_ignored():
            writer.stop("failed", exc)
        from rethinkgen.errors import RethinkgenError

        if writer.state is None and isinstance(exc, RethinkgenError):  # refused before training: nothing to keep
            say(err_console, "[red]failed[/] before its first epoch: nothing was trained; fix what the error below "
                "names and run the same command again")
        else:
            say(err_console, f"[red]failed[/] {_when(writer)}; what was done is saved in "
                f"{folder.path} (rethinkgen train --resume {folder.path} retries from there)")
        raise
    finally:
        torch.set_num_threads(before)
        if sink is not None:
            sink.close()
    if as_json:
        from rethinkgen.train.run_dir import public_summary

        print(json.dumps(public_summary({**summary, "threads": writer.extra["threads"]}), indent=2))
    else:
        print_summary(summary, folder.path)


def _check_tensorboard(tensorboard: Path | None) -> None:
    """TensorBoard importable and its folder writable, before any work."""
    if tensorboard is not None:
        from rethinkgen.files import ensure_writable_dir
        from rethinkgen.train.tensorboard import require_tensorboard

        require_tensorboard()
        ensure_writable_dir(tensorboard, "--tensorboard")


def _when(writer) -> str:
    return "before its first epoch" if writer.state is None else f"after epoch {writer.state['epoch']}"


def _check_threads(threads: int | None) -> None:
    from rethinkgen.train.validate import check_option

    check_option("--threads", threads, minimum=1, integer=True)


class _WarnOnce:
    """Print the run's warnings (e.g. a schedule that starves the learning rate, train.schedule) as soon as
    the data is loaded, before the first epoch trains: the run can be stopped at once."""

    def on_epoch_end(self, row: dict[str, Any], step_losses: list, trainer: Any) -> None:
        if row["epoch"] == 0:
            for warning in trainer.summary().get("warnings") or ():
                say(err_console, f"[yellow]warning:[/] {escape(warning)}")


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a batch system's stop, `kill`) ends the run like Ctrl-C: saved, status interrupted."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_ignored():
    """A second Ctrl-C / SIGTERM must not cut the saving of the first one short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _ProgressLines:
    """Progress of a run when stderr is not a terminal (a batch job's log): one plain line for epoch 0,
    then at most one every ``every_s`` seconds, and the last epoch."""

    def __init__(self, config, every_s: float = 30.0, clock=None) -> None:
        import time

        self.total, self.every_s, self.clock = config.epochs, every_s, clock or time.monotonic
        self.last = -float("inf")

    def on_epoch_end(self, row: dict[str, Any], step_losses: list, trainer: Any) -> None:
        now = self.clock()
        status = trainer.history.status
        if now - self.last < self.every_s and status is None:
            return
        self.last = now
        loss = row.get("train_loss")
        text = (f"epoch {row['epoch']}/{self.total} · step {row['step']}"
                + (f" · loss {loss:.4f}" if loss is not None else "")
                + f" · train {_pct(row['train_acc'])} · test {_pct(row['test_acc'])}"
                + f" · {row.get('wall_time_s', 0.0):.1f} s"
                + (f" · {status}" if status else ""))
        print(text, file=sys.stderr, flush=True)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def print_summary(summary: dict[str, Any], folder: Path | None = None) -> None:
    c = summary["config"]
    table = Table(title=f"{c['model']} on {c['data']} · {c['corruption']}"
                  + (f" (p={c['level']:g})" if c["corruption"] == "partial_labels" else ""))
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("status", summary["status"])
    diverged = summary["status"] == "diverged"  # accuracies of NaN outputs (one class): not results
    table.add_row("train accuracy (labels trained on)", "– (diverged)" if diverged else _pct(summary["train_acc"]))
    table.add_row("test accuracy (true labels)", "– (diverged)" if diverged else _pct(summary["test_acc"]))
    if not diverged:
        table.add_row("best test accuracy along training", _pct(summary.get("best_test_acc")))
    if summary.get("test_acc_top5") is not None and not diverged:  # more than 5 classes (Table 2)
        table.add_row("top-5 train / test (best)", f"{_pct(summary.get('train_acc_top5'))} / "
                      f"{_pct(summary['test_acc_top5'])} ({_pct(summary.get('best_test_acc_top5'))})")
    table.add_row("convergence step", str(summary["converged_step"] or "–"))
    table.add_row("epochs / steps", f"{summary['epochs']} / {summary['steps']}")
    table.add_row("realized noise rate", f"{summary['realized_noise_rate']:.4f}")
    table.add_row("parameters", f"{summary['n_params']:,}")
    table.add_row("wall time", f"{summary['wall_time_s']:.1f} s on {summary['device']}")
    if summary.get("numerics"):  # precision, threads, ...: what --precision and --threads did
        from rethinkgen.train.numerics import describe

        table.add_row("computed as", describe(summary["numerics"]))
    console.print(table)
    if diverged:
        say(console, f"[yellow]diverged:[/] the loss became NaN or infinite by epoch {summary['epochs']}, so the "
            f"network's outputs are not numbers and its accuracies are not results; a smaller --lr (now "
            f"{c['lr']:g}) usually avoids it")
    for warning in summary.get("warnings") or ():
        say(console, f"[yellow]warning:[/] {escape(warning)}")
    if folder is not None:
        say(console, f"wrote {folder}/{_written(Path(folder))}")


def _written(folder: Path) -> str:
    """``summary.json, metrics.csv and step_losses.csv`` (and ``labels.npy``, the drawn labels of a run on
    streamed data): the files of a finished run that ``folder`` holds, for the line that ends ``train``."""
    from rethinkgen.data.stream.labels import LABELS_FILE

    run_files = ("summary.json", "metrics.csv", "step_losses.csv", LABELS_FILE)
    names = [name for name in run_files if (folder / name).is_file()] or list(run_files[:3])
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


