"""Help text that says what it means: the group class of rethinkgen's command line (typer's rich help).

Two things typer 0.29's rich help gets wrong for us, fixed once for every command below a group:

- help strings are read as rich markup, so ``[defaults], [grid], [[experiment]]`` or
  ``[default: per dataset]`` vanished from the help; every help text is escaped (we use no markup);
- boolean flags showed a ``<bool>`` type, so ``--quiet true`` looked right (and failed); flags show none.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

__all__ = ["PlainHelpGroup", "plain_help"]


def plain_help(command: Any) -> None:
    """Apply the fixes above to ``command`` and every command below it (once per object)."""
    if getattr(command, "_rethinkgen_plain_help", False):
        return
    command._rethinkgen_plain_help = True
    for attribute in ("help", "short_help"):
        text = getattr(command, attribute, None)
        if text:
            setattr(command, attribute, escape(text))
    help_option = command.get_help_option(typer.Context(command, info_name=command.name))
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if getattr(param, "_rethinkgen_plain_help", False):
            continue
        param._rethinkgen_plain_help = True
        if getattr(param, "help", None):
            param.help = escape(param.help)
        if getattr(param, "is_flag", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)


class PlainHelpGroup(typer.core.TyperGroup):
    """A typer group whose commands' help is fixed by :func:`plain_help` when the group is built."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain_help(self)
