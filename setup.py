# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Builds monolith_ops and its op library against the installed TensorFlow.

Every compile and link flag for TensorFlow comes from tf.sysconfig, so the
library matches the TensorFlow it is built with. Build without isolation,
after installing TensorFlow:

    pip install --no-build-isolation .

(With build isolation pip would compile against a fresh TensorFlow of its own
choosing, not the one the library will run with.)

CUDA kernels are compiled only when MONOLITH_OPS_CUDA=1 and nvcc is found
(in $CUDA_HOME/bin, else on PATH); see docs/gpu.md:

    MONOLITH_OPS_CUDA=1 pip install --no-build-isolation .

The CUDA runtime is linked statically, so the library still loads on machines
without CUDA and under TensorFlow's CPU wheel.

Metadata is in pyproject.toml; the version is monolith_ops.__version__. The
package requires no TensorFlow distribution: tensorflow, tensorflow-cpu,
tensorflow-intel, tf-nightly and conda's builds all provide the same
`tensorflow` module, and the library is compiled against whichever one is
installed. The build checks that one against TF_SUPPORTED instead, and stops
under build isolation, where the installed TensorFlow is out of sight.
"""

import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
LIB_NAME = "_monolith_ops.so"
BUILD_INFO = "_build_info.json"  # build record, read by monolith_ops/_loader.py


def _load_tf_supported():
    """monolith_ops/_tf_supported.py, the one source of the supported range,
    loaded as a lone file: importing the package would need TensorFlow."""
    path = os.path.join(HERE, "monolith_ops", "_tf_supported.py")
    spec = importlib.util.spec_from_file_location("_monolith_ops_tf_supported", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Supported TensorFlow releases, first and last (major, minor). The build
# refuses others; the extras monolith_ops[tensorflow] and
# monolith_ops[tensorflow-cpu] ask for this range.
_tf_supported = _load_tf_supported()
TF_SUPPORTED = _tf_supported.TF_SUPPORTED
_supported_range = _tf_supported.supported_range
TF_SPECIFIER = (
    f">={TF_SUPPORTED[0][0]}.{TF_SUPPORTED[0][1]},<{TF_SUPPORTED[1][0]}.{TF_SUPPORTED[1][1] + 1}"
)
TF_EXTRAS = {name: [name + TF_SPECIFIER] for name in ("tensorflow", "tensorflow-cpu")}
# pyproject.toml's license metadata (PEP 639) needs this setuptools.
SETUPTOOLS_MIN = (77, 0)
# setup.py commands that build the library or a wheel's metadata: each checks
# first that TensorFlow is in sight (see check_build_environment).
BUILD_COMMANDS = {
    "build",
    "build_ext",
    "bdist_wheel",
    "dist_info",
    "install",
    "develop",
    "editable_wheel",
    "bdist_egg",
}


def _load_build_config():
    """build_config.bzl, the one source of the source lists and compiler
    flags (BUILD loads it too), read by scripts/build_config.py, which is
    loaded as a lone file."""
    path = os.path.join(HERE, "scripts", "build_config.py")
    spec = importlib.util.spec_from_file_location("_monolith_ops_build_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.read(os.path.join(HERE, "build_config.bzl"))


# What is compiled, and with which flags of our own (on top of
# tf.sysconfig's): see build_config.bzl. The CUDA build adds CUDA_SOURCES,
# compiled by nvcc with NVCC_FLAGS and CUDA_ARCH_FLAGS, and
# CUDA_ADAPTER_SOURCES, compiled with the C++ sources.
_build_config = _load_build_config()
CPU_SOURCES = _build_config["CPU_SOURCES"]
CXX_FLAGS = _build_config["CXX_FLAGS"]
CUDA_SOURCES = _build_config["CUDA_SOURCES"]
CUDA_ADAPTER_SOURCES = _build_config["CUDA_ADAPTER_SOURCES"]
CUDA_HEADERS = _build_config["CUDA_HEADERS"]
CUDA_ARCH_FLAGS = _build_config["CUDA_ARCH_FLAGS"]
NVCC_FLAGS = _build_config["NVCC_FLAGS"]
CUDA_ENV = "MONOLITH_OPS_CUDA"


NO_ISOLATION_HELP = (
    "Build in the environment that holds the TensorFlow the library will run "
    "with, without build isolation:\n"
    "    pip install --no-build-isolation .\n"
    "    python -m build --wheel --no-isolation     # a wheel, for that TensorFlow\n"
    f"(That environment needs setuptools>={SETUPTOOLS_MIN[0]}: "
    f"pip install 'setuptools>={SETUPTOOLS_MIN[0]}'.)"
)


def isolated_build_environment():
    """How this build runs in a build frontend's throwaway environment (pip's
    or `build`'s build isolation, uv's), or None when it does not seem to."""
    # pip puts its isolated environment on sys.path, in pip-build-env-* folders.
    for entry in sys.path:
        if "pip-build-env-" in entry:
            return f"pip's build isolation: {entry} is on sys.path"
    # build and uv make a venv of their own in a temporary folder.
    prefix = os.path.basename(os.path.normpath(sys.prefix))
    if prefix.startswith("build-env-") or (
        os.sep + "builds-v" in sys.prefix and prefix.startswith(".tmp")
    ):
        return f"an isolated build environment: sys.prefix is {sys.prefix}"
    return None


def check_build_environment():
    """Stops a build that cannot see the installed TensorFlow.

    Runs before anything is built, without importing TensorFlow: under build
    isolation, or where no TensorFlow is installed, the build stops and says
    why and what to run instead.
    """
    isolated = isolated_build_environment()
    if isolated is not None:
        raise SystemExit(
            f"monolith_ops must not be built under build isolation ({isolated}). "
            "Its op library is compiled against the installed TensorFlow, "
            "which an isolated build environment does not hold: built there, "
            "it would not match the TensorFlow it runs with.\n" + NO_ISOLATION_HELP
        )
    if importlib.util.find_spec("tensorflow") is None:
        raise SystemExit(
            "monolith_ops builds its op library against the installed "
            f"TensorFlow, and {sys.executable} finds none.\n"
            "If this build runs under build isolation (pip's default; `python "
            "-m build` without --no-isolation), that is why. " + NO_ISOLATION_HELP + "\n"
            f"Otherwise install a supported TensorFlow ({_supported_range()}) "
            "first, the distribution you use (tensorflow, tensorflow-cpu, ...), "
            "for example:\n"
            f"    pip install 'tensorflow{TF_SPECIFIER}'\n"
            "    pip install --no-build-isolation ."
        )


def check_tf_version(version, where="the installed TensorFlow"):
    """Stops the build unless TensorFlow `version` is a supported release."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None or not (TF_SUPPORTED[0] <= (int(match[1]), int(match[2])) <= TF_SUPPORTED[1]):
        raise SystemExit(
            f"monolith_ops supports TensorFlow {_supported_range()}; "
            f"{where} is TensorFlow {version}. Install a supported "
            "release of the TensorFlow distribution you use, for example "
            f"pip install 'tensorflow{TF_SPECIFIER}' (or tensorflow-cpu), then "
            "build again: pip install --no-build-isolation ."
        )


def _tensorflow():
    check_build_environment()
    try:
        import tensorflow as tf  # at build time only
    except ImportError as err:
        raise SystemExit(
            f"monolith_ops: importing the installed TensorFlow failed: {err}. "
            "The op library is compiled against it; repair or reinstall it, "
            "then build again."
        ) from err
    check_tf_version(tf.__version__, f"the installed TensorFlow ({os.path.dirname(tf.__file__)})")
    return tf


def _loader_module():
    """monolith_ops/_loader.py of this tree: it defines what the record holds."""
    spec = importlib.util.spec_from_file_location(
        "monolith_ops_build_loader", os.path.join(HERE, "monolith_ops", "_loader.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cuda_requested():
    """Whether MONOLITH_OPS_CUDA asks for the CUDA kernels."""
    value = os.environ.get(CUDA_ENV, "").strip()
    if value in ("", "0"):
        return False
    if value == "1":
        return True
    raise SystemExit(
        f"{CUDA_ENV} must be 1 (build the CUDA kernels) or 0 / "
        f"unset (CPU kernels only), got {value!r}."
    )


class CudaToolkit:
    """The nvcc that builds the CUDA core, and the static CUDA runtime."""

    def __init__(self, nvcc, cudart_static):
        self.nvcc = nvcc
        self.cudart_static = cudart_static

    @classmethod
    def find(cls):
        """The toolkit of $CUDA_HOME/bin/nvcc, else of the nvcc on PATH.

        Raises SystemExit with what to do when there is none, since CUDA was
        asked for.
        """
        cuda_home = os.environ.get("CUDA_HOME")
        if cuda_home:
            nvcc = os.path.join(cuda_home, "bin", "nvcc")
            if not os.access(nvcc, os.X_OK):
                raise SystemExit(
                    f"{CUDA_ENV}=1 asks for the CUDA kernels, but CUDA_HOME="
                    f"{cuda_home} has no bin/nvcc. Point CUDA_HOME at a CUDA "
                    f"toolkit (12 or newer), or unset {CUDA_ENV} to build the "
                    "CPU kernels only."
                )
        else:
            nvcc = shutil.which("nvcc")
            if nvcc is None:
                raise SystemExit(
                    f"{CUDA_ENV}=1 asks for the CUDA kernels, but nvcc was not "
                    "found: CUDA_HOME is not set and no nvcc is on PATH. Install "
                    "a CUDA toolkit (12 or newer) and set CUDA_HOME to it (or put "
                    f"its bin/ on PATH), or unset {CUDA_ENV} to build the CPU "
                    "kernels only."
                )
        return cls(nvcc, cls._find_cudart_static(nvcc))

    @staticmethod
    def _find_cudart_static(nvcc):
        """libcudart_static.a from the folders nvcc itself links from."""
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe.cu")
            open(src, "w").close()
            try:
                out = subprocess.run(
                    [nvcc, "--dryrun", src, "-o", os.path.join(tmp, "probe")],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stderr
            except OSError as err:
                raise SystemExit(f"could not run {nvcc}: {err}") from err
        lib_dirs = re.findall(
            r'-L"?([^" ]+)"?',
            "".join(line for line in out.splitlines() if line.startswith("#$ LIBRARIES")),
        )
        home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        lib_dirs += [os.path.join(home, "lib64"), os.path.join(home, "lib")]
        for lib_dir in lib_dirs:
            path = os.path.join(lib_dir, "libcudart_static.a")
            if os.path.isfile(path):
                return os.path.normpath(path)
        raise SystemExit(
            f"{nvcc} was found but not libcudart_static.a (looked "
            f"in {', '.join(lib_dirs)}); the CUDA build links the "
            "CUDA runtime statically and needs a full toolkit."
        )


class BuildOpLibrary(build_ext):
    """Compiles cc/ into monolith_ops/_monolith_ops.so with TF's flags, and
    the CUDA kernels too when MONOLITH_OPS_CUDA=1."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1
        # Decided before anything is compiled, so a missing nvcc fails fast.
        self.cuda = CudaToolkit.find() if _cuda_requested() else None

    def get_ext_filename(self, ext_name):
        return os.path.join(*ext_name.split(".")[:-1], LIB_NAME)

    def build_extension(self, ext):
        tf = _tensorflow()
        ext.include_dirs = [HERE]
        ext.extra_compile_args = CXX_FLAGS + tf.sysconfig.get_compile_flags()
        ext.extra_link_args = tf.sysconfig.get_link_flags()
        # A build for another TensorFlow or with CUDA switched over must not
        # reuse a library left in build/ by the previous one.
        stamp = self._variant_stamp(tf)
        # Every header the sources include: a change to one rebuilds.
        headers = sorted(glob.glob(os.path.join("cc", "**", "*.h"), recursive=True))
        ext.depends = [stamp, *headers, "build_config.bzl"]
        if self.cuda is not None:
            ext.sources = CPU_SOURCES + CUDA_ADAPTER_SOURCES
            ext.depends += CUDA_SOURCES + CUDA_HEADERS
            ext.extra_objects = self._compile_cuda(tf, stamp)
            # g++ links, with the static runtime before TensorFlow's library:
            # the runtime calls bind to our own copy, never to the ones that
            # libtensorflow_framework exports (which fail under the CPU wheel),
            # and --exclude-libs keeps that copy out of our dynamic symbols.
            ext.extra_link_args = [
                self.cuda.cudart_static,
                "-ldl",
                "-lrt",
                "-lpthread",
                "-Wl,--exclude-libs," + os.path.basename(self.cuda.cudart_static),
            ] + tf.sysconfig.get_link_flags()
        super().build_extension(ext)
        self._write_build_record(ext)

    def _write_build_record(self, ext):
        """The record that the loader checks before loading the library: the
        TensorFlow facts it was built for, the compiler, and the library's
        size and sha256."""
        loader = _loader_module()
        lib = self.get_ext_fullpath(ext.name)
        record = dict(
            loader.tensorflow_facts(),
            compiler=self._compiler_version(),
            cuda=self.cuda is not None,
            written_by="setup.py",
            **loader.file_facts(lib),
        )
        with open(self._build_info_path(ext), "w") as f:
            json.dump(record, f, indent=1, sort_keys=True)
            f.write("\n")

    def _compiler_version(self):
        """The C++ compiler's name and version (first line of --version)."""
        cxx = self.compiler.compiler_so[0]
        try:
            out = subprocess.run(
                [cxx, "--version"], capture_output=True, text=True, check=False
            ).stdout
        except OSError:
            out = ""
        return out.splitlines()[0].strip() if out.strip() else cxx

    def _variant_stamp(self, tf):
        """A file in build_temp that changes when the kind of build does."""
        variant = (
            f"tensorflow {tf.__version__} {os.path.dirname(tf.__file__)}\n"
            f"cuda {self.cuda.nvcc if self.cuda else 'off'}\n"
        )
        path = os.path.join(self.build_temp, "build_variant.txt")
        os.makedirs(self.build_temp, exist_ok=True)
        old = open(path).read() if os.path.exists(path) else None
        if old != variant:
            with open(path, "w") as f:
                f.write(variant)
        return path

    def _compile_cuda(self, tf, stamp):
        """Compiles CUDA_SOURCES with nvcc where out of date; returns the
        object files."""
        # The C++ ABI of TensorFlow's build, for the std:: types inside.
        abi = [
            flag
            for flag in tf.sysconfig.get_compile_flags()
            if flag.startswith("-D_GLIBCXX_USE_CXX11_ABI")
        ]
        objects = []
        for src in CUDA_SOURCES:
            obj = os.path.join(self.build_temp, os.path.splitext(src)[0] + ".o")
            inputs = [os.path.join(HERE, f) for f in [src] + CUDA_HEADERS] + [stamp]
            if (
                self.force
                or not os.path.exists(obj)
                or any(os.path.getmtime(f) > os.path.getmtime(obj) for f in inputs)
            ):
                os.makedirs(os.path.dirname(obj), exist_ok=True)
                self.spawn(
                    [self.cuda.nvcc, "-c", os.path.join(HERE, src), "-o", obj, "-I", HERE]
                    + NVCC_FLAGS
                    + abi
                    + CUDA_ARCH_FLAGS
                )
            objects.append(obj)
        return objects

    def _build_info_path(self, ext):
        return os.path.join(os.path.dirname(self.get_ext_fullpath(ext.name)), BUILD_INFO)

    def copy_extensions_to_source(self):
        # An in-place build copies the library into the tree: its record too.
        super().copy_extensions_to_source()
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            inplace_lib, built_lib = self._get_inplace_equivalent(build_py, ext)
            self.copy_file(
                os.path.join(os.path.dirname(built_lib), BUILD_INFO),
                os.path.join(os.path.dirname(inplace_lib), BUILD_INFO),
                level=self.verbose,
            )


def _check_setuptools():
    import setuptools

    match = re.match(r"(\d+)\.(\d+)", setuptools.__version__)
    if match is None or (int(match[1]), int(match[2])) < SETUPTOOLS_MIN:
        raise SystemExit(
            f"monolith_ops needs setuptools>={SETUPTOOLS_MIN[0]} to build (its "
            f"pyproject.toml metadata), found {setuptools.__version__}: run "
            f"pip install 'setuptools>={SETUPTOOLS_MIN[0]}', then build again."
        )


if __name__ == "__main__":
    _check_setuptools()
    if BUILD_COMMANDS.intersection(sys.argv[1:]):
        check_build_environment()
    # The rest of the metadata is in pyproject.toml.
    setup(
        ext_modules=[Extension("monolith_ops._monolith_ops", CPU_SOURCES, language="c++")],
        cmdclass={"build_ext": BuildOpLibrary},
        extras_require=TF_EXTRAS,
    )
