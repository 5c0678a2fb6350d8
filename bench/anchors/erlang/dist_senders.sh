#!/bin/bash
# dist_senders (bench.erl): two OS-process nodes a@localhost -> b@localhost on loopback. Usage: ./dist_senders.sh [N]
source "$(dirname "$0")/lib.sh"
build; start_epmd; start_b_erl
run_a_erl dist_senders ${1:-1000000}
wait_b
