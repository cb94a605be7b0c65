#!/bin/sh
# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
# Stand-in for Bazel's coverage tools, which this offline build leaves out.
echo "bazel coverage is not supported: @remote_coverage_tools is an offline stand-in (third_party/remote_coverage_tools)." >&2
exit 1
