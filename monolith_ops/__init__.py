"""monolith_ops: Monolith's fused gradient clipping, barrier and restore hooks for TensorFlow.

Submodules:
  clip_ops            global_norm and clip_by_global_norm on custom kernels.
  barrier_ops         BarrierOp and BarrierHook for parameter-server clusters.
  basic_restore_hook  CheckpointRestorerHook and its listeners.

Importing this package is light: it imports neither TensorFlow nor the op
library. ``load_ops()`` loads the library, as importing ``clip_ops`` does.
"""

__version__ = "0.1.0"


def load_ops():
    """Loads the compiled op library, once, and registers its ops with TensorFlow.

    A SavedModel or MetaGraph that uses the ops can be loaded only once they
    are registered: call this (or import ``monolith_ops.clip_ops``) first.

    Returns:
      The module of the ops' Python wrappers.

    Raises:
      monolith_ops._loader.OpLibraryError (an ImportError): the library is
        missing, damaged, built for another TensorFlow, or failed to load.
    """
    from monolith_ops import _loader  # noqa: WPS433 (imports TensorFlow)
    return _loader.ops.load()
