#!/bin/bash
# dist_mixed (bench.erl): two OS-process nodes a@localhost -> b@localhost on loopback. Usage: ./dist_mixed.sh [N]
case ${1:-} in -h|--help) sed -n '2,/^[^#]/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
source "$(dirname "$0")/lib.sh"
build; start_epmd; start_b_erl
run_a_erl dist_mixed ${1:-2000}
wait_b
