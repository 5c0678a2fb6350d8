#!/usr/bin/env bash
# Runs nodus-bench and the reference benchmarks (the anchors) in the same run and prints, for each
# pair, nodus's value, the anchor's, and the ratio nodus/anchor.
#   ./scripts/bench.sh                    every scenario nodus-bench has, with its anchors
#   ./scripts/bench.sh local_send         only these nodus scenarios
#   NODUS_ANCHORS=/path ./scripts/bench.sh   another copy of the anchors (default: bench/anchors,
#                                         which this repository carries: raw TCP, raw libzmq,
#                                         Erlang/OTP and Elixir, CAF)
#   --no-anchors                          nodus-bench only
#   --plot                                also draw each curve and each target ratio as an SVG
#                                         (scripts/plot_bench.py; gnuplot, installed as root)
#   --plot-dir DIR                        where the SVGs go (default build-bench/plots)
#   --repeat N                            N rounds (nodus, then its anchors, N times over);
#                                         each value is the median of its N results, with
#                                         their range (the 2-core VM is noisy: single runs of
#                                         the same scenario differ by up to 2x)
# Raw RESULT lines go to build-bench/bench-results.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

anchors=${NODUS_ANCHORS:-$PWD/bench/anchors}
with_anchors=1 scenarios=() repeat=1 plot=""
while (($#)); do
  case $1 in
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --no-anchors) with_anchors=0 ;;
    --repeat)
      [[ ${2:-} =~ ^[1-9][0-9]?$ ]] || { echo "--repeat needs a number of rounds, 1-99 (see --help)" >&2; exit 2; }
      repeat=$2; shift ;;
    --plot) plot=${plot:-build-bench/plots} ;;
    --plot-dir)
      [[ -n ${2:-} ]] || { echo "--plot-dir needs a directory (see --help)" >&2; exit 2; }
      plot=$2; shift ;;
    -*) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    *) scenarios+=("$1") ;;
  esac
  shift
done

nodus_install_deps || exit 1
dir=build-bench
[ -f $dir/build.ninja ] || meson setup $dir --buildtype=release -Dtests=false >/dev/null || exit 1
ninja -C $dir bench/nodus-bench tools/nodus tools/nodus-portmapper bench/anchors/zmq/oneway bench/anchors/zmq/pingpong \
  bench/anchors/tcp/tcp_bench >/dev/null || { echo "build failed" >&2; exit 1; }
export ANCHOR_BUILD=$PWD/$dir/bench/anchors  # the raw libzmq and raw TCP anchors, built by meson
bench=$dir/bench/nodus-bench
((${#scenarios[@]})) || mapfile -t scenarios < <($bench --list)

# nodus result name | anchor result name | anchor set that produces it (self: nodus-bench) | better when
pairs=(
  "local_send|erlang.local_send|erlang:local_send|higher"
  "local_send|caf_local_send|caf:local_send|higher"
  "local_spawn|erlang.local_spawn|erlang:local_spawn|lower"
  "local_spawn_mem|erlang.local_spawn_mem|erlang:local_spawn|lower"
  "local_spawn|caf_local_spawn|caf:local_spawn|lower"
  "local_spawn_mem|caf_local_spawn_mem|caf:local_spawn|lower"
  "dist_oneway_small|erlang.dist_oneway_small|erlang:dist_oneway_small|higher"
  "dist_oneway_small|zmq_oneway_small_1frame|zmq:all|higher"
  "dist_oneway_small|tcp_oneway_48B_batched|tcp:all|higher"
  "dist_oneway_1k|erlang.dist_oneway_1k|erlang:dist_oneway_1k|higher"
  "dist_oneway_1k|zmq_oneway_1k|zmq:all|higher"
  "dist_oneway_1k|tcp_oneway_1036B_batched|tcp:all|higher"
  "dist_pingpong|erlang.dist_pingpong|erlang:dist_pingpong|higher"
  "dist_pingpong_p50|erlang.dist_pingpong_p50|erlang:dist_pingpong|lower"
  "dist_pingpong_p50|zmq_pingpong_median|zmq:all|lower"
  "dist_pingpong_p50|tcp_pingpong_spin_median|tcp:all|lower"
  "dist_pingpong_p99|zmq_pingpong_p99|zmq:all|lower"
  "dist_pingpong_proc|erlang.dist_pingpong|erlang:dist_pingpong|higher"
  "dist_pingpong_proc_p50|erlang.dist_pingpong_p50|erlang:dist_pingpong|lower"
  "dist_pingpong_proc_p50|tcp_pingpong_spin_median|tcp:all|lower"
  "dist_oneway_small_curve|zmq_oneway_small_curve|zmq:all|higher"
  "dist_oneway_small_curve|dist_oneway_small|self|higher"
  "dist_pingpong_curve_p50|zmq_pingpong_curve_median|zmq:all|lower"
  "dist_pingpong_curve_p99|zmq_pingpong_curve_p99|zmq:all|lower"
  "dist_task_async_await|erlang.dist_task_async_await|erlang:dist_task_async_await|higher"
  "dist_task_async_await_c64|erlang.dist_task_async_await_c64|erlang:dist_task_async_await_c64|higher"
  "gateway_task_roundtrip|dist_task_async_await|self|higher"
  "gateway_task_roundtrip|erlang.dist_task_async_await|erlang:dist_task_async_await|higher"
  "zmq_port_pull|zmq_oneway_small|zmq:all|higher"
  "zmq_port_reqrep|zmq_pingpong|zmq:all|higher"
  "zmq_port_reqrep_p50|zmq_pingpong_median|zmq:all|lower"
  "zmq_port_reqrep_p99|zmq_pingpong_p99|zmq:all|lower"
  "dist_stall_rss_mb|erlang.dist_stall_rss_mb|erlang:dist_stall|lower"
  "dist_stall_resume|erlang.dist_stall_resume|erlang:dist_stall|higher"
  "dist_senders_1|erlang.dist_senders_1|erlang:dist_senders|higher"
  "dist_senders_64|erlang.dist_senders_64|erlang:dist_senders|higher"
  "dist_senders_10000|erlang.dist_senders_10000|erlang:dist_senders|higher"
  "dist_spawn|erlang.dist_spawn|erlang:dist_spawn|higher"
  "dist_spawn_c64|erlang.dist_spawn_c64|erlang:dist_spawn|higher"
  "dist_mixed_p50|erlang.dist_mixed_p50|erlang:dist_mixed|lower"
  "dist_mixed_p99|erlang.dist_mixed_p99|erlang:dist_mixed|lower"
  "dist_mixed_p50|tcp_pingpong_spin_median|tcp:all|lower"
)
for size in 16B 256B 4KiB 64KiB 1MiB 16MiB; do
  pairs+=("dist_size_$size|tcp_size_$size|tcp:size|higher" "dist_size_$size|zmq_size_$size|zmq:size|higher"
          "dist_size_$size|erlang.dist_size_$size|erlang:dist_size|higher")
done
for n in 2 4 8 16; do
  pairs+=("dist_cluster_${n}_startup_ms|erlang.dist_cluster_${n}_startup_ms|erlang:dist_cluster|lower"
          "dist_cluster_${n}_mesh_ms|erlang.dist_cluster_${n}_mesh_ms|erlang:dist_cluster|lower"
          "dist_cluster_${n}_rss_mb|erlang.dist_cluster_${n}_rss_mb|erlang:dist_cluster|lower"
          "dist_cluster_${n}_all2all|erlang.dist_cluster_${n}_all2all|erlang:dist_cluster|higher")
done

# The targets: nodus result | anchor | >= or <= | the ratio nodus/anchor (bench/targets.txt)
mapfile -t targets < <(grep -v '^#' bench/targets.txt | grep .)

out=$dir/bench-results.txt
: >"$out"
if ((with_anchors)) && [ ! -d "$anchors" ]; then
  echo "anchors not found at $anchors (set NODUS_ANCHORS, or --no-anchors)" >&2
  exit 1
fi
erlang_ready() {  # erl (and elixir for the Task.Supervisor scenarios), installed as root if missing
  command -v erl >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -qq erlang-base erlang-dev >/dev/null; }
  [[ $1 != dist_task_* ]] || command -v elixir >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -qq elixir >/dev/null; }
  command -v erl >/dev/null
}

run_anchor() {  # set:scenario
  local set=${1%%:*} s=${1#*:}
  echo "== anchor $set $s" >&2
  case $set in
    erlang)
      erlang_ready "$s" || { echo "erl is missing (apt-get install erlang-base)" >&2; return 1; }
      "$anchors/erlang/$s.sh" 2>/dev/null | grep '^RESULT ' | sed 's/^RESULT name=/RESULT name=erlang./' ;;
    zmq)
      "$anchors/zmq/run.sh" $([[ $s == size ]] && echo size) 2>/dev/null | grep '^RESULT ' ;;
    tcp)
      "$anchors/tcp/run.sh" $([[ $s == size ]] && echo size) 2>/dev/null | grep '^RESULT ' ;;
    caf)
      local bin=${ANCHOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nodus-anchors}/caf/bin/caf_bench
      if [ ! -x "$bin" ]; then
        [ -d /usr/include/caf ] || { [ "$(id -u)" = 0 ] && apt-get install -y -qq libcaf-dev >/dev/null; }
        "$anchors/caf/build.sh" >&2 || return 1
      fi
      timeout -k 5 160 "$bin" "$s" 2>/dev/null | grep '^RESULT ' ;;
  esac
}

needed=()
if ((with_anchors)); then
  for p in "${pairs[@]}"; do
    IFS='|' read -r n a src better <<<"$p"
    [[ $src == self ]] && continue  # a nodus scenario against another nodus scenario
    for s in "${scenarios[@]}"; do
      if [[ $n == "$s" || $n == "${s}_"* ]] && [[ ! " ${needed[*]} " == *" $src "* ]]; then needed+=("$src"); fi
    done
  done
fi

for ((round = 1; round <= repeat; round++)); do
  ((repeat > 1)) && echo "== round $round of $repeat" >&2
  echo "== nodus-bench ${scenarios[*]}" >&2
  $bench "${scenarios[@]}" | tee -a "$out" | grep '^RESULT' >&2
  for src in "${needed[@]}"; do run_anchor "$src" | tee -a "$out" >&2; done
done

# the median of a result's values over the rounds, and their range
values() { awk -v n="$1" '$1=="RESULT" && $2=="name="n {sub("value=","",$3); print $3}' "$out" | sort -g; }
value() { values "$1" | awk '{v[NR]=$1} END {if (NR) print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
range() { values "$1" | awk 'NR==1{lo=$1} {hi=$1} END {if (NR>1) printf "[%s-%s]", lo, hi}'; }
unit() { awk -v n="$1" '$1=="RESULT" && $2=="name="n {sub("unit=","",$4); print $4; exit}' "$out"; }

((repeat > 1)) && printf '\nmedians of %d rounds, [lowest-highest] after each row' "$repeat"
printf '\n%-22s %14s %-28s %14s %9s\n' "scenario" "nodus" "anchor" "anchor value" "ratio"
for s in $(awk '$1=="RESULT"{sub("name=","",$2); print $2}' "$out" | grep -v '\.' | grep -v '^caf_' | grep -v '^tcp_' | awk '!/^zmq_/ || /^zmq_port_/' | sort -u); do
  v=$(value "$s")
  shown=0
  for p in "${pairs[@]}"; do
    IFS='|' read -r n a src better <<<"$p"
    [[ $n == "$s" ]] || continue
    av=$(value "$a")
    [ -n "$av" ] || continue
    ratio=$(awk -v x="$v" -v y="$av" 'BEGIN{ if (y>0) printf "%.2fx", x/y; else print "-" }')
    spread=""
    ((repeat > 1)) && spread=" nodus $(range "$s"), anchor $(range "$a")"
    printf '%-22s %14s %-28s %14s %9s  (%s is better)%s\n' "$s" "$v $(unit "$s")" "$a" "$av" "$ratio" "$better" "$spread"
    shown=1
  done
  ((shown)) || printf '%-22s %14s %-28s %14s %9s\n' "$s" "$v $(unit "$s")" "(no anchor)" "-" "-"
done

# the targets: each ratio of medians, and whether it reaches the target
tline() {  # NAME ANCHOR OP WANT
  local v av
  v=$(value "$1"); av=$(value "$2")
  [[ -n $v && -n $av ]] || return 0
  awk -v x="$v" -v y="$av" -v op="$3" -v want="$4" -v n="$1" -v a="$2" 'BEGIN {
    r = (y > 0) ? x / y : 0
    ok = (op == ">=") ? (r >= want) : (r <= want)
    printf "%-26s %-30s %8.2fx %s %-5s %s\n", n, a, r, op, want "x", ok ? "met" : "MISSED" }'
}
header=0
for t in "${targets[@]}"; do
  IFS='|' read -r n a op want <<<"$t"
  line=$(tline "$n" "$a" "$op" "$want")
  [[ -n $line ]] || continue
  ((header)) || { printf '\ntargets (ratio of medians in this run)\n'; header=1; }
  echo "$line"
done

if [[ -n $plot ]]; then
  command -v gnuplot >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -qq gnuplot-nox >/dev/null; }
  python3 scripts/plot_bench.py "$out" "$plot" || exit 1
fi
