# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The one place that loads the compiled op library.

The library is loaded once, by ``monolith_ops.load_ops()`` or on first use.
The build writes a record beside it, ``_build_info.json``: the TensorFlow it
was compiled against (version, C++ ABI facts) and the library's size and
sha256. The library is loaded only when the installed TensorFlow has the
recorded facts (its C++ ABI would not match otherwise) and the file is the
one the build wrote (a truncated library would crash the process in
dlopen). Every failure raises OpLibraryError, an ImportError, that says how
to rebuild.
"""

import hashlib
import json
import os
import threading

import tensorflow as tf

LIBRARY_FILE = "_monolith_ops.so"
BUILD_RECORD_FILE = "_build_info.json"
REBUILD_COMMAND = "pip install --no-build-isolation --force-reinstall --no-deps ."
_DIR = os.path.dirname(os.path.abspath(__file__))

# The facts of the installed TensorFlow that a build depends on, as
# tensorflow_facts() names them in the build record.
TF_FACTS = ("tf_version", "cxx11_abi_flag", "cxx_standard", "tf_build_info")


class OpLibraryError(ImportError):
    """The op library is missing, damaged, or could not be loaded."""


class TFVersionMismatchError(OpLibraryError):
    """The op library was built for another TensorFlow (version or ABI)."""


def _rebuild_hint():
    return (
        f"Rebuild it against the installed TensorFlow {tf.__version__}: run "
        f"`{REBUILD_COMMAND}` in the monolith_ops source tree "
        "(or `python setup.py build_ext --inplace` for an in-tree build)."
    )


def library_path():
    """Path of the op library file (it may not exist)."""
    return os.path.join(_DIR, LIBRARY_FILE)


def build_record_path():
    """Path of the build record (it may not exist)."""
    return os.path.join(_DIR, BUILD_RECORD_FILE)


def tensorflow_facts():
    """What the library's build depends on in the installed TensorFlow.

    The build records these (setup.py and Bazel), and the loader compares
    them with the installed TensorFlow's: a JSON-ready dict keyed by TF_FACTS.
    """
    std = [
        flag.lstrip("-")[len("std=") :]
        for flag in tf.sysconfig.get_compile_flags()
        if flag.lstrip("-").startswith("std=")
    ]
    get_build_info = getattr(tf.sysconfig, "get_build_info", None)
    facts = {
        "tf_version": tf.__version__,
        "cxx11_abi_flag": int(tf.sysconfig.CXX11_ABI_FLAG),
        "cxx_standard": std[-1] if std else None,
        "tf_build_info": dict(get_build_info()) if get_build_info else None,
    }
    return json.loads(json.dumps(facts))  # as read back from a record


def build_record():
    """The build record as a dict, or None when there is none.

    Raises OpLibraryError (chained) when it cannot be read or parsed."""
    path = build_record_path()
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise OpLibraryError(
            f"monolith_ops: the build record {path} cannot be read: {err}. {_rebuild_hint()}"
        ) from err
    if not isinstance(record, dict):
        raise OpLibraryError(
            f"monolith_ops: the build record {path} is not a JSON object. {_rebuild_hint()}"
        )
    return record


def built_tf_version():
    """The TensorFlow version the library was built for, or None if unknown."""
    return (build_record() or {}).get("tf_version")


def built_with_cuda():
    """Whether the library was built with its CUDA kernels."""
    return bool((build_record() or {}).get("cuda", False))


def _describe(name, value):
    labels = {
        "cxx11_abi_flag": "_GLIBCXX_USE_CXX11_ABI",
        "cxx_standard": "C++ standard",
        "tf_build_info": "tf.sysconfig.get_build_info()",
    }
    return f"{labels.get(name, name)} {value!r}"


def check_compatible(built=None, installed=None):
    """Raises TFVersionMismatchError unless the build matches TensorFlow.

    Args:
      built: The TF version, or a dict of TF_FACTS, recorded by the build
        (default: read the record).
      installed: The same for the running TensorFlow (default: its facts).
    """
    if built is None:
        built = build_record()
        if built is None:
            raise OpLibraryError(
                f"monolith_ops: no build record {build_record_path()}; the op "
                f"library was not built. {_rebuild_hint()}"
            )
    if installed is None:
        installed = tensorflow_facts()
    if not isinstance(built, dict):
        built = {"tf_version": built}
    if not isinstance(installed, dict):
        installed = {"tf_version": installed}
    if built.get("tf_version") != installed.get("tf_version"):
        raise TFVersionMismatchError(
            f"monolith_ops: the op library was built for TensorFlow "
            f"{built.get('tf_version')}, but TensorFlow "
            f"{installed.get('tf_version')} is installed. {_rebuild_hint()}"
        )
    differ = [
        name
        for name in TF_FACTS
        if name in built and name in installed and built[name] != installed[name]
    ]
    if differ:
        details = "; ".join(
            f"built with {_describe(n, built[n])}, installed TensorFlow has "
            f"{_describe(n, installed[n])}"
            for n in differ
        )
        raise TFVersionMismatchError(
            f"monolith_ops: the op library was built for another build of "
            f"TensorFlow {installed['tf_version']} ({details}); its C++ ABI "
            f"may not match. {_rebuild_hint()}"
        )


def file_facts(path):
    """The size and sha256 of a file, as the build record keeps them."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return {"library_size": size, "library_sha256": digest.hexdigest()}


def check_library_file(path, record):
    """Raises OpLibraryError unless `path` is the file the build recorded.

    dlopen of a truncated library can kill the process (SIGBUS) instead of
    failing, so the file is checked before it is loaded."""
    want = {k: record.get(k) for k in ("library_size", "library_sha256")}
    if None in want.values():
        raise OpLibraryError(
            f"monolith_ops: the build record {build_record_path()} has no "
            f"size and sha256 of the library. {_rebuild_hint()}"
        )
    try:
        got = file_facts(path)
    except OSError as err:
        raise OpLibraryError(f"monolith_ops: cannot read {path}: {err}. {_rebuild_hint()}") from err
    if got["library_size"] != want["library_size"]:
        raise OpLibraryError(
            f"monolith_ops: the op library {path} is {got['library_size']} "
            f"bytes, but the build wrote {want['library_size']}: it differs "
            "from the library the build recorded (truncated, stripped or "
            f"replaced since). {_rebuild_hint()}"
        )
    if got["library_sha256"] != want["library_sha256"]:
        raise OpLibraryError(
            f"monolith_ops: the op library {path} has sha256 "
            f"{got['library_sha256']}, but the build wrote "
            f"{want['library_sha256']}: it differs from the library the "
            "build recorded (modified, stripped or replaced since). "
            f"{_rebuild_hint()}"
        )


class _LazyLibrary:
    """Loads the library on first attribute access, once, thread-safely."""

    def __init__(self):
        self._lock = threading.Lock()
        self._module = None

    def load(self):
        """Loads the library (once) and returns its module of op wrappers."""
        with self._lock:
            if self._module is None:
                self._module = self._load()
        return self._module

    @staticmethod
    def _load():
        path = library_path()
        if not os.path.exists(path):
            raise OpLibraryError(
                f"monolith_ops: the op library {path} is missing. {_rebuild_hint()}"
            )
        record = build_record()
        check_compatible(record)
        check_library_file(path, record)
        try:
            return tf.load_op_library(path)
        except Exception as err:  # any load failure, chained as-is
            raise OpLibraryError(
                f"monolith_ops: loading {path} (built for TensorFlow "
                f"{record.get('tf_version')}) failed under TensorFlow "
                f"{tf.__version__}: {err}. {_rebuild_hint()}"
            ) from err

    def __getattr__(self, name):
        return getattr(self.load(), name)


ops = _LazyLibrary()
