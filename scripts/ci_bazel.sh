#!/usr/bin/env bash
# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
# CI: builds the op library with Bazel and runs `bazel test`, offline.
#
# Installs Debian's Bazel 4.2.3 and its rules (no download by Bazel itself),
# then builds against the TensorFlow of the venv that scripts/setup_env.sh
# makes (MONOLITH_OPS_VENV, default .venv; created if it has no TensorFlow).
# Safe to run again. Bazel's output root is MONOLITH_OPS_BAZEL_ROOT
# (default /tmp/monolith_ops-bazel), outside the user's home.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

. scripts/apt_ensure.sh
apt_ensure -- bazel-bootstrap bazel-rules-cc bazel-rules-java g++
echo "apt: $((SECONDS - start)) s"

VENV="${MONOLITH_OPS_VENV:-.venv}"
if ! "$VENV/bin/python" -c "import tensorflow" 2>/dev/null; then
  # shellcheck disable=SC1091
  . scripts/setup_env.sh
  set -euo pipefail
fi
PYTHON="$(cd "$VENV/bin" && pwd)/python"
echo "Building against TensorFlow $("$PYTHON" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null) of $PYTHON"

BAZEL=(bazel "--output_user_root=${MONOLITH_OPS_BAZEL_ROOT:-/tmp/monolith_ops-bazel}")
# Stop the Bazel server when done, whatever happens.
trap '"${BAZEL[@]}" shutdown >/dev/null 2>&1 || true' EXIT
"${BAZEL[@]}" test \
  --experimental_repository_disable_download \
  --repo_env=PYTHON_BIN_PATH="$PYTHON" \
  --curses=no --color=no --show_progress_rate_limit=30 \
  //:all //tests/bazel:all
echo "ci_bazel: $((SECONDS - start)) s"
