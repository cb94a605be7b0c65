# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""A library built for one TensorFlow, loaded under another, fails clearly.

The loader must refuse a library whose build record names another TensorFlow
version (or C++ ABI), with a `TFVersionMismatchError` (an ImportError) that
names what differs and the rebuild command, before it ever loads the library.

Each case loads a copy of a built `monolith_ops` package in a fresh Python
process (the loader loads once per process):

* always: the library built in this venv, with its record rewritten to name
  another TensorFlow release;
* when MONOLITH_OPS_OTHER_BUILD names the `monolith_ops` package folder of a
  venv with another TensorFlow (scripts/ci_tf215.sh sets it, both ways
  between TensorFlow 2.21 and 2.15): that real build, as it is.
"""

import json
import os
import shutil
import textwrap

import pytest
import tensorflow as tf
from conftest import run_python

from monolith_ops import _loader

OTHER_BUILD_ENV = "MONOLITH_OPS_OTHER_BUILD"

# Loads the `monolith_ops` under sys.argv[1] through its public API and prints
# what happened, as JSON.
_PROBE = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, sys.argv[1])
    import tensorflow as tf
    import monolith_ops
    from monolith_ops import _loader
    out = {"tf": tf.__version__, "package": os.path.dirname(monolith_ops.__file__)}
    try:
      from monolith_ops import clip_ops  # loads the library
      clip_ops.global_norm([tf.constant([3.0, 4.0])])
      out["error"] = None
    except Exception as err:
      out["error"] = type(err).__name__
      out["message"] = str(err)
      out["is_import_error"] = isinstance(err, ImportError)
      out["is_mismatch_error"] = isinstance(err, _loader.TFVersionMismatchError)
      out["chained"] = repr(err.__cause__)
    print("PROBE " + json.dumps(out))
    """)


def _installed_package():
    return os.path.dirname(os.path.abspath(_loader.__file__))


def _copy_package(src, dst_root):
    dst = os.path.join(dst_root, "monolith_ops")
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def _record(package):
    """The build record of package."""
    with open(os.path.join(package, _loader.BUILD_RECORD_FILE)) as f:
        return json.load(f)


def _load_in_subprocess(root):
    proc = run_python(["-c", _PROBE, root], cwd=root, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PROBE ")]
    assert proc.returncode == 0 and lines, (
        f"probe failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    return json.loads(lines[-1][len("PROBE ") :])


def _check_mismatch(result, built, root):
    installed = tf.__version__
    assert built != installed
    assert result["tf"] == installed
    # The copy was imported, not the installed package.
    assert os.path.realpath(result["package"]) == os.path.realpath(
        os.path.join(root, "monolith_ops")
    )
    assert result["error"] == "TFVersionMismatchError", result
    assert result["is_mismatch_error"] and result["is_import_error"]
    message = result["message"]
    assert f"built for TensorFlow {built}" in message
    assert f"TensorFlow {installed} is installed" in message
    assert _loader.REBUILD_COMMAND in message


def test_check_compatible_names_both_versions_and_the_rebuild_command():
    with pytest.raises(_loader.TFVersionMismatchError) as info:
        _loader.check_compatible(built="2.15.1", installed="2.21.0")
    message = str(info.value)
    assert "2.15.1" in message and "2.21.0" in message
    assert _loader.REBUILD_COMMAND in message
    assert isinstance(info.value, ImportError)
    _loader.check_compatible(built="2.21.0", installed="2.21.0")


@pytest.mark.slow
def test_library_with_another_tf_version_in_its_record_is_refused(tmp_path):
    package = _copy_package(_installed_package(), str(tmp_path))
    record = _record(package)
    assert record["tf_version"] == tf.__version__
    other = "2.15.1" if tf.__version__ != "2.15.1" else "2.21.0"
    with open(os.path.join(package, _loader.BUILD_RECORD_FILE), "w") as f:
        json.dump(dict(record, tf_version=other), f)
    _check_mismatch(_load_in_subprocess(str(tmp_path)), other, str(tmp_path))


@pytest.mark.slow
def test_library_built_with_another_cxx_abi_is_refused(tmp_path):
    package = _copy_package(_installed_package(), str(tmp_path))
    record = _record(package)
    flag = 1 - record["cxx11_abi_flag"]
    with open(os.path.join(package, _loader.BUILD_RECORD_FILE), "w") as f:
        json.dump(dict(record, cxx11_abi_flag=flag), f)
    result = _load_in_subprocess(str(tmp_path))
    assert result["error"] == "TFVersionMismatchError", result
    assert f"built with _GLIBCXX_USE_CXX11_ABI {flag}" in result["message"]
    assert f"installed TensorFlow has _GLIBCXX_USE_CXX11_ABI {1 - flag}" in result["message"]


@pytest.mark.slow
def test_same_copy_with_the_right_record_loads(tmp_path):
    # The control for the test above: the copy itself is loadable.
    _copy_package(_installed_package(), str(tmp_path))
    result = _load_in_subprocess(str(tmp_path))
    assert result["error"] is None, result


@pytest.mark.skipif(
    not os.environ.get(OTHER_BUILD_ENV),
    reason=f"{OTHER_BUILD_ENV} names no build of another TensorFlow (scripts/ci_tf215.sh sets it)",
)
def test_library_built_under_another_tensorflow_is_refused(tmp_path):
    other_build = os.environ[OTHER_BUILD_ENV]
    assert os.path.isfile(os.path.join(other_build, _loader.LIBRARY_FILE)), (
        f"{OTHER_BUILD_ENV}={other_build} holds no {_loader.LIBRARY_FILE}"
    )
    built = _record(other_build)["tf_version"]
    assert built != tf.__version__, (
        f"{OTHER_BUILD_ENV} was built for this TensorFlow ({built}); it must "
        "name a build of another version"
    )
    _copy_package(other_build, str(tmp_path))
    _check_mismatch(_load_in_subprocess(str(tmp_path)), built, str(tmp_path))
