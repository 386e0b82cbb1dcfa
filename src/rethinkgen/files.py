"""Output files that are never half-written, and output folders checked before any work starts.

Every file rethinkgen's commands write for a user (a run's summary and CSV histories, exported
tables) goes to a temporary file in the same folder first and is then renamed over the target
(``os.replace``, atomic on POSIX): a reader, or a crash, sees the old file or the new one, never a
mix. :func:`ensure_writable_dir` is called by ``train --out``, ``export --out`` and ``report --out``
before they load data or train, so a read-only folder or a file in the way costs nothing.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rethinkgen.errors import ConfigError

__all__ = ["ensure_writable_dir", "write_text_atomic", "write_csv_atomic"]


def ensure_writable_dir(path: str | Path, option: str = "--out") -> Path:
    """Create ``path`` (and its parents) if missing and prove that a file can be created in it.

    Returns the folder. Raises :class:`~rethinkgen.errors.ConfigError` naming ``option`` and the fix
    when ``path`` or one of its parents is a file, or when the folder cannot be created or written
    (read-only file system, permissions, immutable folder). The check writes and deletes a small
    temporary file, so it also catches what ``os.access`` cannot see (read-only mounts, ACLs).
    """
    folder = Path(path).expanduser()
    if folder.is_symlink() and not folder.exists():
        raise ConfigError(f"{option} {folder} is a symbolic link to {os.readlink(folder)}, which does not exist; "
                          "create that folder or pass another path. Nothing was done.")
    for parent in [folder, *folder.parents]:
        if parent.exists() and not parent.is_dir():
            what = "is a file" if parent == folder else f"cannot be created: {parent} is a file"
            raise ConfigError(f"{option} {folder} {what}, not a folder; pass a folder path (it is created "
                              "if missing)")
        if parent.exists():
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the {option} folder {folder}: {exc.strerror}; "
                          f"{_writable_fix(exc)}. Nothing was done.") from None
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".rethinkgen-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        fix = _writable_fix(exc) if exc.errno in _NOT_MODES else "make it writable (chmod u+w) or choose another folder"
        raise ConfigError(f"the {option} folder {folder} is not writable ({exc.strerror}); {fix}. "
                          "Nothing was done.") from None
    return folder


#: Errors that no change of permissions fixes (a read-only mount, a full disk, a quota).
_NOT_MODES = (errno.EROFS, errno.ENOSPC, errno.EDQUOT)


def _writable_fix(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "it is on a read-only file system, which no chmod changes: choose a folder on a writable one"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk or quota is full: free space or choose a folder on another disk"
    return "choose a folder you can write to"


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file renamed into place."""
    write_bytes_atomic(Path(path), text.encode("utf-8"))


def write_csv_atomic(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV file (a header line, then ``rows``) atomically."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    write_bytes_atomic(Path(path), buffer.getvalue().encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()  # what open() would give a new file (mkstemp's own files are 0600)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsynced and renamed over
    ``path`` (readers see the old file or the new one, never a part); mode as ``open()`` would give."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
