#!/usr/bin/env bash
# Installs the Debian packages nodus needs (as root), skipping what is already there.
# Sourced by demo.sh, test.sh and bench.sh (so it sets no shell options of theirs);
# run alone: ./scripts/deps.sh [extra packages...]

nodus_packages=(g++ meson ninja-build pkg-config libzmq3-dev cppzmq-dev libcereal-dev
  libspdlog-dev libfmt-dev catch2 libsodium-dev libtomlplusplus-dev libcli11-dev libreadline-dev
  nlohmann-json3-dev python3-zmq prometheus-cpp-dev curl tmux cmake gnuplot-nox)

nodus_install_deps() {
  local missing=()
  for p in "${nodus_packages[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  if [ "$(id -u)" != 0 ]; then
    echo "missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    return 1
  fi
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null; }
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  nodus_install_deps "$@"
fi
