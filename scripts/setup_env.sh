#!/usr/bin/env bash
# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
# Creates (or reuses) a virtual environment with a pinned TensorFlow and
# installs monolith_ops into it, compiled against that TensorFlow.
#   MONOLITH_OPS_VENV  the venv folder        (default: .venv)
#   MONOLITH_OPS_TF    the TensorFlow pin     (default: tensorflow== the last
#                      release monolith_ops/_tf_supported.py names; any
#                      distribution, e.g. tensorflow-cpu==2.21.0)
#   MONOLITH_OPS_EXTRA more pip requirements  (default: none)
# Source it: it leaves the venv activated.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${MONOLITH_OPS_VENV:-.venv}"
TF_PIN="${MONOLITH_OPS_TF:-tensorflow==$(python3 monolith_ops/_tf_supported.py last)}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q "$TF_PIN" -r requirements-dev.txt ${MONOLITH_OPS_EXTRA:-}
# No build isolation: the library must be compiled against the TensorFlow
# installed above (setup.py stops under isolation, where it is out of sight),
# with the setuptools of requirements-dev.txt. monolith_ops requires no
# TensorFlow distribution, so this installs nothing else.
# Rebuilt only when the sources or the TensorFlow pin changed since the last
# install into this venv.
stamp="$(echo "$TF_PIN"; cat setup.py pyproject.toml build_config.bzl scripts/build_config.py
         find cc monolith_ops -type f \( -name '*.cc' -o -name '*.h' -o -name '*.cu' \
           -o -name '*.cuh' -o -name '*.py' \) | LC_ALL=C sort | xargs cat)"
stamp="$(printf '%s' "$stamp" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$VENV/.monolith_ops_build" 2>/dev/null)" != "$stamp" ]; then
  pip install -q --no-build-isolation --no-deps --force-reinstall .
  echo "$stamp" > "$VENV/.monolith_ops_build"
fi
python -I -c "import monolith_ops._loader as l; l.ops.load(); print('monolith_ops built for TensorFlow', l.built_tf_version())"
set +euo pipefail
