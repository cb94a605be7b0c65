#!/usr/bin/env bash
# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
# Sets up the venv, builds monolith_ops, and runs the tests of a tier:
#   MONOLITH_OPS_TESTS  fast (default): every test not marked slow or cluster;
#                       slow: only those; all: the whole suite.
# Arguments go to pytest.
set -eo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh
# tf_keras (Keras 2) for the Keras 2 tests, the release of the installed
# TensorFlow. --no-deps: tf-keras requires a tensorflow, and pip would replace
# the pinned one with whatever the newest tf-keras wants.
tf_minor="$(python -c 'import importlib.metadata as m, sys
for d in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
    try:
        print(".".join(m.version(d).split(".")[:2])); sys.exit()
    except m.PackageNotFoundError:
        pass')"
# The Keras 2 tests then fail, not skip, where tf_keras is missing.
if [ -n "$tf_minor" ]; then
  pip install -q --no-deps "tf-keras==${tf_minor}.*"
  export MONOLITH_OPS_EXPECT_TF_KERAS=1
fi
export TF_CPP_MIN_LOG_LEVEL=2 CUDA_VISIBLE_DEVICES=""
case "${MONOLITH_OPS_TESTS:-fast}" in
  fast) tier=(-m "not slow and not cluster") ;;
  slow) tier=(-m "slow or cluster") ;;
  all) tier=() ;;
  *) echo "test.sh: MONOLITH_OPS_TESTS is fast, slow or all, not '$MONOLITH_OPS_TESTS'" >&2
     exit 2 ;;
esac
# pytest (not python -m pytest) so that tests import the installed package.
exec pytest tests "${tier[@]}" "$@"
