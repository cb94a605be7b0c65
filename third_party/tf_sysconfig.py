"""Prints, as JSON, what the Bazel build needs from the installed TensorFlow.

Run by the `tf_configure` repository rule (third_party/tf_configure.bzl) with
the Python that has TensorFlow installed. Every flag comes from tf.sysconfig,
as in setup.py.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402 (after quieting TensorFlow's logging)

json.dump(
    {
        "python": sys.executable,
        "tf_version": tf.__version__,
        "include_dir": tf.sysconfig.get_include(),
        "lib_dir": tf.sysconfig.get_lib(),
        "compile_flags": tf.sysconfig.get_compile_flags(),
        "link_flags": tf.sysconfig.get_link_flags(),
    },
    sys.stdout,
)
