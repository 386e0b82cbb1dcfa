"""How the data sources word their advice: options named as the user gives them, notices said once.

An error that names its fix must name it in the user's own terms. The same source option is typed
``--data-option layout=NHWC`` on the command line, ``data_options = { layout = "NHWC" }`` in a sweep
spec and ``load_dataset(..., layout="NHWC")`` in Python. The command line (and a sweep command that
wants spec wording) selects its wording with :func:`interface`; Python is the default.

A notice (e.g. "labels 1, 2 mapped to classes 0, 1") is something the user should read once, not once
per run of a sweep: :func:`notice` logs each distinct message once per process on the
``rethinkgen.data`` logger (shown on stderr by logging's last-resort handler when nothing is set up).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["INTERFACES", "interface", "notice", "option", "option_name"]

INTERFACES = ("python", "cli", "spec")
_INTERFACE: ContextVar[str] = ContextVar("rethinkgen_data_interface", default="python")
_logger = logging.getLogger("rethinkgen.data")
_said: set[str] = set()
_said_lock = threading.Lock()


@contextmanager
def interface(name: str) -> Iterator[None]:
    """Word option hints for ``name`` ("python" | "cli" | "spec") inside the ``with`` block."""
    if name not in INTERFACES:
        raise ValueError(f"interface must be one of {', '.join(INTERFACES)}, got {name!r}")
    token = _INTERFACE.set(name)
    try:
        yield
    finally:
        _INTERFACE.reset(token)


def current_interface() -> str:
    return _INTERFACE.get()


def _text(value: Any, style: str) -> str:
    if style == "python":
        return repr(value)
    if isinstance(value, str):
        return value if style == "cli" else json.dumps(value)
    return json.dumps(value)  # true/false/null and numbers, as the CLI parses them (JSON) and TOML writes


def option(key: str, value: Any, *, placeholder: bool = False) -> str:
    """The setting ``key=value`` of a source option, as the current interface spells it.

    ``placeholder=True`` writes ``value`` as is (``FILE``, ``K``) in every interface.

    >>> option("strict", False)
    'strict=False'
    >>> with interface("cli"):
    ...     option("strict", False), option("path", "FILE", placeholder=True)
    ('--data-option strict=false', '--data-option path=FILE')
    >>> with interface("spec"):
    ...     option("layout", "NHWC")
    'data_options = { layout = "NHWC" }'
    """
    style = _INTERFACE.get()
    text = str(value) if placeholder else _text(value, style)
    if style == "cli":
        return f"--data-option {key}={text}"
    if style == "spec":
        return f"data_options = {{ {key} = {text} }}"
    return f"{key}={text}"


def option_name(key: str) -> str:
    """The name of a source option as the current interface spells it (``--data-option layout``)."""
    style = _INTERFACE.get()
    return {"cli": f"--data-option {key}", "spec": f"data_options.{key}"}.get(style, key)


def notice(message: str) -> None:
    """Log ``message`` (a warning on ``rethinkgen.data``) unless it was already said in this process."""
    with _said_lock:
        if message in _said:
            return
        _said.add(message)
    _logger.warning(message)
