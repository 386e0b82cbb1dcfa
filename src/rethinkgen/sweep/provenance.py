"""Provenance of a run: which code, machine and torch produced it (recorded in the results store)."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path

__all__ = ["environment"]


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, str]:
    """code_version (``git describe`` of the source tree, else the package version), hardware, torch."""
    import torch

    code = None
    src = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=src, timeout=5,
                             capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            code = f"git:{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    if code is None:
        try:
            from importlib.metadata import version

            code = f"rethinkgen {version('rethinkgen')}"
        except Exception:  # not installed as a distribution
            code = "rethinkgen (unknown version)"
    parts = [platform.platform(), f"{os.cpu_count()} CPUs", platform.processor() or platform.machine()]
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}")
    return {"code_version": code, "hardware": ", ".join(p for p in parts if p),
            "torch_version": torch.__version__}
