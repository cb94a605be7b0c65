#!/usr/bin/env bash
# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
# CI: the CPU core builds off x86 and computes bitwise what it does on x86.
#
# TensorFlow ships aarch64 Linux wheels; there the CPU core (cc/core/)
# compiles its baseline loops only (MONOLITH_OPS_X86 is 0). Without an Arm
# machine: tests/cc/clip_core_test.cc and the framework-free core are compiled
# with setup.py's CXX_FLAGS (all from build_config.bzl) three times:
#   x86       native, the AVX2 path where the CPU has it (also run with
#             streaming stores for every output);
#   baseline  native, -DMONOLITH_OPS_PORTABLE: the baseline loops forced;
#   aarch64   Debian's g++-aarch64-linux-gnu, static, run under qemu-user;
# and all must print the same sums and output hashes, bit for bit. Installs
# the Debian packages it needs (as root) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

. scripts/apt_ensure.sh
apt_ensure --no-install-recommends -- g++ g++-aarch64-linux-gnu qemu-user libeigen3-dev
echo "ci_arch: apt $((SECONDS - start)) s"

out=build/ci-arch
rm -rf "$out"
mkdir -p "$out"
# The flags and the framework-free sources of build_config.bzl, as setup.py
# compiles them (-ffp-contract=off among the flags).
mapfile -t cxx_flags < <(python3 scripts/build_config.py CXX_FLAGS)
mapfile -t core_sources < <(python3 scripts/build_config.py CPU_CORE_SOURCES)
mapfile -t tuning_sources < <(python3 scripts/build_config.py CPU_TUNING_SOURCES)
[ "${#cxx_flags[@]}" -gt 0 ] && [ "${#core_sources[@]}" -gt 0 ] ||
  { echo "ci_arch: no CXX_FLAGS or CPU_CORE_SOURCES in build_config.bzl" >&2; exit 1; }
flags=(-std=c++17 "${cxx_flags[@]}" -I. -isystem /usr/include/eigen3)
sources=(tests/cc/clip_core_test.cc "${core_sources[@]}" "${tuning_sources[@]}")
echo "ci_arch: flags ${flags[*]}"

g++ "${flags[@]}" "${sources[@]}" -o "$out/x86" & x86=$!
g++ "${flags[@]}" -DMONOLITH_OPS_PORTABLE "${sources[@]}" -o "$out/baseline" & baseline=$!
aarch64-linux-gnu-g++ "${flags[@]}" -static "${sources[@]}" -o "$out/aarch64"
wait "$x86"
wait "$baseline"
readelf -h "$out/aarch64" | grep -q 'Machine: *AArch64' ||
  { echo "ci_arch: $out/aarch64 is not an AArch64 binary" >&2; exit 1; }
echo "ci_arch: built in $((SECONDS - start)) s"

grep -qw avx2 /proc/cpuinfo && echo "ci_arch: this CPU has AVX2" ||
  echo "ci_arch: no AVX2 here: the x86 build runs its baseline loops"
"$out/x86" > "$out/x86.txt"
MONOLITH_OPS_STREAM_MIN_BYTES=0 "$out/x86" > "$out/x86-stream.txt"
"$out/baseline" > "$out/baseline.txt"
qemu-aarch64 "$out/aarch64" > "$out/aarch64.txt"
cat "$out/x86.txt"
status=0
for run in x86-stream baseline aarch64; do
  if diff -u "$out/x86.txt" "$out/$run.txt"; then
    echo "ci_arch: $run: bitwise the same as x86 ($(wc -l < "$out/$run.txt") lines)"
  else
    echo "ci_arch: $run differs from x86" >&2
    status=1
  fi
done
echo "ci_arch: $((SECONDS - start)) s"
exit "$status"
