# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The supported TensorFlow releases, first and last (major, minor), and the
releases the scripts install to test them.

2.15 is the last release with tf.estimator. setup.py loads this file alone
(importing the package would need TensorFlow) to refuse other releases at
build time and to write the range into the extras; the package names the
range when no TensorFlow is installed; the scripts read the pins with
`python3 monolith_ops/_tf_supported.py first|last|estimator`. Keep it free
of imports.
"""

TF_SUPPORTED = ((2, 15), (2, 21))

# The releases the tests run on: the newest patch of each end of the range,
# and the tensorflow-estimator release that goes with the first.
TF_TESTED = {"first": "2.15.1", "last": "2.21.0"}
ESTIMATOR_FOR_FIRST = "2.15.0"


def supported_range() -> str:
    """The range as text: "2.15 to 2.21"."""
    (lo_major, lo_minor), (hi_major, hi_minor) = TF_SUPPORTED
    return f"{lo_major}.{lo_minor} to {hi_major}.{hi_minor}"


if __name__ == "__main__":
    import sys

    pins = dict(TF_TESTED, estimator=ESTIMATOR_FOR_FIRST, range=supported_range())
    if len(sys.argv) != 2 or sys.argv[1] not in pins:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(pins)}")
    print(pins[sys.argv[1]])
