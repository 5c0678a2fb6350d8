#!/bin/bash
# dist_cluster (bench.erl): 2, 4, 8 and 16 Erlang nodes c1..cN and a coordinator a@localhost:
# startup, full mesh, RSS per node, all-to-all throughput. Usage: ./dist_cluster.sh [SIZES...]
case ${1:-} in -h|--help) sed -n '2,/^[^#]/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
source "$(dirname "$0")/lib.sh"
build; start_epmd
sizes=("$@"); ((${#sizes[@]})) || sizes=(2 4 8 16)
C_PIDS=()
stop_cs() {
  for p in "${C_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${C_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  C_PIDS=()
}
trap 'stop_cs; cleanup' EXIT
for n in "${sizes[@]}"; do
  launch=$(date +%s%3N)
  for i in $(seq 1 "$n"); do
    timeout 160 erl -sname "c$i@localhost" -setcookie $COOKIE -noshell -pa "$EBIN" -run bench c_main >"$LOGDIR/c$i.log" 2>&1 &
    C_PIDS+=($!)
  done
  timeout 160 erl -sname a@localhost -setcookie $COOKIE -noshell -pa "$EBIN" -run bench cluster_main "$n" "$launch"
  # the nodes halt when a tells them to; bounded
  for _ in $(seq 100); do
    alive=0; for p in "${C_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break; sleep 0.1
  done
  stop_cs
done
