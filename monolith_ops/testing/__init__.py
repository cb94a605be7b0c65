# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Helpers for the examples and tests of monolith_ops; not part of the
supported API of the ops.

  local_cluster  a local ps/chief/worker cluster of processes.
"""
