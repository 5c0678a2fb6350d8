#!/usr/bin/env bash
# Run all raw-ZeroMQ anchor scenarios in sequence (~40-60 s on a 2-core box).
#   ./run.sh          the scenarios nodus-bench's fixed shapes compare with
#   ./run.sh size     the message-size curve: one frame of 32 B (header + envelope) + S bytes,
#                     S = 16 B .. 16 MiB, as nodus-bench's dist_size (RESULT zmq_size_<S>)
# stdout: NOTE line + RESULT lines; stderr: INFO diagnostics.
# SCALE=0.1 ./run.sh  gives a quick smoke run (message counts scaled down).
# IDLE_WAIT=120 ./run.sh waits (bounded) for an idle machine before each scenario.
case ${1:-} in -h|--help) sed -n '2,/^[^#]/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
set -uo pipefail
cd "$(dirname "$0")"
# built by meson (bench.sh sets ANCHOR_BUILD to build-bench/bench/anchors), else by build.sh
if [[ -n ${ANCHOR_BUILD:-} ]]; then BIN=$ANCHOR_BUILD/zmq; else
  BIN=${ANCHOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nodus-anchors}/zmq/bin
  [[ -x "$BIN"/oneway && -x "$BIN"/pingpong ]] || ./build.sh >&2
fi
T="timeout -k 5 100"   # hard bound per scenario
. ../lib.sh

if [[ ${1:-} == size ]]; then
  for pt in 16B:16:3000000 256B:256:2000000 4KiB:4096:400000 64KiB:65536:40000 1MiB:1048576:2000 16MiB:16777216:100; do
    IFS=: read -r label size count <<<"$pt"
    run zmq_size_$label $T "$BIN"/oneway --name zmq_size_$label --n "$(n "$count")" --payload "$size" --frames 1
  done
  exit $fail
fi
run zmq_oneway_small         $T "$BIN"/oneway   --name zmq_oneway_small        --n "$(n 5000000)" --payload 16 --note
run zmq_oneway_1k            $T "$BIN"/oneway   --name zmq_oneway_1k           --n "$(n 2000000)" --payload 1024
run zmq_oneway_small_1frame  $T "$BIN"/oneway   --name zmq_oneway_small_1frame --n "$(n 10000000)" --payload 16 --frames 1
run zmq_pingpong             $T "$BIN"/pingpong --name zmq_pingpong            --n "$(n 100000)"
run zmq_oneway_small_curve   $T "$BIN"/oneway   --name zmq_oneway_small_curve  --n "$(n 1500000)" --payload 16 --curve
run zmq_pingpong_curve       $T "$BIN"/pingpong --name zmq_pingpong_curve      --n "$(n 100000)" --curve
run zmq_inproc_oneway_small  $T "$BIN"/oneway   --name zmq_inproc_oneway_small --n "$(n 10000000)" --payload 16 --inproc
exit $fail
