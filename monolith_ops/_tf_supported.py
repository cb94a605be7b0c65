# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The supported TensorFlow releases, first and last (major, minor).

2.15 is the last release with tf.estimator. setup.py loads this file alone
(importing the package would need TensorFlow) to refuse other releases at
build time and to write the range into the extras; the package names the
range when no TensorFlow is installed. Keep it free of imports.
"""

TF_SUPPORTED = ((2, 15), (2, 21))


def supported_range() -> str:
    """The range as text: "2.15 to 2.21"."""
    (lo_major, lo_minor), (hi_major, hi_minor) = TF_SUPPORTED
    return f"{lo_major}.{lo_minor} to {hi_major}.{hi_minor}"
