#!/usr/bin/env bash
# The one prepared script a GPU session runs with the device tool (issue 10's acceptance, in one go):
#
#   here, once:   bash benchmarks/gpu_prepare.sh          # wheels into .whl/, MNIST into .gpu-carry/mnist
#   on the GPU:   run(command="bash benchmarks/gpu_session.sh", carry=[".whl", ".gpu-carry"], timeout_s=600)
#
# In order, each part under its own `timeout` (the whole process group is killed at the cap), everything
# written to $OUT (5 files come back: the device tool returns at most 8):
#   1. the carried wheels (mnist1d, kymatio and its two needs) installed into /tmp/site, if present;
#   2. `pytest -m gpu` (tests/test_gpu.py and the CUDA cases of test_fused/test_preprocess)   -> pytest_gpu.txt
#   3. benchmarks/gpu.py (its own budget, stages capped inside it)                           -> gpu_bench.json/.txt
#   4. the default suite with CUDA visible (pytest-xdist when there)                         -> pytest_default.txt
# and session.log with all of it. Each test has its own time limit (pytest-timeout), so one hanging test
# fails alone; tests are listed one per line as they end (-v), so a part stopped at its cap still says
# which passed. The caps end the script by DEADLINE (585 s), inside the tool's 600 s per command; the
# last part gets what is left. Expected on an H200: about 60 s, 265 s and 60-90 s (docs/performance.md).
# PART=tests (2 and 4) or PART=bench (3), or the first argument, reruns a part alone. PART=extra (not in
# `all`: a second device call, when the first left time) runs the step table and the ImageNet pipeline:
#   5. benchmarks/gpu_steps.py: eager vs static vs captured steps, fp32 vs bf16  -> gpu_steps.json/.txt
#   6. benchmarks/imagenet_pipeline.py --device cuda (Inception V3 at 299, issue 13's target) -> imagenet.txt
# GPU_BENCH_ARGS=--smoke PY=python tries it on a machine without a GPU (PART=extra: EXTRA_DEVICE=cpu and
# small STEPS_ARGS / PIPELINE_ARGS).
set -u -o pipefail
PART="${1:-${PART:-all}}"
OUT="${OUT:-/tmp/rethinkgen-gpu-session}"
DEADLINE="${DEADLINE:-585}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
PY="${PY:-python3}"
exec > >(tee -a "$OUT/session.log") 2>&1

echo "== rethinkgen GPU session: part $PART, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if ls .whl/*.whl >/dev/null 2>&1; then
  # appended to the path: the carried wheels are packages the image lacks (configparser's backport lives
  # under backports/ and shadows nothing)
  timeout 20 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
  echo "wheels: $(ls .whl | tr '\n' ' ')"
else
  echo "wheels: none carried (.whl/ absent): tests needing mnist1d or kymatio will fail; run benchmarks/gpu_prepare.sh"
fi
timeout 10 nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not available"
timeout 30 "$PY" - <<'EOF'
import importlib.metadata as md, os, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "threads", torch.get_num_threads(),
      "cores", os.cpu_count())
names = ("torchvision numpy scipy typer click rich matplotlib tensorboard pytest pytest-xdist pytest-timeout "
         "mnist1d kymatio ray").split()
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "-"
print("packages:", ", ".join(f"{n} {version(n)}" for n in names))
EOF

status=()
run_part() {  # name cap command...: at most cap seconds, and never past DEADLINE
  local name=$1 cap=$2; shift 2
  local left=$((DEADLINE - SECONDS - 5))
  [ "$cap" -gt "$left" ] && cap=$left
  if [ "$cap" -lt 20 ]; then
    echo "== $name: skipped, only ${left} s left before the ${DEADLINE} s deadline"
    status+=("$name=skipped")
    return
  fi
  local t0=$SECONDS
  echo "== $name (cap ${cap} s, at ${SECONDS} s): $*"
  timeout --kill-after=5 "$cap" "$@"
  local code=$?
  [ $code -eq 124 ] || [ $code -eq 137 ] && echo "== $name: STOPPED at its cap of ${cap} s"
  echo "== $name: exit $code in $((SECONDS - t0)) s"
  status+=("$name=$code")
}

XDIST_GPU="" XDIST_ALL=""  # pytest-xdist (in the image): the gpu tests on 4 workers, the suite on 8 (16 cores)
"$PY" -c "import xdist" 2>/dev/null && XDIST_GPU="-n 4 --dist load" XDIST_ALL="-n 8 --dist loadfile"
TIMEOUT_GPU="" TIMEOUT_ALL=""  # pytest-timeout (in the image): one hanging test fails alone
"$PY" -c "import pytest_timeout" 2>/dev/null && TIMEOUT_GPU="--timeout 60" TIMEOUT_ALL="--timeout 90"
PYTEST="'$PY' -m pytest -p no:cacheprovider -v -rfEs --durations=20"
if [ "$PART" = all ] || [ "$PART" = tests ]; then
  run_part "pytest -m gpu" 100 bash -o pipefail -c \
    "$PYTEST $TIMEOUT_GPU $XDIST_GPU -m gpu tests/ 2>&1 | tee '$OUT/pytest_gpu.txt'"
fi
if [ "$PART" = all ] || [ "$PART" = bench ]; then
  MNIST_ARG=()
  [ -d .gpu-carry/mnist ] && MNIST_ARG=(--mnist-dir .gpu-carry/mnist)
  # its own budget inside its cap: 265 s of 280, less when the parts before it left less (its stages
  # share the budget out, and its table is written at the end)
  BENCH_BUDGET=$((DEADLINE - SECONDS - 5 - 15)); [ "$BENCH_BUDGET" -gt 265 ] && BENCH_BUDGET=265
  # shellcheck disable=SC2086  # GPU_BENCH_ARGS: extra options, e.g. --smoke to try this script on a CPU
  run_part "benchmarks/gpu.py" 280 "$PY" benchmarks/gpu.py --out "$OUT" --budget "$BENCH_BUDGET" \
    ${MNIST_ARG[@]+"${MNIST_ARG[@]}"} ${GPU_BENCH_ARGS:-}
fi
if [ "$PART" = all ] || [ "$PART" = tests ]; then
  run_part "default suite (CUDA visible)" 180 bash -o pipefail -c \
    "$PYTEST $TIMEOUT_ALL $XDIST_ALL tests/ 2>&1 | tee '$OUT/pytest_default.txt'"
fi
if [ "$PART" = extra ]; then
  run_part "benchmarks/gpu_steps.py" 300 bash -o pipefail -c \
    "'$PY' benchmarks/gpu_steps.py --device ${EXTRA_DEVICE:-cuda} ${STEPS_ARGS:-} --json '$OUT/gpu_steps.json' 2>&1 | tee '$OUT/gpu_steps.txt'"
  run_part "benchmarks/imagenet_pipeline.py" 240 bash -o pipefail -c \
    "'$PY' benchmarks/imagenet_pipeline.py --device ${EXTRA_DEVICE:-cuda} ${PIPELINE_ARGS:-} 2>&1 | tee '$OUT/imagenet.txt'"
fi
echo "== done at ${SECONDS} s: ${status[*]}"
