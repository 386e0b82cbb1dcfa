"""The command line as an 80-column terminal (and a log file) shows it: help that says what it means,
boolean flags as --flag/--no-flag, --version, run names never cut, one line per event off a terminal,
and clear errors for an empty store or a read-only output folder."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from typer.main import get_command
from typer.testing import CliRunner

from rethinkgen import __version__, cli
from rethinkgen.sweep.progress import SweepDisplay
from rethinkgen.sweep.spec import parse_spec
from rethinkgen.sweep.store import Store

COLUMNS = 80


def invoke(*args, **kwargs):
    return CliRunner().invoke(cli.app, list(map(str, args)), env={"COLUMNS": str(COLUMNS)}, **kwargs)


def all_commands():
    """(path, click command) of every command and group of `rethinkgen`."""
    out = []

    def walk(command, path):
        out.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(get_command(cli.app), [])
    return out


COMMANDS = all_commands()
OURS = {"train", "demo", "report", "export", "sweep", "list", "data"}  # (theory and kernel belong to others)


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "rethinkgen")
def test_help_at_80_columns_shows_every_help_text_whole(path):
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    text = result.output
    assert max(len(line) for line in text.splitlines()) <= COLUMNS
    assert "…" not in text  # no option name or default cut short
    assert "<bool>" not in text  # flags take no value
    command = dict((tuple(p), c) for p, c in COMMANDS)[tuple(path)]
    tokens = set(text.split())
    for param in command.params:
        # what rich markup used to swallow: every bracketed word of a help text is shown as written
        for word in (param.help or "").replace("\\[", "[").split():  # (as written: undo our own escaping)
            if "[" in word or "]" in word:
                assert word in tokens, f"{param.name}: {word!r} missing from the help"


@pytest.mark.parametrize("sub", ["plan", "run"])
def test_sweep_spec_argument_names_the_spec_tables(sub):
    result = invoke("sweep", sub, "--help")
    assert "sweep spec (TOML): [defaults], [grid], [[experiment]]" in result.output


def test_boolean_flags_come_in_pairs_and_take_no_value(tmp_path):
    for path, command in COMMANDS:
        if not path or path[0] not in OURS:
            continue
        for param in command.params:
            if getattr(param, "is_flag", False):
                assert param.secondary_opts, f"{' '.join(path)} {param.opts[0]} has no negative form"
    result = invoke("train", "--quiet", "true", "--out", tmp_path / "run")
    assert result.exit_code == 2 and "unexpected extra argument" in result.output.lower()
    assert not (tmp_path / "run").exists()


def test_data_fetch_argument_is_described():
    result = invoke("data", "fetch", "--help")
    assert "dataset to download" in result.output


def test_demo_jobs_default_says_one_per_core_only():
    text = " ".join(invoke("demo", "--help").output.split())
    assert "one per core" in text and "[default: 0]" not in text


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.startswith(f"rethinkgen {__version__} (torch ")


# ------------------------------------------------------------------------------ run names
LONG_SPEC = """
name = "long"
[defaults]
data = "mnist1d"
epochs = 1
[[experiment]]
name = "a-rather-long-experiment-name"
grid = { corruption = ["partial_labels"], level = [0.1, 0.2, 0.3], weight_decay = [0.0, 0.0005] }
"""


def test_sweep_plan_never_cuts_run_names(tmp_path):
    spec = tmp_path / "long.toml"
    spec.write_text(LONG_SPEC)
    names = [r.name for r in parse_spec(LONG_SPEC).runs]
    assert len(names) == 6 and min(len(n) for n in names) > 60  # longer than an 80-column table gives them
    result = invoke("sweep", "plan", spec)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    lines = result.output.splitlines()
    assert [line for line in lines if line.startswith("a-rather")] == names  # each name whole, on its own line
    for name in names:  # the run's details right under its name
        assert lines[lines.index(name) + 1].split()[:2] == [f"#{names.index(name)}", "key"]
    wide = CliRunner().invoke(cli.app, ["sweep", "plan", str(spec)], env={"COLUMNS": "200"})
    assert sum(name in wide.output for name in names) == 6 and "│" in wide.output  # wide: a table


def make_store(tmp_path):
    plan = parse_spec(LONG_SPEC)
    path = tmp_path / "s.db"
    with Store(path) as store:
        store.add_runs(plan.name, plan.runs)
        for run in plan.runs[:3]:
            store.start_run(run.run_key)
            store.fail_run(run.run_key, "Traceback ...\nRuntimeError: out of memory on a long line of error text")
        for run in plan.runs[3:]:
            store.start_run(run.run_key)
        store.interrupt_runs([r.run_key for r in plan.runs[3:]])
    return path, [r.name for r in plan.runs]


def test_sweep_status_never_cuts_run_names(tmp_path):
    path, names = make_store(tmp_path)
    result = invoke("sweep", "status", "--store", path)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    lines = result.output.splitlines()
    assert sorted(line for line in lines if line.startswith("a-rather")) == sorted(names)
    assert sum("last error line RuntimeError: out of memory on a long line of error text" in line
               for line in lines) == 3


def test_live_display_never_cuts_run_names():
    buffer = io.StringIO()
    display = SweepDisplay(Console(file=buffer, width=COLUMNS, force_terminal=False), quiet=False)
    display.start("long", 6, 0, "test")
    display.live.stop()  # render by hand below, into the same 80 columns
    names = [r.name for r in parse_spec(LONG_SPEC).runs]
    for i, name in enumerate(names):
        display.run_started(f"key{i}", name, 300, None)
        display.epoch(f"key{i}", {"epoch": 12, "train_acc": 0.5, "test_acc": 0.25})
    out = io.StringIO()
    Console(file=out, width=COLUMNS, force_terminal=False).print(display._render())
    rows: list[str] = []
    for line in out.getvalue().splitlines()[1:]:  # after the bar
        tokens = line.split()
        if len(tokens) == 4 and tokens[1] == "12/300":
            rows.append(tokens[0])
        elif len(tokens) == 1 and rows:
            rows[-1] += tokens[0]
    assert rows == names
    assert "…" not in out.getvalue()


def test_quiet_display_writes_one_line_per_event_and_a_periodic_progress_line():
    buffer = io.StringIO()
    now = [0.0]
    display = SweepDisplay(Console(file=buffer, width=COLUMNS), quiet=None, progress_every_s=60.0,
                           clock=lambda: now[0])
    assert display.quiet  # not a terminal: log lines
    names = [r.name for r in parse_spec(LONG_SPEC).runs]
    display.start("long", 6, 0, "local")
    display.run_started("k0", names[0], 300, None)
    display.epoch("k0", {"epoch": 1, "train_acc": 0.1, "test_acc": 0.1})
    now[0] = 61.0
    display.epoch("k0", {"epoch": 2, "train_acc": 0.2, "test_acc": 0.1})
    now[0] = 70.0
    display.epoch("k0", {"epoch": 3, "train_acc": 0.3, "test_acc": 0.1})  # < 60 s after the last line
    display.run_finished("k0", names[0], {"status": "converged", "epochs": 3, "train_acc": 1.0, "test_acc": 0.1})
    display.warn(f"{names[1]}: a long warning " + "x" * 80)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 5, lines  # sweep, start, progress, converged, warning: one line each
    assert lines[1].startswith("start") and names[0] in lines[1]
    assert lines[2].startswith("progress   0/6 runs finished") and f"{names[0]} epoch 2/300" in lines[2]
    assert lines[3].startswith("converged") and names[0] in lines[3]
    assert lines[4].startswith("warning:") and lines[4].endswith("x" * 80)


# ------------------------------------------------------------------- stores and output folders
@pytest.mark.parametrize("command", [["sweep", "status"], ["export", "--out", "{tmp}/csv"],
                                     ["report", "--out", "{tmp}/report"]])
def test_empty_store_is_named_as_such(tmp_path, command):
    empty = tmp_path / "empty.db"
    empty.touch()
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    result = invoke(*args, "--store", empty)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "is empty (0 bytes)" in text and "rethinkgen sweep run SPEC --store" in text
    assert "no such table" not in text


def test_sqlite_file_that_is_not_a_store_is_named_as_such(tmp_path):
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE things (x)")
    result = invoke("sweep", "status", "--store", other)
    assert result.exit_code == 2 and "not a rethinkgen results store" in " ".join(result.output.split())


def test_plan_with_an_empty_store_shows_every_run_new(tmp_path):
    spec = tmp_path / "long.toml"
    spec.write_text(LONG_SPEC)
    empty = tmp_path / "empty.db"
    empty.touch()
    result = invoke("sweep", "plan", spec, "--store", empty)
    assert result.exit_code == 0, result.output
    assert "6 new" in result.output


@pytest.mark.parametrize("command", ["export", "report"])
def test_read_only_output_folder_fails_clearly_before_work(tmp_path, readonly_dir, command):
    path, _ = make_store(tmp_path)
    for out in (readonly_dir, readonly_dir / "sub"):
        result = invoke(command, "--store", path, "--out", out)
        assert result.exit_code == 2, result.output
        assert isinstance(result.exception, SystemExit)  # a message, not a traceback
        text = " ".join(result.output.split())
        assert re.search(r"--out folder .* (is not writable|cannot create)|cannot create the --out folder", text), text
    assert list(readonly_dir.iterdir()) == []


@pytest.mark.parametrize("width", [40, 60, 80])
def test_list_models_never_breaks_a_word_or_drops_a_value(monkeypatch, width):
    from rethinkgen.models import describe_models

    monkeypatch.setattr(cli, "console", Console(width=width, force_terminal=False, color_system=None))
    result = CliRunner().invoke(cli.app, ["list", "models"])
    assert result.exit_code == 0, result.output
    tokens = set(result.output.replace(";", " ").replace(",", " ").split())  # (lists are comma-separated)
    for info in describe_models("*"):
        for value in (info.name, *info.layouts, *f"{info.params:,}".split(",")):
            assert value in tokens, (info.name, value)
        assert f"{info.params:,}" in result.output  # a count stays on one line
