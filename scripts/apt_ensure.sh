#!/usr/bin/env bash
# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
# Sourced by the CI jobs: apt_ensure [apt-get install options] -- PACKAGE...
# installs (as root) those of the Debian packages that are not installed yet.
apt_ensure() {
  local options=()
  while [ "$1" != "--" ]; do options+=("$1"); shift; done
  shift
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null |
      grep -q 'install ok installed' || missing+=("$package")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${options[@]}" "${missing[@]}"
  fi
}
