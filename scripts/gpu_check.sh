#!/usr/bin/env bash
# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
# The GPU check, as one command on a machine with an NVIDIA GPU, nvcc,
# pybind11, numpy and torch (TensorFlow is not needed):
#
#   bash scripts/gpu_check.sh [OUT_DIR]        # default OUT_DIR: build/gpu_check
#
# It builds the framework-free CUDA core (cc/core/clip_core_gpu.cu) with
# its pybind11 binding for the device's architecture and runs
# tests/gpu/check_gpu.py twice: first small (--quick --skip-bench), so that a
# broken build or a hang shows within minutes, then in full, with the
# benchmark. It writes to OUT_DIR:
#   machine.txt   the date, nvidia-smi, nvcc's and the Python packages' versions
#   quick.log     the small run's output
#   full.log      the full run's output (absent when the small run hung)
#   gpu_check.md  the full run's tables, which go to docs/gpu_check.md
# Each run has a time limit, in seconds: GPU_CHECK_QUICK_S (default 240) and
# GPU_CHECK_FULL_S (default 420). PYTHON names the interpreter (default
# python3). Exits 0 only when both runs pass.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/gpu_check}"
python="${PYTHON:-python3}"
mkdir -p "$out"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT

{
  date -u
  nvidia-smi || echo "gpu_check: nvidia-smi failed"
  nvcc --version || echo "gpu_check: nvcc not on PATH"
  "$python" -c 'import sys; print("python", sys.version.split()[0])'
  for module in torch pybind11 numpy; do
    "$python" -c "import $module; print('$module', $module.__version__)" ||
      echo "gpu_check: $module cannot be imported"
  done
} >"$out/machine.txt" 2>&1

# Runs check_gpu.py with the given arguments under a time limit; the output
# goes to the terminal and to OUT_DIR/NAME.log. Returns check_gpu.py's exit
# status, 124 when the limit was reached.
run() {
  local name=$1 limit=$2
  shift 2
  echo "=== gpu_check: $name run (limit $limit s) ==="
  PYTHONUNBUFFERED=1 timeout "$limit" "$python" tests/gpu/check_gpu.py \
    --build-dir "$build" "$@" 2>&1 | tee "$out/$name.log"
  local status=${PIPESTATUS[0]}
  if [ "$status" = 124 ]; then
    echo "=== gpu_check: $name run stopped at its limit of $limit s ==="
  fi
  echo "=== gpu_check: $name run exit status $status ==="
  return "$status"
}

status=0
run quick "${GPU_CHECK_QUICK_S:-240}" --quick --skip-bench
quick=$?
[ "$quick" = 0 ] || status=1
if [ "$quick" = 124 ]; then
  echo "gpu_check: the small run hung; the full run is not started" >&2
else
  run full "${GPU_CHECK_FULL_S:-420}" --out "$out/gpu_check.md" || status=1
fi
exit "$status"
