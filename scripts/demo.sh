#!/usr/bin/env bash
# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
# The demo training job: sets up the venv with monolith_ops (scripts/setup_env.sh),
# then trains a small recommendation model in a local ps/chief/worker cluster
# (examples/recsys_demo.py).
#   scripts/demo.sh [--steps N] [--timeout SECONDS]
set -eo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=2 CUDA_VISIBLE_DEVICES=""
exec python examples/recsys_demo.py "$@"
