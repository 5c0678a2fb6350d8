#!/usr/bin/env bash
# Installs what is missing, builds nodus, and runs the demo: a tour of the local runtime, the
# lesson's first steps across OS processes (kate runs `chat`, alex is a `nodus shell`), a wrong
# cookie, the lesson's Chat application as three nodes (alex, kate and moebi), and the same
# chat in CURVE mode with a Python (pyzmq) peer speaking the wire protocol with JSON payloads.
# Everything it starts runs on a private port mapper port and is stopped at the end.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
case ${1:-} in -h|--help) sed -n '2,6p' "$0" | sed 's/^# //'; exit 0 ;; esac
nodus_install_deps
[ -f build/build.ninja ] || meson setup build -Dwerror=true >/dev/null
ninja -C build examples/nodus-local-demo examples/chat tools/nodus tools/nodus-portmapper >/dev/null

echo "=== 1. processes on one node"
./build/examples/nodus-local-demo 2>/dev/null

echo
echo "=== 2. the lesson across OS processes: kate@localhost and alex@localhost"
export NODUS_PORTMAPPER_PORT=$((20000 + RANDOM % 12000)) NODUS_COOKIE=secret_token  # below the ephemeral range
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# A failed step says which, with the nodes' logs (a write to a stopped node's stdin fails, it
# does not kill the demo silently).
trap '' PIPE
on_error() {
  echo "demo: failed at line $1: $2" >&2
  for f in "$work"/*.err "$work"/*.log; do [ -s "$f" ] && { echo "--- ${f##*/} (last 20 lines)"; tail -n 20 "$f"; }; done >&2
}
trap 'on_error $LINENO "$BASH_COMMAND"' ERR
# wait_for FILE TEXT: until FILE shows TEXT (30 s at most)
wait_for() {
  for _ in $(seq 600); do grep -qF -- "$2" "$1" 2>/dev/null && return; sleep 0.05; done
  echo "(no '$2' in ${1##*/} after 30 s)" >&2
  return 1
}
./build/tools/nodus-portmapper 2>"$work/pm.log" & pids+=($!)
for _ in $(seq 100); do ./build/tools/nodus names >/dev/null 2>&1 && break; sleep 0.05; done
./build/examples/chat --sname kate@localhost >"$work/kate.out" 2>"$work/kate.err" & kate_pid=$!; pids+=($!)
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
wait_for "$work/kate.err" "** Connection attempt"
grep -o '\*\* Connection attempt.*\*\*' "$work/kate.err" | sed 's/^/kate log | /'

echo
echo "=== 4. the Chat application: alex, kate and moebi (Task.Supervisor on each node)"
kill "$kate_pid"; wait "$kate_pid" 2>/dev/null || true   # the chat of section 2 makes room
for _ in $(seq 200); do ./build/tools/nodus names 2>/dev/null | grep -q "name kate " || break; sleep 0.05; done
mkfifo "$work/alex.in" "$work/kate.in"
./build/examples/chat --sname kate@localhost <"$work/kate.in" >"$work/chat-kate.out" 2>"$work/chat-kate.err" & pids+=($!)
./build/examples/chat --sname moebi@localhost </dev/null >"$work/chat-moebi.out" 2>"$work/chat-moebi.err" & moebi_pid=$!; pids+=($!)
./build/examples/chat --sname alex@localhost <"$work/alex.in" >"$work/chat-alex.out" 2>"$work/chat-alex.err" & pids+=($!)
exec 7>"$work/alex.in" 8>"$work/kate.in"
for n in alex kate moebi; do
  for _ in $(seq 200); do ./build/tools/nodus names 2>/dev/null | grep -q "name $n " && break; sleep 0.05; done
done
# say NODE FD LINE FILE TEXT: type LINE into NODE's stdin, then wait until FILE shows TEXT
say() {
  echo "$1> $3"
  echo "$3" >&"$2"
  wait_for "$4" "$5"
}
say alex 7 "kate@localhost hi" "$work/chat-kate.out" "hi"
say kate 8 "alex@localhost how are you?" "$work/chat-alex.out" "how are you?"
say alex 7 "moebi@localhost hi" "$work/chat-alex.out" "chicken?"
kill "$moebi_pid"; wait "$moebi_pid" 2>/dev/null || true
echo "(moebi stopped)"
say alex 7 "moebi@localhost hi" "$work/chat-alex.err" "no connection to moebi@localhost"
exec 7>&- 8>&-
for n in alex kate moebi; do sed "s/^/$n | /" "$work/chat-$n.out"; done
grep -h '^error:' "$work/chat-alex.err" | sed 's/^/alex (stderr) | /' || true

echo
echo "=== 5. CURVE mode, and a foreign peer: examples/bridge/bridge.py (pyzmq, JSON payloads)"
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done   # the cookie-mode nodes make room
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
./build/tools/nodus-portmapper 2>"$work/pm2.log" & pids+=($!)
for _ in $(seq 100); do ./build/tools/nodus names >/dev/null 2>&1 && break; sleep 0.05; done
mkdir -p "$work/allow"
for n in kate moebi bridge; do
  mkdir -p "$work/keys/$n"
  ./build/tools/nodus keygen --out "$work/keys/$n" >/dev/null
  cp "$work/keys/$n/node.pub" "$work/allow/$n.pub"
done
echo "(keys: nodus keygen for kate, moebi and bridge; each node accepts the three public keys)"
for n in kate moebi; do
  ./build/examples/chat --sname $n@localhost --curve-key "$work/keys/$n/node.key" --curve-allow "$work/allow" \
    </dev/null >"$work/curve-$n.out" 2>"$work/curve-$n.err" & pids+=($!)
  for _ in $(seq 200); do ./build/tools/nodus names 2>/dev/null | grep -q "name $n " && break; sleep 0.05; done
done
printf 'kate@localhost hi\nmoebi@localhost hi\n!spawn kate@localhost Kate.say_name\n' | sed 's/^/bridge> /'
printf 'kate@localhost hi\nmoebi@localhost hi\n!spawn kate@localhost Kate.say_name\n' |
  /usr/bin/python3 examples/bridge/bridge.py --sname bridge@localhost --curve-key "$work/keys/bridge/node.key" \
    --curve-allow "$work/allow" 2>"$work/bridge.err" | sed 's/^/bridge | /' || true
for n in kate moebi; do sed "s/^/$n | /" "$work/curve-$n.out"; done
echo "bob> nodus ping kate@localhost --sname bob@localhost   (cookie mode)"
./build/tools/nodus ping kate@localhost --sname bob@localhost 2>&1 >/dev/null | sed 's/^.*\] //;s/^/bob (stderr) | /' | tail -n 1 || true
wait_for "$work/curve-kate.err" "** Connection attempt"
grep -o '\*\* Connection attempt.*\*\*' "$work/curve-kate.err" | sed 's/^/kate log | /'
