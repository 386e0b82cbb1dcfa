"""`rethinkgen list ...`: every name in full and every description, on wide and narrow consoles."""

from __future__ import annotations

import pytest
from rich.console import Console
from typer.testing import CliRunner

from rethinkgen import cli
from rethinkgen.data.corruptions import CORRUPTIONS
from rethinkgen.data.sources import DATASETS
from rethinkgen.models import MODELS


@pytest.mark.parametrize("width", [60, 80, 200])
@pytest.mark.parametrize(("what", "registry"), [("models", MODELS), ("datasets", DATASETS),
                                                ("corruptions", CORRUPTIONS)])
def test_listings_show_every_name_whole_at_any_width(monkeypatch, width, what, registry):
    monkeypatch.setattr(cli, "console", Console(width=width, force_terminal=False, color_system=None))
    result = CliRunner().invoke(cli.app, ["list", what])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= width
    assert "…" not in result.output  # nothing cut short
    for name in registry.names():
        assert any(name in line.split() or line.startswith(f"{name}:") or f" {name} " in line for line in lines), name
    if width < cli.WIDE:  # descriptions follow the table, one "name: description" per entry
        assert sum(line.startswith(tuple(f"{n}:" for n in registry.names())) for line in lines) == len(registry.names())
    else:
        assert "description" in result.output
