"""Make torch report one CUDA device on a machine without one (never imported by the test suite itself).

    PYTHONPATH=tests/support/fake_cuda:src python -m pytest -q -p no:cacheprovider

runs the default suite as a GPU machine's Python would *decide* (device "auto" -> cuda, sweeps fuse on the
GPU, groups sized by 130 GiB free), while any real CUDA work fails with "Found no NVIDIA driver": every
test that fails this way would train or solve on the GPU when the suite runs with CUDA visible, so it
must name its device (or be a ``gpu``-marked case). Python reads ``sitecustomize`` from PYTHONPATH at
start, so subprocesses (CLI runs, sweep workers) get it too. torch's RNG fork saves the CUDA generators
whenever CUDA is visible, which is harmless on a real GPU: those two calls are answered here.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
try:
    import torch

    torch.cuda.is_available = lambda: True
    torch.cuda.device_count = lambda: 1
    torch.cuda.get_device_name = lambda *args, **kwargs: "FAKE GPU (tests/support/fake_cuda)"
    torch.cuda.mem_get_info = lambda *args, **kwargs: (130 * 2**30, 140 * 2**30)
    torch.cuda.get_rng_state = lambda device="cuda": torch.zeros(16, dtype=torch.uint8)
    torch.cuda.set_rng_state = lambda state, device="cuda": None
except ImportError:  # a Python without torch (e.g. a tool started with this path): nothing to fake
    pass
