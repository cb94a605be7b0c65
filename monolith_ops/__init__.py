"""monolith_ops: Monolith's fused gradient clipping, barrier and restore hooks for TensorFlow.

Submodules:
  clip_ops            global_norm and clip_by_global_norm on custom kernels.
  barrier_ops         BarrierOp and BarrierHook for parameter-server clusters.
  basic_restore_hook  CheckpointRestorerHook and its listeners.

The compiled op library is loaded lazily, on first use, by ``monolith_ops._loader``.
"""

__version__ = "0.1.0"
