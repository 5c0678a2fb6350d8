#!/usr/bin/env bash
# Raw TCP on loopback: the limit for a length-prefixed record stream between two processes.
#   ./run.sh          48 B and 1,036 B records, 48 B round trips (blocking and spinning reads)
#   ./run.sh size     the message-size curve: records of 12 B + S bytes, S = 16 B .. 16 MiB, as
#                     nodus-bench's dist_size (RESULT tcp_size_<S>)
case ${1:-} in -h|--help) sed -n '2,/^[^#]/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# built by meson (bench.sh sets ANCHOR_BUILD to build-bench/bench/anchors), else here with g++
if [[ -n ${ANCHOR_BUILD:-} ]]; then BIN=$ANCHOR_BUILD/tcp; else
  BIN=${ANCHOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nodus-anchors}/tcp/bin
  mkdir -p "$BIN"
  [ "$BIN/tcp_bench" -nt "$here/tcp_bench.cpp" ] || g++ -std=c++17 -O2 -Wall -o "$BIN/tcp_bench" "$here/tcp_bench.cpp"
fi
if [[ ${1:-} == size ]]; then
  for pt in 16B:16:10000000 256B:256:4000000 4KiB:4096:1000000 64KiB:65536:60000 1MiB:1048576:4000 16MiB:16777216:200; do
    IFS=: read -r label size count <<<"$pt"
    timeout -k 5 100 "$BIN/tcp_bench" oneway --n "$count" --payload "$size" --name "tcp_size_$label"
  done
  exit 0
fi
"$BIN/tcp_bench" oneway --n 10000000 --payload 36     # 48-byte records, as zmq_oneway_small_1frame
"$BIN/tcp_bench" oneway --n 2000000 --payload 1024
"$BIN/tcp_bench" pingpong --n 100000
"$BIN/tcp_bench" pingpong --n 100000 --spin
