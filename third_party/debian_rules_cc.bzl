# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""Debian's rules_cc, patched to run under Debian's Bazel 4.2.3.

Debian bookworm packages rules_cc 0.0.4 (bazel-rules-cc) in
/usr/share/bazel/rules/cc. It calls `use_cpp_toolchain()`, which
@bazel_tools of Bazel 4.2.3 does not define yet. This rule copies that tree
and replaces each call with the toolchain type it stands for:

    use_cpp_toolchain()  ->  ["@bazel_tools//tools/cpp:toolchain_type"]

(and drops the symbol from the `load` statements). Defined in WORKSPACE as
@rules_cc, it keeps Bazel's built-in WORKSPACE suffix from downloading
rules_cc.
"""

_OLD_CALL = "use_cpp_toolchain()"
_NEW_CALL = '["@bazel_tools//tools/cpp:toolchain_type"]'
_OLD_LOAD = ', "use_cpp_toolchain")'
_NEW_LOAD = ")"

def _debian_rules_cc_impl(ctx):
    src = ctx.path(ctx.attr.path)
    if not src.get_child("cc").get_child("defs.bzl").exists:
        fail(("debian_rules_cc: %s/cc/defs.bzl not found; install Debian's " +
              "rules_cc: apt-get install bazel-rules-cc") % src)
    result = ctx.execute(["cp", "-R", "%s/." % src, "."])
    if result.return_code != 0:
        fail("debian_rules_cc: copying %s failed:\n%s" % (src, result.stderr))

    # Its WORKSPACE file downloads rules_cc's own development dependencies.
    ctx.file("WORKSPACE", 'workspace(name = "%s")\n' % ctx.name)

    result = ctx.execute(["grep", "-rl", "--include=*.bzl", "use_cpp_toolchain", "."])
    for name in result.stdout.splitlines():
        text = ctx.read(name)
        patched = text.replace(_OLD_CALL, _NEW_CALL).replace(_OLD_LOAD, _NEW_LOAD)
        if "use_cpp_toolchain" in patched:
            fail(("debian_rules_cc: %s/%s uses use_cpp_toolchain in a way " +
                  "this patch does not know; update " +
                  "third_party/debian_rules_cc.bzl") % (src, name))
        ctx.file(name, patched, legacy_utf8 = False)

debian_rules_cc = repository_rule(
    implementation = _debian_rules_cc_impl,
    attrs = {
        "path": attr.string(
            default = "/usr/share/bazel/rules/cc",
            doc = "Where Debian's bazel-rules-cc package installs rules_cc.",
        ),
    },
    local = True,
    doc = "Debian's rules_cc 0.0.4, patched for Bazel 4.2.3.",
)
