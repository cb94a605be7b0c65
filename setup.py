"""Builds monolith_ops and its op library against the installed TensorFlow.

Every compile and link flag for TensorFlow comes from tf.sysconfig, so the
library matches the TensorFlow it is built with. Build without isolation,
after installing TensorFlow:

    pip install --no-build-isolation .

(With build isolation pip would compile against a fresh TensorFlow of its own
choosing, not the one the library will run with.)

CUDA kernels are compiled only when MONOLITH_OPS_CUDA=1; see cc/README.md.
"""
import os
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
LIB_NAME = "_monolith_ops.so"
BUILD_INFO = "_build_info.py"  # TF version record, read by monolith_ops/_loader.py
# Supported TensorFlow releases (SPEC: 2.15, the last with tf.estimator, to 2.21).
TF_REQUIREMENT = "tensorflow>=2.15,<2.22"

CPU_SOURCES = [
    "cc/ops/clip_ops.cc",
    "cc/kernels/clip_core.cc",
    "cc/kernels/clip_kernels.cc",
]
# Flags of our own, on top of tf.sysconfig's. -ffp-contract=off keeps the
# dispatched AVX2 and baseline loops bitwise identical (no FMA contraction).
CXX_FLAGS = ["-O3", "-fPIC", "-ffp-contract=off", "-Wno-deprecated-declarations"]


def _tensorflow():
    try:
        import tensorflow as tf  # noqa: WPS433 (build-time import)
    except ImportError as err:
        raise SystemExit(
            "monolith_ops builds against the installed TensorFlow, and none was "
            "found. Install TensorFlow first, then build without isolation:\n"
            "    pip install 'tensorflow==2.21.*'\n"
            "    pip install --no-build-isolation .") from err
    return tf


class BuildOpLibrary(build_ext):
    """Compiles cc/ into monolith_ops/_monolith_ops.so with TF's flags."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def get_ext_filename(self, ext_name):
        return os.path.join(*ext_name.split(".")[:-1], LIB_NAME)

    def build_extension(self, ext):
        tf = _tensorflow()
        ext.include_dirs = [HERE]
        ext.extra_compile_args = CXX_FLAGS + tf.sysconfig.get_compile_flags()
        ext.extra_link_args = tf.sysconfig.get_link_flags()
        super().build_extension(ext)
        # The loader reads this record beside the library before loading it.
        with open(self._build_info_path(ext), "w") as f:
            f.write('"""Written by setup.py when the op library was built."""\n')
            f.write(f"TF_VERSION = {tf.__version__!r}\n")
            f.write(f"CUDA = {False!r}\n")

    def _build_info_path(self, ext):
        return os.path.join(os.path.dirname(self.get_ext_fullpath(ext.name)),
                            BUILD_INFO)

    def copy_extensions_to_source(self):
        # An in-place build copies the library into the tree: its record too.
        super().copy_extensions_to_source()
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            inplace_lib, built_lib = self._get_inplace_equivalent(build_py, ext)
            self.copy_file(os.path.join(os.path.dirname(built_lib), BUILD_INFO),
                           os.path.join(os.path.dirname(inplace_lib), BUILD_INFO),
                           level=self.verbose)


setup(
    name="monolith_ops",
    version="0.1.0",
    description="Fused global-norm gradient clipping, barrier and restore hooks "
                "for TensorFlow, from ByteDance's Monolith.",
    packages=find_packages(include=["monolith_ops", "monolith_ops.*"]),
    ext_modules=[Extension("monolith_ops._monolith_ops", CPU_SOURCES,
                           language="c++")],
    cmdclass={"build_ext": BuildOpLibrary},
    install_requires=[TF_REQUIREMENT, "numpy"],
    python_requires=">=3.9",
    zip_safe=False,
)
