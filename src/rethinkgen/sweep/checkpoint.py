"""Atomic, self-verifying checkpoints with one previous generation kept (design §3, resume).

File layout (``PATH`` = ``STORE.ckpt/<run_key>.pt``)::

    b"RGCKPT1\\n" | sha256(payload) (32 bytes) | len(payload) (8 bytes, little endian) | payload

where the payload is ``torch.save`` of a dict. A truncated or bit-flipped file fails the length or
digest check and is *detected* instead of loaded. Writing goes to ``PATH.tmp-<pid>`` (fsync), then
the current file becomes ``PATH.prev`` and the new one is renamed into place: at every instant either
``PATH`` or ``PATH.prev`` is a complete checkpoint. Loading tries
``PATH`` and falls back to ``PATH.prev`` with a :class:`CheckpointWarning`.

The payload the sweep writes (:func:`make_payload`) carries, besides the trainer's state, the epoch
row and logged losses of that epoch: the checkpoint is renamed into place *before* the row commits,
so after a crash between the two the resumed run re-commits that row from the checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CheckpointWarning", "CorruptCheckpointError", "LoadedCheckpoint", "checkpoint_exists", "decode", "encode",
           "load_checkpoint", "make_payload", "read_verified", "remove_checkpoints", "write_atomic"]

MAGIC = b"RGCKPT1\n"
HEADER = struct.Struct("<8s32sQ")  # magic, sha256 digest, payload length
PAYLOAD_FORMAT = 1


class CheckpointWarning(UserWarning):
    """A checkpoint was corrupt or truncated and an older state is used instead."""


class CorruptCheckpointError(Exception):
    """The file is not a complete checkpoint (bad magic, wrong length or digest mismatch)."""


# ----------------------------------------------------------------------------- bytes <-> dict
def encode(obj: dict[str, Any]) -> bytes:
    """``torch.save`` bytes of ``obj`` (done in the worker, so the driver only writes bytes)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def decode(payload: bytes) -> dict[str, Any]:
    """Inverse of :func:`encode`; ``weights_only=True``: tensors, numbers, strings and containers only."""
    import torch

    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)


def make_payload(run_key: str, row: dict[str, Any], step_losses: list, state: dict[str, Any]) -> dict[str, Any]:
    """What the sweep checkpoints after an epoch: the trainer state plus that epoch's row and losses."""
    return {"format": PAYLOAD_FORMAT, "run_key": run_key, "epoch": int(row["epoch"]), "step": int(row["step"]),
            "row": dict(row), "step_losses": [list(p) for p in step_losses], "state": state}


# ------------------------------------------------------------------------------- file format
def _prev(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def checkpoint_exists(path: str | Path) -> bool:
    """Whether a sweep checkpoint ``path`` (``STORE.ckpt/<run_key>.pt``) can be resumed from: the file or
    the previous one :func:`write_atomic` keeps beside it (``.pt.prev``, read when the newest is damaged)."""
    path = Path(path)
    return path.exists() or _prev(path).exists()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str | Path, payload: bytes, durable_rename: bool = False) -> None:
    """Write ``payload`` framed with its digest to ``path`` atomically, keeping the old file as ``.prev``.

    The data is always fsynced before the rename, so any file that carries the name is complete. The
    rename itself is made durable (folder fsync, ~10 ms on a disk) only with ``durable_rename``: after a
    power cut without it, the name may point at the previous checkpoint — which the sweep resumes from
    correctly, since it deletes the store rows beyond whatever checkpoint it restores.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    header = HEADER.pack(MAGIC, hashlib.sha256(payload).digest(), len(payload))
    try:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.replace(path, _prev(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable_rename:
        _fsync_dir(path.parent)


def read_verified(path: str | Path) -> bytes:
    """The payload of a checkpoint file; raises CorruptCheckpointError if it is not complete and intact."""
    data = Path(path).read_bytes()
    if len(data) < HEADER.size:
        raise CorruptCheckpointError(f"{path}: truncated ({len(data)} bytes, shorter than the header)")
    magic, digest, length = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptCheckpointError(f"{path}: not a rethinkgen checkpoint (bad magic)")
    payload = data[HEADER.size:]
    if len(payload) != length:
        raise CorruptCheckpointError(f"{path}: truncated ({len(payload)} of {length} payload bytes)")
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptCheckpointError(f"{path}: sha256 digest mismatch (corrupt)")
    return payload


@dataclass
class LoadedCheckpoint:
    """A verified checkpoint: its payload dict, raw bytes (for sending to a worker) and its origin."""

    payload: dict[str, Any]
    blob: bytes
    path: Path

    @property
    def epoch(self) -> int:
        return int(self.payload["epoch"])

    @property
    def step(self) -> int:
        return int(self.payload["step"])


def load_checkpoint(path: str | Path, run_key: str | None = None) -> tuple[LoadedCheckpoint | None, list[str]]:
    """The newest intact checkpoint among ``path`` and ``path.prev`` (None if neither), and warnings.

    Every corrupt, truncated or foreign file met on the way yields a warning (also issued as a
    :class:`CheckpointWarning`) saying what was found and what is used instead.
    """
    path = Path(path)
    notes: list[str] = []
    for candidate in (path, _prev(path)):
        if not candidate.exists():
            continue
        try:
            blob = read_verified(candidate)
            payload = decode(blob)
            if not isinstance(payload, dict) or payload.get("format") != PAYLOAD_FORMAT:
                raise CorruptCheckpointError(f"{candidate}: unknown checkpoint payload format")
            if run_key is not None and payload.get("run_key") != run_key:
                raise CorruptCheckpointError(f"{candidate}: belongs to run {str(payload.get('run_key'))[:12]}")
        except (CorruptCheckpointError, OSError, RuntimeError, EOFError, ValueError) as exc:
            older = "its previous checkpoint" if candidate == path and _prev(path).exists() else \
                "a restart from scratch"
            notes.append(f"checkpoint {exc} — using {older} instead")
            continue
        return LoadedCheckpoint(payload, blob, candidate), _warn(notes)
    return None, _warn(notes)


def _warn(notes: list[str]) -> list[str]:
    for note in notes:
        warnings.warn(note, CheckpointWarning, stacklevel=3)
    return notes


def remove_checkpoints(path: str | Path) -> None:
    """Delete a run's checkpoint, its previous generation and stray temp files."""
    path = Path(path)
    for p in [path, _prev(path), *path.parent.glob(f"{path.name}.tmp-*")]:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
