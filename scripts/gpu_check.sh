#!/usr/bin/env bash
# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
# The GPU check, as one command on a machine with an NVIDIA GPU, nvcc,
# pybind11, numpy and torch (TensorFlow is not needed):
#
#   bash scripts/gpu_check.sh [OUT_DIR]        # default OUT_DIR: build/gpu_check
#
# One call of at most GPU_CHECK_TOTAL_S seconds (default 480) that builds the
# pybind11 module of the CUDA core (cc/core/clip_core_gpu.cu and
# tests/gpu/binding.cpp) once, then runs tests/gpu/check_gpu.py phase by
# phase, each in its own process under its own limit, in this order:
#
#   phase      limit (s)                   what
#   env        GPU_CHECK_ENV_S (60)        versions; builds the module
#   quick      GPU_CHECK_QUICK_S (100)     correctness on small sizes
#   sanitizer  GPU_CHECK_SANITIZER_S (100) compute-sanitizer's four tools on
#                                          a reduced case list
#   large      GPU_CHECK_LARGE_S (100)     100,000 tensors, over 2**31
#                                          elements, determinism, grid size
#   timings    GPU_CHECK_TIMINGS_S (100)   the benchmark
#
# A phase gets the smaller of its limit and what is left of the total; one
# that reaches it is stopped, and the next phases still run while time is
# left, or are listed as not run. Each phase writes OUT_DIR/PHASE.log and
# OUT_DIR/PHASE.md (its table) as it goes, and OUT_DIR/summary.md is
# rewritten after every phase, so a run cut off at any point keeps what it
# finished. The phases after env import the module env built (--prebuilt):
# nothing is compiled twice. PYTHON names the interpreter (default python3),
# COMPUTE_SANITIZER compute-sanitizer (default: the one on PATH or in
# CUDA_HOME/bin; the phase is skipped, saying so, when there is none).
# Exits 0 only when every phase that ran passed.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/gpu_check}"
python="${PYTHON:-python3}"
total="${GPU_CHECK_TOTAL_S:-480}"
# Seconds kept back for each stop: SIGTERM, then SIGKILL after this.
grace=3
mkdir -p "$out"
rm -f "$out"/{env,quick,sanitizer,large,timings}.{log,md} "$out/summary.md"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
start=$SECONDS

phases=(env quick sanitizer large timings)
declare -A limit=(
  [env]="${GPU_CHECK_ENV_S:-60}"
  [quick]="${GPU_CHECK_QUICK_S:-100}"
  [sanitizer]="${GPU_CHECK_SANITIZER_S:-100}"
  [large]="${GPU_CHECK_LARGE_S:-100}"
  [timings]="${GPU_CHECK_TIMINGS_S:-100}"
)
declare -A result took
for phase in "${phases[@]}"; do
  result[$phase]="not run"
  took[$phase]=""
done

left() { echo $((total - (SECONDS - start))); }

summary() {
  local p
  {
    echo "# GPU check: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo
    echo "Total limit $total s, $((SECONDS - start)) s used."
    echo
    echo "| phase | result | limit (s) | took (s) |"
    echo "| --- | --- | ---: | ---: |"
    for p in "${phases[@]}"; do
      echo "| $p | ${result[$p]} | ${limit[$p]} | ${took[$p]} |"
    done
  } >"$out/summary.md"
}

# The limit of the next step of a phase that must end by its deadline; empty
# when less than a few seconds are left.
budget() {
  local deadline=$1 now=$((SECONDS - start))
  local b=$((deadline - now))
  local t=$((total - grace - now))
  [ "$t" -lt "$b" ] && b=$t
  [ "$b" -ge 2 ] && echo "$b"
}

# Runs a command under a limit, its output to the terminal and appended to a
# log; returns its exit status, 124 (or 137) when the limit stopped it.
limited() {
  local seconds=$1 log=$2
  shift 2
  PYTHONUNBUFFERED=1 timeout -k "$grace" "$seconds" "$@" 2>&1 | tee -a "$log"
  return "${PIPESTATUS[0]}"
}

# The env phase's probes, run by bash -c under the phase's limit.
probes='
date -u
nvidia-smi || echo "gpu_check: nvidia-smi failed"
nvcc --version || echo "gpu_check: nvcc not on PATH"
"$GPU_CHECK_PYTHON" -c "import sys; print(\"python\", sys.version.split()[0])"
for module in torch pybind11 numpy; do
  "$GPU_CHECK_PYTHON" -c "import $module; print(\"$module\", $module.__version__)" ||
    echo "gpu_check: $module cannot be imported"
done
'

phase_env() {
  local deadline=$1 log="$out/env.log" b
  b=$(budget "$deadline") || return 124
  GPU_CHECK_PYTHON="$python" timeout -k "$grace" "$b" bash -c "$probes" >"$log" 2>&1
  case $? in
    124 | 137) echo "gpu_check: the probes stopped at the limit of $b s" >>"$log" ;;
  esac
  {
    echo "| item | version |"
    echo "| --- | --- |"
    grep -E '^(python|torch|pybind11|numpy) ' "$log" | sed 's/^\([^ ]*\) \(.*\)$/| \1 | \2 |/'
    grep -o 'release [0-9.]*, V[0-9.]*' "$log" | sed 's/^/| nvcc | /; s/$/ |/'
    grep -o 'Driver Version: [0-9.]*' "$log" | sed 's/^Driver Version: /| driver | /; s/$/ |/'
    grep -h 'gpu_check: ' "$log" | sed 's/^/| missing | /; s/$/ |/'
  } >"$out/env.md"
  cat "$log"
  b=$(budget "$deadline") || return 124
  echo "=== gpu_check: building the module (limit $b s) ===" | tee -a "$log"
  limited "$b" "$log" "$python" tests/gpu/check_gpu.py --phase build --build-dir "$build"
  local status=$?
  echo "| build | exit status $status |" >>"$out/env.md"
  return "$status"
}

phase_check() { # quick, large, timings
  local name=$1 deadline=$2 b
  b=$(budget "$deadline") || return 124
  limited "$b" "$out/$name.log" "$python" tests/gpu/check_gpu.py --build-dir "$build" \
    --prebuilt --phase "$name" --out "$out/$name.md"
}

phase_sanitizer() {
  local deadline=$1 log="$out/sanitizer.log" sanitizer="${COMPUTE_SANITIZER:-}" b
  if [ -z "$sanitizer" ]; then
    sanitizer=$(command -v compute-sanitizer ||
      echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")
  fi
  if [ ! -x "$sanitizer" ]; then
    echo "gpu_check: compute-sanitizer not found ($sanitizer): sanitizer phase skipped" |
      tee "$log" "$out/sanitizer.md"
    return 200
  fi
  {
    echo "| tool | result |"
    echo "| --- | --- |"
  } >"$out/sanitizer.md"
  local status=0 tool s
  for tool in memcheck racecheck synccheck initcheck; do
    if ! b=$(budget "$deadline"); then
      echo "| $tool | not run: no time left |" >>"$out/sanitizer.md"
      status=124
      continue
    fi
    echo "=== gpu_check: compute-sanitizer --tool $tool (limit $b s) ===" | tee -a "$log"
    limited "$b" "$log" "$sanitizer" --tool "$tool" --error-exitcode 99 \
      "$python" tests/gpu/check_gpu.py --build-dir "$build" --prebuilt --phase sanitizer
    s=$?
    case $s in
      0) echo "| $tool | PASS |" ;;
      124 | 137) echo "| $tool | stopped at its limit of $b s |" ;;
      *) echo "| $tool | FAIL (exit status $s) |" ;;
    esac >>"$out/sanitizer.md"
    if [ "$s" != 0 ]; then
      if [ "$s" = 124 ] || [ "$s" = 137 ]; then status=124; elif [ "$status" = 0 ]; then status=$s; fi
    fi
  done
  return "$status"
}

status=0
built=0
for phase in "${phases[@]}"; do
  if [ "$phase" != env ] && [ "$built" != 1 ]; then
    result[$phase]="not run: the build failed"
    summary
    continue
  fi
  left_now=$(left)
  own=${limit[$phase]}
  if [ $((left_now - grace)) -lt 2 ]; then
    result[$phase]="not run: the total limit of $total s was reached"
    echo "=== gpu_check: $phase phase not run: the total limit of $total s was reached ==="
    summary
    continue
  fi
  phase_start=$SECONDS
  deadline=$((phase_start - start + own))
  result[$phase]="running (or cut off)"
  summary
  echo "=== gpu_check: $phase phase (limit $own s, $left_now s of $total left) ==="
  case $phase in
    env) phase_env "$deadline" ;;
    sanitizer) phase_sanitizer "$deadline" ;;
    *) phase_check "$phase" "$deadline" ;;
  esac
  s=$?
  took[$phase]=$((SECONDS - phase_start))
  case $s in
    0) result[$phase]="PASS" ;;
    200) result[$phase]="skipped: compute-sanitizer not found" ;;
    124 | 137)
      if [ $((SECONDS - start)) -ge $((total - grace - 2)) ]; then
        result[$phase]="stopped at the total limit of $total s"
      else
        result[$phase]="stopped at its limit of $own s"
      fi
      ;;
    *) result[$phase]="FAIL (exit status $s)" ;;
  esac
  [ "$phase" = env ] && [ "$s" = 0 ] && built=1
  [ "$s" = 0 ] || [ "$s" = 200 ] || status=1
  echo "=== gpu_check: $phase phase: ${result[$phase]} ==="
  summary
done
echo "=== gpu_check: done in $((SECONDS - start)) s, exit status $status ==="
cat "$out/summary.md"
exit "$status"
