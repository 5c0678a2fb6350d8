#!/bin/bash
# dist_mixed (bench.erl): two OS-process nodes a@localhost -> b@localhost on loopback. Usage: ./dist_mixed.sh [N]
source "$(dirname "$0")/lib.sh"
build; start_epmd; start_b_erl
run_a_erl dist_mixed ${1:-2000}
wait_b
