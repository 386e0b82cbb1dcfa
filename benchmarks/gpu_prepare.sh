#!/usr/bin/env bash
# Run HERE (on a machine with PyPI), in the repository root, before the GPU session: what
# benchmarks/gpu_session.sh needs on the GPU machine that its image lacks (nothing can be fetched there).
#   .whl/        mnist1d 0.0.2.post1 (the embedded dataset), kymatio 0.3.0 + appdirs + configparser
#                (wavelet features); Ray is not carried: its wheel alone is 79 MB, over the 64 MiB a call
#                may carry, so the `ray` test skips there.
#   .gpu-carry/  mnist/ (the four IDX .gz files, 11 MB) for the kernel stage of benchmarks/gpu.py,
#                from $MNIST_DIR (default ../shared/data/mnist).
# Both folders are ignored (.gitignore, and .git/info/exclude for older checkouts): they travel to the
# GPU machine only when `carry` names them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-python3}"
exclude="$(git rev-parse --git-path info/exclude)"
for d in /.whl/ /.gpu-carry/; do grep -qxF "$d" "$exclude" 2>/dev/null || echo "$d" >> "$exclude"; done
mkdir -p .whl .gpu-carry
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl mnist1d==0.0.2.post1 kymatio==0.3.0 appdirs==1.4.4 configparser==7.3.0
MNIST_DIR="${MNIST_DIR:-../shared/data/mnist}"
if [ -f "$MNIST_DIR/train-images-idx3-ubyte.gz" ]; then
  mkdir -p .gpu-carry/mnist && install -m 0644 "$MNIST_DIR"/*-ubyte.gz .gpu-carry/mnist/  # writable: reruns overwrite
else
  echo "MNIST not found at $MNIST_DIR: the kernel stage will say it skipped (set MNIST_DIR)"
fi
du -sh .whl .gpu-carry
