#!/bin/bash
# dist_size (bench.erl): two OS-process nodes a@localhost -> b@localhost on loopback. Usage: ./dist_size.sh [SCALE_PERCENT]
case ${1:-} in -h|--help) sed -n '2,/^[^#]/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
source "$(dirname "$0")/lib.sh"
build; start_epmd; start_b_erl
run_a_erl dist_size ${1:-100}
wait_b
