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


def _gpu_module():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return gpu


def _gone(pid: int) -> bool:
    """The process has exited (absent, or a zombie waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_a_stage_stopped_at_its_cap_takes_its_whole_process_group_along(tmp_path):
    """benchmarks/gpu.py kills a stage's whole process group at its cap: a sweep's or a DataLoader's
    workers must not go on using the GPU during the next stage (or the session's default suite)."""
    import time

    gpu = _gpu_module()
    pid_file = tmp_path / "grandchild.pid"
    body = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            f"open({str(pid_file)!r}, 'w').write(str(p.pid)); print('started', flush=True); time.sleep(120)")
    t0 = time.monotonic()
    code, out, _ = gpu.run_capped([sys.executable, "-c", body], cap=3, capture=True)
    assert code == "timeout" and "started" in out and time.monotonic() - t0 < 30
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while not _gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(grandchild), "the stage's own child survived the cap"
    assert gpu.run_capped([sys.executable, "-c", "print('ok')"], cap=30, capture=True)[:2] == (0, "ok\n")


def test_a_stage_may_use_what_the_stages_before_it_left_but_not_the_later_shares():
    gpu = _gpu_module()
    stages = list(gpu.SHARES)
    assert sum(gpu.SHARES.values()) == 1.0 or abs(sum(gpu.SHARES.values()) - 1.0) < 1e-9
    budget = 200.0
    later = sum(gpu.SHARES[s] for s in stages[1:]) * budget
    assert gpu.cap_of(stages, 0, budget, budget) == budget - later  # the first: its own share
    assert gpu.cap_of(stages, 1, budget - 5.0, budget) == budget - 5.0 - later + gpu.SHARES[stages[1]] * budget
    assert gpu.cap_of(stages, len(stages) - 1, 42.0, budget) == 42.0  # the last: all that is left
    assert gpu.cap_of(stages, 0, 1.0, budget) == gpu.MIN_CAP  # never below the minimum
