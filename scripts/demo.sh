#!/usr/bin/env bash
# Installs what is missing, builds nodus, and runs the demo: a tour of the local runtime, then
# the lesson's first steps across OS processes (kate runs `chat`, alex is a `nodus shell`).
# Everything it starts runs on a private port mapper port and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
case ${1:-} in -h|--help) sed -n '2,4p' "$0" | sed 's/^# //'; exit 0 ;; esac
nodus_install_deps
[ -f build/build.ninja ] || meson setup build -Dwerror=true >/dev/null
ninja -C build examples/nodus-local-demo examples/chat tools/nodus tools/nodus-portmapper >/dev/null

echo "=== 1. processes on one node"
./build/examples/nodus-local-demo 2>/dev/null

echo
echo "=== 2. the lesson across OS processes: kate@localhost and alex@localhost"
export NODUS_PORTMAPPER_PORT=$((40000 + RANDOM % 20000)) NODUS_COOKIE=secret_token
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
./build/tools/nodus-portmapper 2>"$work/pm.log" & pids+=($!)
for _ in $(seq 100); do ./build/tools/nodus names >/dev/null 2>&1 && break; sleep 0.05; done
./build/examples/chat --sname kate@localhost >"$work/kate.out" 2>"$work/kate.err" & pids+=($!)
for _ in $(seq 100); do ./build/tools/nodus names 2>/dev/null | grep -q kate && break; sleep 0.05; done

lesson='spawn_link kate@localhost Kate.say_name
pid = spawn_link kate@localhost Kate.reply_sup
send pid {hi, self()}
receive
flush'
echo "$lesson" | sed 's/^/alex> /'
echo "$lesson" | ./build/tools/nodus shell --sname alex@localhost 2>"$work/alex.err" | sed 's/^/alex | /'
sed 's/^/kate | /' "$work/kate.out"
echo "(kate printed $(wc -l <"$work/kate.out") lines: Kate.say_name's output went to alex, its caller's group leader)"
echo
echo "=== 3. a wrong cookie"
echo "bob> nodus ping kate@localhost --sname bob@localhost --cookie wrong"
./build/tools/nodus ping kate@localhost --sname bob@localhost --cookie wrong 2>/dev/null | sed 's/^/bob  | /' || true
grep -o '\*\* Connection attempt.*\*\*' "$work/kate.err" | sed 's/^/kate log | /'
