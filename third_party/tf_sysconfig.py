# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Prints, as JSON, what the Bazel build needs from the installed TensorFlow.

Run by the `tf_configure` repository rule (third_party/tf_configure.bzl) with
the Python that has TensorFlow installed. Every flag comes from tf.sysconfig,
as in setup.py, and the facts for the build record from the loader's
tensorflow_facts(), as setup.py records them.
"""

import importlib.util
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402 (after quieting TensorFlow's logging)

_spec = importlib.util.spec_from_file_location(
    "monolith_ops_build_loader",
    os.path.join(
        os.path.dirname(os.path.abspath(__file__)), os.pardir, "monolith_ops", "_loader.py"
    ),
)
_loader = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_loader)

json.dump(
    {
        "tf_facts": _loader.tensorflow_facts(),
        "python": sys.executable,
        "tf_version": tf.__version__,
        "include_dir": tf.sysconfig.get_include(),
        "lib_dir": tf.sysconfig.get_lib(),
        "compile_flags": tf.sysconfig.get_compile_flags(),
        "link_flags": tf.sysconfig.get_link_flags(),
    },
    sys.stdout,
)
