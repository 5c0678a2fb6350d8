#!/usr/bin/env bash
# Installs what is missing, builds nodus, and runs the demo (for now: the local runtime tour).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
case ${1:-} in -h|--help) sed -n '2p' "$0" | sed 's/^# //'; exit 0 ;; esac
nodus_install_deps
[ -f build/build.ninja ] || meson setup build -Dwerror=true >/dev/null
ninja -C build examples/nodus-local-demo >/dev/null
exec ./build/examples/nodus-local-demo
