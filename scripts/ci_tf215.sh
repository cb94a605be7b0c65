#!/usr/bin/env bash
# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
# CI: the whole test suite on the first supported TensorFlow (2.15, the last
# release with tf.estimator) with its tensorflow-estimator, in a venv of its
# own; the releases are those monolith_ops/_tf_supported.py names.
#
# Also loads the library built under one TensorFlow with the other, both ways
# (tests/test_version_mismatch.py): the 2.21 build of MONOLITH_OPS_MAIN_VENV
# (default .venv, made by scripts/test.sh, or here if missing) under 2.15, and
# the 2.15 build under 2.21. Extra arguments go to the 2.15 pytest run.
set -eo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
MAIN_VENV="${MONOLITH_OPS_MAIN_VENV:-.venv}"
TF215_VENV="${MONOLITH_OPS_TF215_VENV:-.venv-tf215}"

# The monolith_ops package folder installed in venv $1 (not the source tree).
package_dir() {
  "$1/bin/python" -I -c \
    'import os, monolith_ops; print(os.path.dirname(monolith_ops.__file__))'
}

if ! package_dir "$MAIN_VENV" >/dev/null 2>&1; then
  MONOLITH_OPS_VENV="$MAIN_VENV" bash scripts/setup_env.sh
fi
main_build="$(package_dir "$MAIN_VENV")"

MONOLITH_OPS_VENV="$TF215_VENV" \
MONOLITH_OPS_TF="tensorflow==$(python3 monolith_ops/_tf_supported.py first)" \
MONOLITH_OPS_EXTRA="tensorflow-estimator==$(python3 monolith_ops/_tf_supported.py estimator)" \
  bash scripts/setup_env.sh
tf215_build="$(package_dir "$TF215_VENV")"
echo "ci_tf215: venvs ready in $((SECONDS - start)) s"

export TF_CPP_MIN_LOG_LEVEL=2 CUDA_VISIBLE_DEVICES=""
status=0
# pytest (not python -m pytest) so that tests import the installed package.
MONOLITH_OPS_REQUIRE_ESTIMATOR=1 MONOLITH_OPS_OTHER_BUILD="$main_build" \
  "$TF215_VENV/bin/pytest" tests -rfEs "$@" || status=$?
MONOLITH_OPS_OTHER_BUILD="$tf215_build" \
  "$MAIN_VENV/bin/pytest" tests/test_version_mismatch.py -rfEs || status=$?
echo "ci_tf215: $((SECONDS - start)) s"
exit "$status"
