# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""The parts behind ``monolith_ops.barrier_ops``: its errors and argument
checks (``errors``), the session runs and per-worker flags it is built on
(``session``), ``BarrierOp`` (``op``) and ``BarrierHook`` (``hook``)."""
