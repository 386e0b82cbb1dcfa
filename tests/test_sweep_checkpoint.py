"""Checkpoints: atomic writes, detection of truncated or corrupt files, fallback to the previous one."""

from __future__ import annotations

import pytest
import torch

from rethinkgen.sweep.checkpoint import (
    HEADER,
    CheckpointWarning,
    CorruptCheckpointError,
    decode,
    encode,
    load_checkpoint,
    make_payload,
    read_verified,
    remove_checkpoints,
    write_atomic,
)


def payload(epoch: int) -> dict:
    state = {"model": {"w": torch.full((3, 4), float(epoch))}, "epoch": epoch, "metrics": [{"a": 1.0}]}
    row = {"epoch": epoch, "step": 10 * epoch, "train_acc": 0.5}
    return make_payload("k" * 64, row, [[10 * epoch, 0.25]], state)


def test_roundtrip_and_previous_generation(tmp_path):
    path = tmp_path / "run.pt"
    write_atomic(path, encode(payload(1)))
    write_atomic(path, encode(payload(2)))
    loaded, notes = load_checkpoint(path, "k" * 64)
    assert notes == [] and loaded.epoch == 2 and loaded.step == 20 and loaded.path == path
    assert torch.equal(loaded.payload["state"]["model"]["w"], torch.full((3, 4), 2.0))
    assert decode(read_verified(path.with_name("run.pt.prev")))["epoch"] == 1
    assert decode(loaded.blob)["row"]["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt", "run.pt.prev"]  # no temp file left


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_with_a_warning(tmp_path, damage):
    path = tmp_path / "run.pt"
    write_atomic(path, encode(payload(1)))
    write_atomic(path, encode(payload(2)))
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(b"\x00" * HEADER.size + b"more")
    with pytest.raises(CorruptCheckpointError):
        read_verified(path)
    with pytest.warns(CheckpointWarning, match="using its previous checkpoint instead"):
        loaded, notes = load_checkpoint(path)
    assert loaded.epoch == 1 and len(notes) == 1


def test_both_damaged_or_foreign_means_restart_from_scratch(tmp_path):
    path = tmp_path / "run.pt"
    write_atomic(path, encode(payload(1)))
    write_atomic(path, encode(payload(2)))
    path.write_bytes(path.read_bytes()[:100])
    prev = path.with_name("run.pt.prev")
    prev.write_bytes(prev.read_bytes()[:-1])
    with pytest.warns(CheckpointWarning) as caught:
        loaded, notes = load_checkpoint(path)
    assert loaded is None and len(notes) == 2
    assert "previous checkpoint" in notes[0] and "restart from scratch" in notes[1]
    assert [str(w.message) for w in caught] == notes

    write_atomic(path, encode(payload(3)))
    with pytest.warns(CheckpointWarning) as caught:
        assert load_checkpoint(path, run_key="x" * 64)[0] is None
    assert "belongs to run kkkk" in str(caught[0].message)


def test_missing_files_give_none_without_warnings(tmp_path, recwarn):
    assert load_checkpoint(tmp_path / "none.pt") == (None, [])
    assert not recwarn.list


def test_crash_between_renames_keeps_a_complete_checkpoint(tmp_path):
    """Simulate a crash after the current file became .prev but before the new one was renamed in."""
    path = tmp_path / "run.pt"
    write_atomic(path, encode(payload(1)))
    path.rename(path.with_name("run.pt.prev"))
    (tmp_path / "run.pt.tmp-123").write_bytes(b"half written")
    loaded, notes = load_checkpoint(path)
    assert loaded.epoch == 1 and notes == []
    remove_checkpoints(path)
    assert list(tmp_path.iterdir()) == []
