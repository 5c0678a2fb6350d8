#!/usr/bin/env bash
# Builds a program that prints 'sup?' (examples/local/main.cpp) against nodus as each kind of
# consumer would, and runs it:
#   meson-dependency   a meson project, dependency('nodus'), against the staged install's nodus.pc
#   meson-subproject   a meson project with subprojects/nodus pointing at this checkout
#   cmake              a CMake project, find_package(nodus), against the staged nodusConfig.cmake
#   pkg-config         g++ with `pkg-config --cflags --libs nodus` alone
# Usage: tests/packaging/consumers.sh STAGE   (STAGE: a `meson install --destdir STAGE` of a build)
# Prints "ok   packaging: KIND ..." or "FAIL packaging: KIND ..." per consumer (the log's tail
# on failure); exits 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
stage=${1:?usage: consumers.sh STAGE}
pc=$(dirname "$(find "$stage" -name nodus.pc | head -n 1)")
libdir=$(dirname "$(find "$stage" -name 'libnodus.so' | head -n 1)")
prefix=$(dirname "$(dirname "$(find "$stage" -path '*/include/nodus' -type d | head -n 1)")")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rc=0

sup() {  # runs the consumer's program: prints 'sup?' among its lines
  local out
  out=$(LD_LIBRARY_PATH=$libdir:${2:-} timeout 60 "$1" 2>/dev/null) && grep -qx "'sup?'" <<<"$out"
}
report() {  # KIND LOG STATUS
  if (($3 == 0)); then
    echo "ok   packaging: $1 builds and runs a program that prints 'sup?'"
  else
    echo "FAIL packaging: $1 (log: $2)"
    tail -n 30 "$2"
    rc=1
  fi
}
project() {  # KIND: a fresh copy of its project with the program
  mkdir -p "$work/$1" && cp -r "tests/packaging/consumers/$1/." "$work/$1/" && cp examples/local/main.cpp "$work/$1/"
}

project meson_dep
log=$work/meson_dep.log
(PKG_CONFIG_PATH=$pc PKG_CONFIG_SYSROOT_DIR=$stage meson setup "$work/meson_dep/b" "$work/meson_dep" &&
  ninja -C "$work/meson_dep/b") >"$log" 2>&1 && sup "$work/meson_dep/b/sup"
report "meson-dependency (dependency('nodus') through nodus.pc)" "$log" $?

project meson_subproject
mkdir -p "$work/meson_subproject/subprojects" && ln -s "$repo" "$work/meson_subproject/subprojects/nodus"
log=$work/meson_subproject.log
(meson setup "$work/meson_subproject/b" "$work/meson_subproject" && ninja -C "$work/meson_subproject/b" sup) >"$log" 2>&1 &&
  sup "$work/meson_subproject/b/sup" "$work/meson_subproject/b/subprojects/nodus/src"
report "meson-subproject (subprojects/nodus, the checkout)" "$log" $?

project cmake
log=$work/cmake.log
(cmake -S "$work/cmake" -B "$work/cmake/b" -DCMAKE_PREFIX_PATH="$prefix" && cmake --build "$work/cmake/b") >"$log" 2>&1 &&
  sup "$work/cmake/b/sup"
report "cmake (find_package(nodus), nodusConfig.cmake)" "$log" $?

log=$work/pkgconfig.log
(g++ -std=c++20 examples/local/main.cpp $(PKG_CONFIG_PATH=$pc PKG_CONFIG_SYSROOT_DIR=$stage pkg-config --cflags --libs nodus) \
  -o "$work/sup-pc") >"$log" 2>&1 && sup "$work/sup-pc"
report "pkg-config (pkg-config --cflags --libs nodus)" "$log" $?
exit $rc
