"""The one place that loads the compiled op library.

The library is loaded lazily, on first use, and once. The build writes
``_build_info.py`` beside it with the TensorFlow version it was compiled
against; a library built for another TensorFlow is never loaded (its C++ ABI
would not match), and every failure raises an ImportError subclass that says
how to rebuild.
"""
import importlib
import os
import threading

import tensorflow as tf

LIBRARY_FILE = "_monolith_ops.so"
REBUILD_COMMAND = "pip install --no-build-isolation --force-reinstall --no-deps ."
_DIR = os.path.dirname(os.path.abspath(__file__))


class OpLibraryError(ImportError):
    """The op library is missing, or could not be loaded."""


class TFVersionMismatchError(OpLibraryError):
    """The op library was built for another TensorFlow version."""


def _rebuild_hint():
    return (f"Rebuild it against the installed TensorFlow {tf.__version__}: run "
            f"`{REBUILD_COMMAND}` in the monolith_ops source tree "
            "(or `python setup.py build_ext --inplace` for an in-tree build).")


def library_path():
    """Path of the op library file (it may not exist)."""
    return os.path.join(_DIR, LIBRARY_FILE)


def _build_record(name, default):
    """Field `name` of the build record, or `default` without one."""
    try:
        info = importlib.import_module("monolith_ops._build_info")
    except ImportError:
        return default
    return getattr(info, name, default)


def built_tf_version():
    """The TensorFlow version the library was built for, or None if unknown."""
    return _build_record("TF_VERSION", None)


def built_with_cuda():
    """Whether the library was built with its CUDA kernels."""
    return bool(_build_record("CUDA", False))


def check_compatible(built=None, installed=None):
    """Raises TFVersionMismatchError unless `built` equals `installed`.

    Args:
      built: The TF version recorded by the build (default: read the record).
      installed: The running TF version (default: tf.__version__).
    """
    built = built_tf_version() if built is None else built
    installed = tf.__version__ if installed is None else installed
    if built is None:
        raise OpLibraryError(
            f"monolith_ops: no build record beside {library_path()}; the op "
            f"library was not built. {_rebuild_hint()}")
    if built != installed:
        raise TFVersionMismatchError(
            f"monolith_ops: the op library was built for TensorFlow {built}, "
            f"but TensorFlow {installed} is installed. {_rebuild_hint()}")


class _LazyLibrary:
    """Loads the library on first attribute access, once, thread-safely."""

    def __init__(self):
        self._lock = threading.Lock()
        self._module = None

    def load(self):
        with self._lock:
            if self._module is None:
                path = library_path()
                if not os.path.exists(path):
                    raise OpLibraryError(
                        f"monolith_ops: the op library {path} is missing. "
                        f"{_rebuild_hint()}")
                check_compatible()
                try:
                    self._module = tf.load_op_library(path)
                except Exception as err:  # any load failure, chained as-is
                    raise OpLibraryError(
                        f"monolith_ops: loading {path} (built for TensorFlow "
                        f"{built_tf_version()}) failed under TensorFlow "
                        f"{tf.__version__}: {err}. {_rebuild_hint()}") from err
        return self._module

    def __getattr__(self, name):
        return getattr(self.load(), name)


ops = _LazyLibrary()
