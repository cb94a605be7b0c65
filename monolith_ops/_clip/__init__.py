# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The parts behind ``monolith_ops.clip_ops``, one module per concern:

* ``inputs``: what the API accepts (dtypes, scalars, flags) and the dtypes
  of the norm it computes;
* ``planner``: which ops a clip is built from (``choose_clip_path``), the
  packing of long lists, and the kernels' calls;
* ``tf_ops``: the clip and the norms written in TF ops, under XLA and for
  the ops' gradients, following cc/core's rules;
* ``gradients``: the ops' registered gradients.

The library's ops are loaded here, once, when any of them is imported.
"""

from monolith_ops import load_ops

# Loaded (and the ops registered) on import, so that a graph, SavedModel or
# MetaGraph using them can be loaded after `import monolith_ops.clip_ops`.
ops = load_ops()
