# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The Bazel-built op library: loaded through monolith_ops, checked numerically.

Run by `bazel test //tests/bazel:all`, with the Python (and TensorFlow) that
tf_configure found. `//:monolith_ops` puts the package, the Bazel-built
`_monolith_ops.so` and the Bazel-written `_build_info.json` side by side in the
runfiles tree, so the unmodified loader loads the Bazel build.
"""

import importlib.util
import json
import os
import unittest

import numpy as np
import tensorflow as tf

import monolith_ops
from monolith_ops import _loader, clip_ops


def _build_config():
    """build_config.bzl as setup.py reads it (through scripts/build_config.py)."""
    spec = importlib.util.spec_from_file_location("build_config", "scripts/build_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.read("build_config.bzl")


class BazelLibraryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open("build_flags.json") as f:
            cls.build = json.load(f)

    def test_package_and_library_come_from_the_bazel_build(self):
        runfiles = os.path.realpath(os.getcwd())
        package = os.path.realpath(os.path.dirname(monolith_ops.__file__))
        self.assertEqual(
            os.path.join(runfiles, "monolith_ops"),
            package,
            "monolith_ops was not imported from the runfiles",
        )
        library = os.path.realpath(_loader.library_path())
        self.assertIn(os.sep + "bazel-out" + os.sep, library)
        self.assertEqual("Bazel", _loader.build_record()["written_by"])

    def test_build_record_matches_the_running_tensorflow(self):
        self.assertEqual(tf.__version__, _loader.built_tf_version())
        self.assertEqual(tf.__version__, self.build["tf_version"])
        self.assertFalse(_loader.built_with_cuda())
        _loader.check_compatible()
        record = _loader.build_record()
        self.assertEqual(
            _loader.file_facts(_loader.library_path()),
            {k: record[k] for k in ("library_size", "library_sha256")},
        )
        self.assertTrue(record["compiler"])

    def test_loads_every_op(self):
        library = _loader.ops.load()
        for op in (
            "global_l2_reduce",
            "monolith_clip_by_global_norm",
            "monolith_clip_by_global_norm_fused",
        ):
            self.assertTrue(callable(getattr(library, op, None)), op)

    def test_sources_and_flags_match_setup_py(self):
        # setup.py compiles the lists of build_config.bzl, as read here.
        config = _build_config()
        self.assertEqual(config["CPU_SOURCES"], self.build["cpu_sources"])
        self.assertEqual(config["CXX_FLAGS"], self.build["cxx_flags"])
        with open("setup.py") as f:
            setup_py = f.read()
        self.assertIn('CPU_SOURCES = _build_config["CPU_SOURCES"]', setup_py)
        self.assertIn('CXX_FLAGS = _build_config["CXX_FLAGS"]', setup_py)

    def test_global_l2_reduce_matches_numpy(self):
        rng = np.random.default_rng(0)
        for shapes in ([(3,)], [(7, 5), (0,), (1000,), (3, 4, 2)], [(100,)] * 50):
            arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
            want = sum(np.sum(a.astype(np.float64) ** 2) for a in arrays)
            got = _loader.ops.global_l2_reduce([tf.constant(a) for a in arrays]).numpy()
            np.testing.assert_allclose(got, want, rtol=1e-6)

    def test_global_l2_reduce_exact_case(self):
        got = _loader.ops.global_l2_reduce(
            [tf.constant([3.0, 0.0]), tf.constant([[4.0], [12.0]])]
        ).numpy()
        self.assertEqual(169.0, got)

    def test_clip_by_global_norm_matches_numpy(self):
        rng = np.random.default_rng(1)
        arrays = [rng.standard_normal(s).astype(np.float32) for s in [(10, 3), (7,), (2, 2, 2)]]
        norm = np.sqrt(sum(np.sum(a.astype(np.float64) ** 2) for a in arrays))
        for clip_norm in (0.5 * norm, 2.0 * norm):
            clipped, got_norm = clip_ops.clip_by_global_norm(
                [tf.constant(a) for a in arrays], clip_norm
            )
            np.testing.assert_allclose(got_norm.numpy(), norm, rtol=1e-6)
            scale = clip_norm / max(norm, clip_norm)
            for a, c in zip(arrays, clipped):
                np.testing.assert_allclose(c.numpy(), a * scale, rtol=1e-6)

    def test_non_finite_norm_gives_nan(self):
        clipped, norm = clip_ops.clip_by_global_norm(
            [tf.constant([1.0, np.inf]), tf.constant([2.0])], 1.0
        )
        self.assertTrue(np.isinf(norm.numpy()))
        for c in clipped:
            self.assertTrue(np.all(np.isnan(c.numpy())))


if __name__ == "__main__":
    unittest.main()
