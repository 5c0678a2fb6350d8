#!/usr/bin/env bash
# scripts/plot_bench.py draws what a run's RESULT lines say (not whether the numbers are good):
#   curves      a run with the size, senders, spawn and mixed scenarios and two targets gives
#               size_msgs, size_bytes, senders, spawn, mixed and targets SVGs (well-formed XML,
#               with each series' title), and nothing for what the run does not have (cluster)
#   values      the median of a name's rounds is drawn: changing one round's value changes the
#               drawing, changing a value no plot uses does not
#   refusals    a file with no RESULT line exits 1 and writes nothing
# Prints "ok   bench: ..." or "FAIL bench: ..." per check; exits 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
rc=0
ok() { echo "ok   bench: $*"; }
fail() { echo "FAIL bench: $*"; rc=1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

{
  echo "== round 1 of 2"
  echo "INFO noise: wall=1.0s (lines that are not RESULT lines are skipped)"
  for r in 1 2; do
    for s in 16B:6000000 256B:5000000 4KiB:380000 64KiB:27000 1MiB:1400 16MiB:98; do
      echo "RESULT name=dist_size_${s%%:*} value=$((${s#*:} + r)) unit=msgs/s"
      echo "RESULT name=tcp_size_${s%%:*} value=$((${s#*:} * 3 + r)) unit=msgs/s"
      echo "RESULT name=zmq_size_${s%%:*} value=$((${s#*:} / 2 + r)) unit=msgs/s"
    done
    echo "RESULT name=erlang.dist_size_16B value=438756 unit=msgs/s"
    echo "RESULT name=dist_senders_1 value=5712500 unit=msgs/s"
    echo "RESULT name=dist_senders_64 value=4464190 unit=msgs/s"
    echo "RESULT name=dist_senders_10000 value=4307635 unit=msgs/s"
    echo "RESULT name=erlang.dist_senders_64 value=486792 unit=msgs/s"
    echo "RESULT name=dist_spawn value=24254 unit=spawns/s"
    echo "RESULT name=erlang.dist_spawn_c64 value=75038 unit=spawns/s"
    echo "RESULT name=dist_mixed_p50 value=34.8 unit=us"
    echo "RESULT name=erlang.dist_mixed_p99 value=5940 unit=us"
    echo "RESULT name=dist_oneway_small value=57${r}0000 unit=msgs/s"
    echo "RESULT name=zmq_oneway_small_1frame value=4800000 unit=msgs/s"
    echo "RESULT name=dist_pingpong_p50 value=3$r.5 unit=us"
    echo "RESULT name=tcp_pingpong_spin_median value=6.7 unit=us"
    echo "RESULT name=local_send value=25000000 unit=msgs/s"
  done
} >"$work/results.txt"

if out=$(python3 scripts/plot_bench.py "$work/results.txt" "$work/a" 2>&1); then
  want=(size_msgs size_bytes senders spawn mixed targets)
  missing=()
  for w in "${want[@]}"; do
    f=$work/a/$w.svg
    if ! python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' "$f" 2>/dev/null; then
      missing+=("$w.svg (missing or not XML)")
    fi
  done
  for t in nodus "raw TCP" "raw libzmq" Erlang/OTP; do grep -q ">$t<" "$work/a/size_msgs.svg" || missing+=("size_msgs: series '$t'"); done
  grep -q 'oneway.small' "$work/a/targets.svg" || missing+=("targets: dist_oneway_small")
  grep -q 'task.async.await' "$work/a/targets.svg" && missing+=("targets: a target the run has no data for")
  [[ -e $work/a/cluster.svg ]] && missing+=("cluster.svg without cluster results")
  n=$(ls "$work/a" | wc -l)
  if ((${#missing[@]} == 0 && n == 6)); then
    ok "plots: a run's RESULT lines give 6 well-formed SVGs with their series, none for what it lacks"
  else
    fail "plots: $n files; ${missing[*]}"; echo "$out"
  fi
else
  fail "plots: plot_bench.py failed:"; echo "$out"
fi

# one round's value of dist_size_1MiB moves the size plots; a value no plot draws moves nothing
sed 's/^RESULT name=dist_size_1MiB value=1402 /RESULT name=dist_size_1MiB value=9402 /' "$work/results.txt" >"$work/moved.txt"
sed 's/^RESULT name=local_send value=25000000 /RESULT name=local_send value=1 /' "$work/results.txt" >"$work/same.txt"
python3 scripts/plot_bench.py "$work/moved.txt" "$work/b" >/dev/null 2>&1
python3 scripts/plot_bench.py "$work/same.txt" "$work/c" >/dev/null 2>&1
if ! cmp -s "$work/a/size_msgs.svg" "$work/b/size_msgs.svg" && cmp -s "$work/a/size_msgs.svg" "$work/c/size_msgs.svg" &&
   cmp -s "$work/a/spawn.svg" "$work/b/spawn.svg"; then
  ok "plots: a round's value moves its curve and nothing else"
else
  fail "plots: the drawings do not follow the values (moved: size_msgs $(cmp -s "$work/a/size_msgs.svg" "$work/b/size_msgs.svg" && echo same || echo changed), unused value: $(cmp -s "$work/a/size_msgs.svg" "$work/c/size_msgs.svg" && echo same || echo changed))"
fi

echo "no results here" >"$work/empty.txt"
if ! python3 scripts/plot_bench.py "$work/empty.txt" "$work/d" >/dev/null 2>&1 && [[ -z $(ls -A "$work/d" 2>/dev/null) ]]; then
  ok "plots: a file with no RESULT line is refused and draws nothing"
else
  fail "plots: a file with no RESULT line was not refused"
fi
exit $rc
