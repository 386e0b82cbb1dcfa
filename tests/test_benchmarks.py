"""The benchmark scripts run end to end (so they cannot rot); their numbers are printed, never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_benchmark_runs_every_stage_in_smoke_mode(tmp_path):
    """benchmarks/gpu.py --smoke: tiny sizes on the CPU (device="cpu" whatever the machine has)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--smoke", "--out", str(tmp_path),
                           "--data-dir", str(tmp_path / "cifar")], env=env, capture_output=True, text=True,
                          timeout=800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert results["machine"]["smoke"] is True
    assert results["common"]["mlp_1x512.w1"] > 0 and results["common"]["mlp_1x512.w2"] > 0
    trainer = results["trainer"]["mlp_1x512"]
    assert trainer["train_sps"] > trainer["epoch_sps"] > 0 and trainer["numerics"].startswith("cpu, float32")
    for k in (2, 3):
        fused = results["fused"][f"mlp_1x512.x{k}"]
        assert fused["sps_all_runs"] > 0 and fused["statuses"] == ["max_epochs"] and fused["estimate_gb"] > 0
    figure1 = results["figure1"]["workers_per_gpu_1"]
    assert figure1["exit"] == 0 and figure1["statuses"] == {"max_epochs": 11} and figure1["sweep_s"] > 0
    # the grid epoch from the store: on the CPU the 11 runs train alone (--fuse auto), one after another,
    # so it is the sum of their 11 epoch-1 times; less than the whole command
    assert figure1["epoch1_runs"] == {"mlp_1x512": 11} and figure1["epoch1_groups"] == {"mlp_1x512": 11}
    assert 0 < figure1["grid_epoch_s"] == figure1["epoch1_s"]["mlp_1x512"] < figure1["command_s"]
    assert results["kernel"]["n_train"] == 300 and 0 <= results["kernel"]["test_error"] < 0.9
    text = (tmp_path / "gpu_bench.txt").read_text()
    assert "SMOKE" in text and "targets (issue 10" in text and "| mlp_1x512 |" in text
