#!/usr/bin/env bash
# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
# CI: builds monolith_ops with its CUDA kernels (MONOLITH_OPS_CUDA=1) on a
# machine with nvcc and no GPU, and checks that the library
#   1. was built with CUDA and loads under the venv's TensorFlow (CPU wheel),
#   2. has no undefined dynamic cuda* / cu* symbol and needs no CUDA library
#      (the CUDA runtime is linked in statically),
#   3. builds the GPU check's pybind11 module (tests/gpu/check_gpu.py),
#   4. passes the CPU test suite.
# The CUDA build is a wheel made as users make it (pip, no build isolation),
# unpacked into build/ci-cuda/site and put first on PYTHONPATH for the
# checks; the CPU build installed in the venv is left alone. The venv is the
# one scripts/test.sh uses (MONOLITH_OPS_VENV, default .venv), made by
# scripts/setup_env.sh if it is not there yet. Extra arguments go to pytest.
set -eo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

if [ -n "$CUDA_HOME" ]; then
  nvcc="$CUDA_HOME/bin/nvcc"
else
  nvcc="$(command -v nvcc || true)"
fi
if [ ! -x "$nvcc" ]; then
  echo "ci_cuda: nvcc not found (set CUDA_HOME or put nvcc on PATH)" >&2
  exit 1
fi
"$nvcc" --version | tail -n 2

venv="${MONOLITH_OPS_VENV:-.venv}"
if "$venv/bin/python" -c "import tensorflow" >/dev/null 2>&1; then
  # shellcheck disable=SC1091
  . "$venv/bin/activate"
else
  . scripts/setup_env.sh
fi

out=build/ci-cuda
rm -rf "$out"
mkdir -p "$out/wheel" "$out/site"
MONOLITH_OPS_CUDA=1 pip wheel -q --no-build-isolation --no-deps -w "$out/wheel" .
python -m zipfile -e "$out"/wheel/monolith_ops-*.whl "$out/site"
site="$PWD/$out/site"
lib="$site/monolith_ops/_monolith_ops.so"
echo "ci_cuda: CUDA build ready in $((SECONDS - start)) s: $lib"

export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=2 CUDA_VISIBLE_DEVICES=""

# 1. A CUDA build, from the wheel, loads under this TensorFlow. (Run from
# $out: `python -` puts the working folder first on sys.path, and the source
# tree's monolith_ops must not be the one imported.)
(cd "$out" && python - "$site") <<'EOF'
import os
import sys

import tensorflow as tf
import monolith_ops
from monolith_ops import _loader

site = sys.argv[1]
assert os.path.realpath(monolith_ops.__file__).startswith(os.path.realpath(site)), (
    f"imported {monolith_ops.__file__}, not the CUDA build in {site}")
assert _loader.built_with_cuda(), "the build record says \"cuda\": false"
_loader.ops.load()
print(f"ci_cuda: loaded {_loader.library_path()} (CUDA build) under "
      f"TensorFlow {tf.__version__}; GPUs visible: "
      f"{len(tf.config.list_physical_devices('GPU'))}")
EOF

# 2. No CUDA symbol left for the dynamic linker, no CUDA library needed.
undefined="$(nm -D --undefined-only "$lib" | awk '{print $NF}' | grep -E '^(cuda|cu[A-Z])' || true)"
if [ -n "$undefined" ]; then
  echo "ci_cuda: undefined CUDA symbols in $lib:" >&2
  echo "$undefined" >&2
  exit 1
fi
if objdump -p "$lib" | grep -E 'NEEDED +lib(cuda|cudart)' >&2; then
  echo "ci_cuda: $lib needs a CUDA library" >&2
  exit 1
fi
echo "ci_cuda: no undefined cuda*/cu* symbol, no CUDA library needed"

# 3. The GPU check's module (the CUDA core and its pybind11 binding, built
# as scripts/gpu_check.sh builds it on a GPU machine) compiles and imports.
python -c "import pybind11" 2>/dev/null || pip install -q "pybind11==3.1.0"
python tests/gpu/check_gpu.py --build-only --build-dir "$out/gpu-check"

# 4. The CPU test suite against the CUDA build; test_cuda_build.py insists
# that it is one. pytest (not python -m pytest): imports come from PYTHONPATH.
# The CUDA emulation runs three more random schedules than a plain run.
export EMULATION_EXTRA_SCHEDULES="${EMULATION_EXTRA_SCHEDULES:-random:4,random:5,random:6}"
status=0
MONOLITH_OPS_EXPECT_CUDA=1 pytest tests -rfEs "$@" || status=$?
echo "ci_cuda: $((SECONDS - start)) s"
exit "$status"
