#!/usr/bin/env bash
# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
# CI: the tree is formatted and lint-clean.
#   Python: ruff (rules and format settings in pyproject.toml)
#   C++/CUDA: clang-format (style in .clang-format)
# The pinned tools go into their own venv (MONOLITH_OPS_LINT_VENV, default
# .venv-lint). To fix what this reports:
#   .venv-lint/bin/ruff check --fix . && .venv-lint/bin/ruff format .
#   git ls-files '*.cc' '*.h' '*.cu' '*.cuh' '*.cpp' | xargs .venv-lint/bin/clang-format -i
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MONOLITH_OPS_LINT_VENV:-.venv-lint}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/pip" install -q -r requirements-lint.txt
status=0
echo "ruff check"
"$VENV/bin/ruff" check . || status=1
echo "ruff format --check"
"$VENV/bin/ruff" format --check . || status=1
echo "clang-format --dry-run --Werror"
git ls-files -z '*.cc' '*.h' '*.cu' '*.cuh' '*.cpp' |
  xargs -0 "$VENV/bin/clang-format" --dry-run --Werror || status=1
exit "$status"
