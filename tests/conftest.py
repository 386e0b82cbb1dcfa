"""Shared fixtures: the repo root, the shared real MNIST (skipped with a reason when absent), one thread, a
read-only folder."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

# Passive OpenMP waits: with the default spinning wait, two threads on a 2-core machine where another
# process holds a core run 15-20x slower (measured; see docs/sections/performance.md). Must precede importing torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"

# Two cores: keep intra-op threads at the machine's size and no more.
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def mnist_dir() -> Path:
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found at {SHARED_MNIST} (only present on the project's machines)")
    return SHARED_MNIST


@pytest.fixture
def one_thread():
    """One intra-op thread for the test, restored after. For small problems that gain nothing from two:
    on a shared 2-core machine two spinning OpenMP threads slow every step many times over, and numbers
    compared within one process must be computed at one thread count. Modules use it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder nobody can write into: chmod 555, or (for root, who ignores modes) `chattr +i`."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if os.access(folder, os.W_OK):
        with contextlib.suppress(OSError, FileNotFoundError):
            immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    try:
        (folder / "probe").touch()
    except OSError:
        yield folder
    else:
        (folder / "probe").unlink()
        pytest.skip("cannot make a read-only folder here (root without chattr)")
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
        folder.chmod(0o755)
