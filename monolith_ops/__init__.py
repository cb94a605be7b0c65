# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""monolith_ops: Monolith's fused gradient clipping, barrier and restore hooks for TensorFlow.

Submodules:
  clip_ops            global_norm and clip_by_global_norm on custom kernels.
  optimizers          TF1 optimizers updating a list in one op, clip folded in.
  barrier_ops         BarrierOp and BarrierHook for parameter-server clusters.
  basic_restore_hook  CheckpointRestorerHook and its listeners.
  keras               global-norm clipping for Keras optimizers (Keras 3 and 2).
  testing             helpers for the examples and tests (local_cluster: a
                      local ps/chief/worker cluster of processes).

Importing this package is light: it imports neither TensorFlow nor the op
library. ``load_ops()`` loads the library, as importing ``clip_ops`` does.
"""

__version__ = "0.1.0"

import importlib.util as _importlib_util
import json as _json
import os as _os
import types as _types

if _importlib_util.find_spec("tensorflow") is None:
    from monolith_ops._tf_supported import supported_range as _supported_range

    # The op library was compiled against one TensorFlow release (recorded
    # beside it by the build); no TensorFlow distribution is a requirement.
    try:
        with open(
            _os.path.join(_os.path.dirname(__file__), "_build_info.json"), encoding="utf-8"
        ) as _f:
            _built = _json.load(_f).get("tf_version")
    except (OSError, ValueError, AttributeError):
        _built = None
    raise ImportError(
        "monolith_ops needs TensorFlow, and none is installed"
        + (
            f": its op library was built against TensorFlow {_built}; install "
            f"that release (e.g. pip install 'tensorflow=={_built}', or "
            "tensorflow-cpu, ...)."
            if _built
            else f' ({_supported_range()}; see the README, "Building").'
        )
        + " Installing monolith_ops does not install TensorFlow.",
        name="tensorflow",
    )


def load_ops() -> _types.ModuleType:
    """Loads the compiled op library, once, and registers its ops with TensorFlow.

    A SavedModel or MetaGraph that uses the ops can be loaded only once they
    are registered: call this (or import ``monolith_ops.clip_ops``) first.

    Returns:
      The module of the ops' Python wrappers.

    Raises:
      monolith_ops._loader.OpLibraryError (an ImportError): the library is
        missing, damaged, built for another TensorFlow, or failed to load.
    """
    from monolith_ops import _loader  # imports TensorFlow

    return _loader.ops.load()
