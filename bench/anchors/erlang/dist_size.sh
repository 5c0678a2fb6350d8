#!/bin/bash
# dist_size (bench.erl): two OS-process nodes a@localhost -> b@localhost on loopback. Usage: ./dist_size.sh [SCALE_PERCENT]
source "$(dirname "$0")/lib.sh"
build; start_epmd; start_b_erl
run_a_erl dist_size ${1:-100}
wait_b
