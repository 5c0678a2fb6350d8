#!/usr/bin/env python3
"""Per-call latency timeline of a sequential request/response between two nodes.

Build with tracing and run a sequential bench, then report:
  meson setup build-trace --buildtype=release -Dtests=false -Dtrace=true
  ninja -C build-trace bench/nodus-bench tools/nodus tools/nodus-portmapper
  rm -f /tmp/*.trace; ./build-trace/bench/nodus-bench -n 20000 dist_task_async_await
  ./scripts/trace_report.py /tmp/<caller pid>.trace /tmp/<peer pid>.trace

Both nodes run on one machine, so their CLOCK_MONOTONIC marks are comparable. A cycle starts
at each zmq_sent of the caller's node (`a`); every point of either node (`b` is the peer) is
shown at its median offset into the cycle, with the quartiles, by its n-th occurrence in the
cycle. Points are those of src/runtime/trace.hpp.
"""
import argparse
import statistics
import sys

POINTS = {1: "zmq_sent", 2: "router_read", 3: "run", 4: "spawn", 5: "io_woke",
          6: "enqueue_ext", 7: "futex_wake", 8: "park", 9: "terminate"}


def load(path, tag):
    events = []
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                parts = line.split()
                if len(parts) != 3:
                    sys.exit(f"{path}:{n}: expected 'ns point tid', got {line.strip()!r}")
                events.append((int(parts[0]), tag, int(parts[1])))
    except OSError as e:
        sys.exit(f"cannot read {path}: {e.strerror}")
    return events


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("caller", help="trace file of the node that sends the requests (a)")
    ap.add_argument("peer", help="trace file of the node that answers (b)")
    ap.add_argument("--skip", type=float, default=0.25, help="leading fraction of cycles to skip (warm-up)")
    ap.add_argument("--min-share", type=float, default=0.2,
                    help="show a point only if it occurs in at least this share of cycles")
    args = ap.parse_args()
    events = sorted(load(args.caller, "a") + load(args.peer, "b"))
    starts = [i for i, e in enumerate(events) if e[1] == "a" and e[2] == 1]
    starts = starts[int(len(starts) * args.skip):]
    if len(starts) < 2:
        sys.exit("fewer than two cycles: is the first file the caller's, and was it built with -Dtrace=true?")
    offsets, cycles = {}, []
    for s, e in zip(starts, starts[1:]):
        t0 = events[s][0]
        cycles.append(events[e][0] - t0)
        seen = {}
        for k in range(s, e):
            key = (events[k][1], events[k][2])
            seen[key] = seen.get(key, 0) + 1
            offsets.setdefault((key, seen[key]), []).append(events[k][0] - t0)

    def q(v, f):
        v = sorted(v)
        return v[min(len(v) - 1, int(f * len(v)))] / 1e3

    n = len(cycles)
    print(f"{n} cycles; median {statistics.median(cycles) / 1e3:.1f} us [p25 {q(cycles, .25):.1f}, p75 {q(cycles, .75):.1f}]")
    rows = sorted((statistics.median(v), key, len(v), v) for key, v in offsets.items() if len(v) >= n * args.min_share)
    for med, ((tag, point), nth), count, v in rows:
        print(f"{med / 1e3:8.1f} us [{q(v, .25):6.1f} {q(v, .75):6.1f}]  {tag} {POINTS.get(point, point):12s} #{nth}"
              f"  in {count / n * 100:.0f}% of cycles")


if __name__ == "__main__":
    main()
