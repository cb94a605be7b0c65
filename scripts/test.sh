#!/usr/bin/env bash
# Sets up the venv, builds monolith_ops, and runs the whole test suite.
set -eo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=2 CUDA_VISIBLE_DEVICES=""
# pytest (not python -m pytest) so that tests import the installed package.
exec pytest tests "$@"
