#!/bin/bash
# dist_senders (bench.erl): two OS-process nodes a@localhost -> b@localhost on loopback. Usage: ./dist_senders.sh [N]
case ${1:-} in -h|--help) sed -n '2,/^[^#]/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
source "$(dirname "$0")/lib.sh"
build; start_epmd; start_b_erl
run_a_erl dist_senders ${1:-1000000}
wait_b
