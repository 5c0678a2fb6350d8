#!/usr/bin/env bash
# Builds the libFuzzer target (clang, -fsanitize=fuzzer,address,undefined) and runs it on the
# seed corpus for a bounded time. Fails on any crash, leak, sanitizer report or timeout.
#   ./scripts/fuzz.sh [SECONDS]     default 60; the corpus grows in build-fuzz/corpus
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
case ${1:-} in -h|--help) sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
seconds=${1:-60}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }
nodus_install_deps || exit 1
if ! command -v clang++ >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "clang++ is missing (apt-get install clang)" >&2; exit 1; }
  apt-get install -y -q clang >/dev/null || { echo "cannot install clang" >&2; exit 1; }
fi
dir=build-fuzz
if [ ! -f $dir/build.ninja ]; then
  CXX=clang++ meson setup $dir -Dfuzz=true -Dtests=false -Db_sanitize=address,undefined \
    -Db_lundef=false --buildtype=debugoptimized >/dev/null || { echo "meson setup failed" >&2; exit 1; }
fi
ninja -C $dir frame_fuzz >/dev/null || { echo "fuzz build failed" >&2; exit 1; }
mkdir -p $dir/corpus
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1
echo "fuzzing for $seconds s (corpus: $dir/corpus, seeds: tests/fuzz/seeds)"
$dir/frame_fuzz -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
  -print_final_stats=1 $dir/corpus tests/fuzz/seeds 2>$dir/fuzz.log
rc=$?
grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' $dir/fuzz.log
if [ $rc -ne 0 ]; then
  echo "fuzz: FAILED (exit $rc); the end of $dir/fuzz.log:"
  tail -40 $dir/fuzz.log
  exit 1
fi
echo "fuzz: ok, no crash, leak or sanitizer report in $seconds s"
