"""monolith_ops: Monolith's fused gradient clipping, barrier and restore hooks for TensorFlow.

Submodules:
  clip_ops            global_norm and clip_by_global_norm on custom kernels.
  barrier_ops         BarrierOp and BarrierHook for parameter-server clusters.
  basic_restore_hook  CheckpointRestorerHook and its listeners.

The compiled op library is loaded lazily, on first use, by ``monolith_ops._loader``.
"""

__version__ = "0.1.0"

import importlib as _importlib
import importlib.util as _importlib_util

if _importlib_util.find_spec("tensorflow") is None:
    # The op library was compiled against one TensorFlow release (recorded
    # beside it by the build); no TensorFlow distribution is a requirement.
    try:
        _built = _importlib.import_module(__name__ + "._build_info").TF_VERSION
    except (ImportError, AttributeError):
        _built = None
    raise ImportError(
        "monolith_ops needs TensorFlow, and none is installed"
        + (f": its op library was built against TensorFlow {_built}; install "
           f"that release (e.g. pip install 'tensorflow=={_built}', or "
           "tensorflow-cpu, ...)." if _built else
           " (2.15 to 2.21; see the README, \"Building\").")
        + " Installing monolith_ops does not install TensorFlow.",
        name="tensorflow")
