"""Devices, dtypes and memory for the kernel solvers: refuse before allocating what cannot fit.
"""

from __future__ import annotations

import math
import resource

import torch

from rethinkgen.errors import ConfigError, RethinkgenError

BLOCK = 4096  # rows/columns per block of the in-place Cholesky (4,096 keeps MKL's GEMM near peak)
MEMORY_HEADROOM = 0.92  # use at most this fraction of the available memory for an exact solve

def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> cuda when available, else cpu (MPS lacks the float64 linear algebra we need)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"unknown device {device!r}; valid: auto, cpu, cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but torch sees no CUDA device; "
                          "use --device cpu or auto")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``/``"float64"`` (or the torch dtype) -> torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float64):
            raise ConfigError(f"dtype must be float32 or float64, got {dtype}")
        return dtype
    table = {"float32": torch.float32, "float64": torch.float64}
    if dtype not in table:
        raise ConfigError(f"unknown dtype {dtype!r}; valid: float32, float64")
    return table[dtype]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def available_memory(device: torch.device | str = "cpu") -> int:
    """Bytes that can still be allocated: MemAvailable from /proc/meminfo, or free CUDA memory."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def exact_solve_bytes(n: int, dtype: torch.dtype, block: int = BLOCK, packed: bool = True) -> int:
    """Bytes an exact solve of size n needs: the matrix (packed lower block rows: about n²/2 + n·block/2
    entries; dense: n²) plus one (block, n) kernel block and a few block² tiles."""
    item = torch.empty((), dtype=dtype).element_size()
    b = min(block, n)
    matrix = sum(b_i * i1 for b_i, i1 in ((i1 - i0, i1) for i0, i1 in block_bounds(n, b))) if packed else n * n
    return (matrix + n * b + 4 * b * b) * item


def check_exact_memory(n: int, dtype: torch.dtype, device: torch.device | str = "cpu",
                       block: int = BLOCK, extra_bytes: int = 0, packed: bool = True) -> int:
    """Refuse (RethinkgenError) before allocating when an exact solve of size n cannot fit; returns bytes.

    The message names the fixes: float32 (when float64 was asked), the CG solver, the largest n that fits.
    """
    need = exact_solve_bytes(n, dtype, block, packed) + int(extra_bytes)
    have = available_memory(device)
    if need > MEMORY_HEADROOM * have:
        gb = 1e9
        hints = []
        if dtype == torch.float64:
            need32 = exact_solve_bytes(n, torch.float32, block, packed) + int(extra_bytes)
            hints.append(f"--dtype float32 (needs {need32 / gb:.1f} GB)")
        hints.append("--solver cg (memory O(n·block), slower)")
        item = torch.empty((), dtype=dtype).element_size()
        n_fit = int(math.sqrt((2 if packed else 1) * MEMORY_HEADROOM * have / item)) // 1000 * 1000
        hints.append(f"a smaller --n (at most about {max(n_fit, 0):,} here)")
        raise RethinkgenError(
            f"the exact solve of an n = {n:,} kernel system in {_dtype_name(dtype)} needs "
            f"{need / gb:.1f} GB, but only {have / gb:.1f} GB is available on {torch.device(device)}; "
            "use " + ", or ".join(hints))
    return need


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process: CUDA max allocated on GPU, else peak resident set size (ru_maxrss)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def block_bounds(n: int, block: int = BLOCK) -> list[tuple[int, int]]:
    """[(i0, i1), ...]: the row blocks of an n×n matrix, ``block`` rows each (the last one shorter)."""
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    return [(i0, min(i0 + block, n)) for i0 in range(0, n, block)]
