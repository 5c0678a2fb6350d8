#!/bin/bash
# dist_spawn (bench.erl): two OS-process nodes a@localhost -> b@localhost on loopback. Usage: ./dist_spawn.sh [N]
source "$(dirname "$0")/lib.sh"
build; start_epmd; start_b_erl
run_a_erl dist_spawn ${1:-20000}
wait_b
