#!/usr/bin/env bash
# The one prepared script a GPU session runs with the device tool (issue 10's acceptance, in one go):
#
#   here, once:   bash benchmarks/gpu_prepare.sh          # wheels into .whl/, MNIST into .gpu-carry/mnist
#   on the GPU:   run(command="bash benchmarks/gpu_session.sh", carry=[".whl", ".gpu-carry"], timeout_s=600)
#
# In order, each part under its own `timeout`, everything written to $OUT (5 files come back):
#   1. the carried wheels (mnist1d, kymatio and its two needs) installed into /tmp/site, if present;
#   2. `pytest -m gpu` (tests/test_gpu.py: fused sweeps, CUDA resume, numerics refusal)  -> pytest_gpu.txt
#   3. benchmarks/gpu.py (its own 5-minute budget, one time cap per stage)          -> gpu_bench.json/.txt
#   4. the default suite with CUDA visible (pytest-xdist when there)                 -> pytest_default.txt
# and session.log with all of it. PART=tests (2 and 4) or PART=bench (3), or the first argument, reruns
# a part alone. Caps (seconds) sum to 570, inside the tool's 600 per command. GPU_BENCH_ARGS=--smoke
# PY=python tries it on a machine without a GPU.
set -u -o pipefail
PART="${1:-${PART:-all}}"
OUT="${OUT:-/tmp/rethinkgen-gpu-session}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
PY="${PY:-python3}"
exec > >(tee -a "$OUT/session.log") 2>&1

echo "== rethinkgen GPU session: part $PART, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if ls .whl/*.whl >/dev/null 2>&1; then
  timeout 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
  echo "wheels: $(ls .whl | tr '\n' ' ')"
else
  echo "wheels: none carried (.whl/ absent): tests needing mnist1d or kymatio will fail; run benchmarks/gpu_prepare.sh"
fi
nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not available"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'device',
torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, 'threads', torch.get_num_threads())"

status=()
run_part() {  # name cap command...
  local name=$1 cap=$2; shift 2
  local t0=$SECONDS
  echo "== $name (cap ${cap} s): $*"
  timeout --kill-after=10 "$cap" "$@"
  local code=$?
  [ $code -eq 124 ] && echo "== $name: TIMED OUT after ${cap} s"
  echo "== $name: exit $code in $((SECONDS - t0)) s"
  status+=("$name=$code")
}

if [ "$PART" = all ] || [ "$PART" = tests ]; then
  run_part "pytest -m gpu" 100 bash -o pipefail -c "'$PY' -m pytest -q -p no:cacheprovider -m gpu tests/ 2>&1 | tee '$OUT/pytest_gpu.txt'"
fi
if [ "$PART" = all ] || [ "$PART" = bench ]; then
  MNIST_ARG=()
  [ -d .gpu-carry/mnist ] && MNIST_ARG=(--mnist-dir .gpu-carry/mnist)
  # shellcheck disable=SC2086  # GPU_BENCH_ARGS: extra options, e.g. --smoke to try this script on a CPU
  run_part "benchmarks/gpu.py" 300 "$PY" benchmarks/gpu.py --out "$OUT" --budget 270 \
    ${MNIST_ARG[@]+"${MNIST_ARG[@]}"} ${GPU_BENCH_ARGS:-}
fi
if [ "$PART" = all ] || [ "$PART" = tests ]; then
  XDIST=()
  "$PY" -c "import xdist" 2>/dev/null && XDIST=(-n 8 --dist loadfile)
  run_part "default suite (CUDA visible)" 160 bash -o pipefail -c \
    "'$PY' -m pytest -q -p no:cacheprovider ${XDIST[*]} tests/ 2>&1 | tee '$OUT/pytest_default.txt'"
fi
echo "== done: ${status[*]}"
