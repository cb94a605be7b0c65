# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Reads build_config.bzl, the op library's source lists and compiler flags.

build_config.bzl is Starlark that BUILD loads. It holds only assignments of
list literals of strings, of names assigned before, and of sums of those;
this reads them without running the file. Used by setup.py (loaded as a lone
file, since the package needs TensorFlow), scripts/ci_arch.sh and the tests.
From a shell, it prints one list's items, one a line:

    python3 scripts/build_config.py CXX_FLAGS
"""

import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = os.path.join(ROOT, "build_config.bzl")


def read(path=PATH):
    """The lists of build_config.bzl at `path`, by name, in file order."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    values = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            continue  # the docstring
        if not (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            raise ValueError(f"{path}:{node.lineno}: only NAME = <list> assignments are read")
        values[node.targets[0].id] = _list(node.value, values, f"{path}:{node.lineno}")
    return values


def _list(node, values, where):
    """The list that `node` denotes: a literal, a name assigned before, or a sum."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _list(node.left, values, where) + _list(node.right, values, where)
    if isinstance(node, ast.Name):
        if node.id not in values:
            raise ValueError(f"{where}: {node.id} is not assigned before its use")
        return list(values[node.id])
    try:
        value = ast.literal_eval(node)
    except ValueError as err:
        raise ValueError(f"{where}: not a list literal ({err})") from err
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{where}: not a list of strings")
    return value


def main(argv):
    if len(argv) != 2:
        sys.exit(f"usage: {argv[0]} NAME  (one of the lists of build_config.bzl)")
    values = read()
    if argv[1] not in values:
        sys.exit(f"build_config.bzl has no list {argv[1]}; it has {', '.join(values)}")
    print("\n".join(values[argv[1]]))


if __name__ == "__main__":
    main(sys.argv)
