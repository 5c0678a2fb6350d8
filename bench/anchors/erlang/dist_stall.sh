#!/usr/bin/env bash
# The dist_stall anchor on Erlang/OTP (stall.erl beside this script): a streams to b, b is
# stopped (SIGSTOP) for 10 s; prints RESULT lines for a's RSS rise and the resume rate.
# Needs erl (Debian: erlang-base). Uses a private epmd port and a temporary build folder.
case ${1:-} in -h|--help) sed -n '2,/^[^#]/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
export ERL_EPMD_PORT=${ERL_EPMD_PORT:-43691}
b_pid=""
cleanup() {
  [ -n "$b_pid" ] && kill -CONT "$b_pid" 2>/dev/null; [ -n "$b_pid" ] && kill "$b_pid" 2>/dev/null
  epmd -port "$ERL_EPMD_PORT" -kill >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
erlc -o "$work" "$here/stall.erl"
epmd -port "$ERL_EPMD_PORT" -daemon
timeout 120 erl -sname b@localhost -setcookie stall_anchor -noshell -pa "$work" -run stall b_main >"$work/b.log" 2>&1 &
b_pid=$!
timeout 120 erl -sname a@localhost -setcookie stall_anchor -noshell -pa "$work" -run stall a_main
