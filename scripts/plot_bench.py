#!/usr/bin/env python3
"""Draws a bench run's curves and target ratios as SVGs (gnuplot).

    plot_bench.py RESULTS OUTDIR

RESULTS: the RESULT lines of a run (scripts/bench.sh writes build-bench/bench-results.txt),
`RESULT name=NAME value=V unit=U`, one per scenario and round. Each name's median over the
rounds is drawn with its range (lowest to highest). What is drawn, where the run has it:
  size_msgs.svg   messages/s against message size: nodus (dist_size_*), raw TCP, raw libzmq,
                  Erlang
  size_bytes.svg  the same as payload bytes/s
  senders.svg     remote one-way messages/s with 1, 64 and 10,000 sender processes
  spawn.svg       remote spawns + first reply per second, in a row and from 64 spawners
  mixed.svg       small round trips (p50, p99) beside a stream of 16 MiB messages, and alone
  cluster.svg     time from launch to all nodes up, to a full mesh, and RSS per node, against
                  the number of nodes; cluster_all2all.svg: all-to-all messages/s
  targets.svg     each target of bench/targets.txt: the ratio's share of its target (1 = met)
Prints the files it wrote; exits 1 if RESULTS has no RESULT line or gnuplot fails.
"""
import os
import pathlib
import re
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SIZES = [("16B", 16), ("256B", 256), ("4KiB", 4096), ("64KiB", 65536), ("1MiB", 1 << 20), ("16MiB", 1 << 24)]
LINE = re.compile(r"^RESULT name=(\S+) value=(\S+) unit=(\S+)")


def read(path):
    vals, units = {}, {}
    for line in open(path, encoding="utf-8", errors="replace"):
        m = LINE.match(line.strip())
        if not m:
            continue
        try:
            v = float(m.group(2))
        except ValueError:
            continue
        vals.setdefault(m.group(1), []).append(v)
        units[m.group(1)] = m.group(3)
    return {k: (statistics.median(v), min(v), max(v)) for k, v in vals.items()}, units


def gnuplot(script, out):
    r = subprocess.run(["gnuplot"], input=script, capture_output=True, text=True)
    if r.returncode != 0 or not out.exists():
        sys.stderr.write(f"gnuplot failed for {out.name}:\n{r.stderr}")
        return False
    return True


def head(out, title, xlabel, ylabel, extra=""):
    return (f"set terminal svg size 900,540 dynamic enhanced font 'sans,12' background rgb 'white'\n"
            f"set output '{out}'\nset title \"{title}\"\nset xlabel \"{xlabel}\"\nset ylabel \"{ylabel}\"\n"
            f"set grid\nset key below\nset autoscale xfix\nset offsets graph 0.03, graph 0.03, 0, 0\n{extra}")


def series_block(name, rows):
    """A gnuplot data block: x median low high [label]."""
    body = "\n".join(" ".join(str(c) for c in r) for r in rows)
    return f"${name} << EOD\n{body}\nEOD\n"


def curve_plot(out, title, xlabel, ylabel, series, logx=True, logy=True, xtics=None):
    """series: [(label, [(x, med, lo, hi)])]: lines with error bars; xtics: [(label, x)]."""
    series = [(l, rows) for l, rows in series if rows]
    if not series:
        return False
    s = head(out, title, xlabel, ylabel, ("set logscale x\n" if logx else "") + ("set logscale y\n" if logy else ""))
    xs = sorted({r[0] for _, rows in series for r in rows})
    tics = xtics or [(str(x), x) for x in xs]
    s += "set xtics (" + ", ".join(f'"{l}" {x}' for l, x in tics) + ")\n"
    plots = []
    for i, (label, rows) in enumerate(series):
        s += series_block(f"d{i}", rows)
        plots.append(f"$d{i} using 1:2:3:4 with yerrorlines lw 2 title \"{label}\"")
    s += "plot " + ", \\\n     ".join(plots) + "\n"
    return gnuplot(s, out)


def bar_plot(out, title, ylabel, groups, logy=False):
    """groups: [(category, [(series label, med, lo, hi)])]: clustered bars with ranges."""
    labels = []
    for _, items in groups:
        for l, *_ in items:
            if l not in labels:
                labels.append(l)
    if not groups or not labels:
        return False
    s = head(out, title, "", ylabel, "set style data histogram\nset style histogram errorbars gap 2 lw 1\n"
             "set style fill solid 0.6 border -1\nset yrange [0:*]\n" + ("set logscale y\n" if logy else ""))
    rows = []
    for cat, items in groups:
        d = {l: (m, lo, hi) for l, m, lo, hi in items}
        row = [f'"{cat}"']
        for l in labels:
            m, lo, hi = d.get(l, ("NaN", "NaN", "NaN"))
            row += [m, lo, hi]
        rows.append(row)
    s += series_block("d", rows)
    plots = [f"$d using {2 + 3 * i}:{3 + 3 * i}:{4 + 3 * i}:xtic(1) title \"{l}\"" for i, l in enumerate(labels)]
    s += "plot " + ", \\\n     ".join(plots) + "\n"
    return gnuplot(s, out)


def targets(path):
    out = []
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line and not line.startswith("#"):
            n, a, op, want = line.split("|")
            out.append((n, a, op, float(want)))
    return out


def main():
    if len(sys.argv) != 3 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(sys.argv) == 2 else 2
    res, units = read(sys.argv[1])
    if not res:
        sys.stderr.write(f"{sys.argv[1]}: no RESULT line\n")
        return 1
    outdir = pathlib.Path(sys.argv[2])
    outdir.mkdir(parents=True, exist_ok=True)
    wrote, failed = [], []
    get = res.get

    def drew(name, done):
        (wrote if done else failed).append(outdir / name)

    def points(key, xs):
        """(x, median, low, high) for each x whose result key(x) the run has"""
        return [(x,) + res[key(x)] for x in xs if key(x) in res]

    # message size
    kinds = [("nodus", "dist_size_"), ("raw TCP", "tcp_size_"), ("raw libzmq", "zmq_size_"),
             ("Erlang/OTP", "erlang.dist_size_")]
    msgs, byts = [], []
    for label, prefix in kinds:
        rows = [(size,) + res[prefix + l] for l, size in SIZES if prefix + l in res]
        msgs.append((label, rows))
        byts.append((label, [(x, m * x / 1e6, lo * x / 1e6, hi * x / 1e6) for x, m, lo, hi in rows]))
    for name, title, ylabel, series in (("size_msgs.svg", "One-way throughput by message size", "messages/s", msgs),
                                        ("size_bytes.svg", "One-way payload throughput by message size", "MB/s", byts)):
        if any(rows for _, rows in series):
            drew(name, curve_plot(outdir / name, title, "message size", ylabel, series, xtics=list(SIZES)))
    # senders
    ser = [(label, points(lambda k: f"{p}{k}", (1, 64, 10000)))
           for label, p in (("nodus", "dist_senders_"), ("Erlang/OTP", "erlang.dist_senders_"))]
    if any(r for _, r in ser):
        drew("senders.svg", curve_plot(outdir / "senders.svg", "Remote one-way throughput by sender processes",
                                       "sender processes", "messages/s", ser, logy=False))
    # groups of bars
    for name, title, ylabel, cats in (
            ("spawn.svg", "Remote spawn + first reply", "spawns/s",
             [("in a row", "dist_spawn"), ("64 spawners", "dist_spawn_c64")]),
            ("mixed.svg", "Small round trips beside 16 MiB messages", "microseconds",
             [("p50 beside 16 MiB", "dist_mixed_p50"), ("p99 beside 16 MiB", "dist_mixed_p99"),
              ("p50 alone", "dist_pingpong_p50")])):
        groups = []
        for cat, n in cats:
            items = [(lab, *get(p + n)) for lab, p in (("nodus", ""), ("Erlang/OTP", "erlang."))
                     if get(p + n)]
            if n == "dist_pingpong_p50" and get("tcp_pingpong_spin_median"):
                items.append(("raw TCP (spinning)", *get("tcp_pingpong_spin_median")))
            if items:
                groups.append((cat, items))
        if groups and any(lab == "nodus" for _, items in groups for lab, *_ in items):
            drew(name, bar_plot(outdir / name, title, ylabel, groups, logy=name == "mixed.svg"))
    # cluster size
    cl, aa = [], []
    for who, p in (("nodus", "dist_cluster_"), ("Erlang/OTP", "erlang.dist_cluster_")):
        for what, suffix in (("ms from launch to all up", "_startup_ms"), ("ms to a full mesh", "_mesh_ms"),
                             ("RSS per node, MB", "_rss_mb")):
            cl.append((f"{who}: {what}", points(lambda k: f"{p}{k}{suffix}", (2, 4, 8, 16))))
        aa.append((who, points(lambda k: f"{p}{k}_all2all", (2, 4, 8, 16))))
    for name, title, ylabel, series, logy in (
            ("cluster.svg", "Cluster size: start, mesh and memory", "ms / MB", cl, True),
            ("cluster_all2all.svg", "Cluster size: all-to-all throughput", "messages/s", aa, False)):
        if any(r for _, r in series):
            drew(name, curve_plot(outdir / name, title, "nodes", ylabel, series, logx=True, logy=logy))
    # targets: the share of each target reached (ratio / target, or target / ratio when lower is
    # better), with its range over the rounds
    groups = []
    for n, a, op, want in targets(ROOT / "bench" / "targets.txt"):
        x, y = get(n), get(a)
        if not x or not y or min(y) <= 0 or min(x) <= 0:
            continue
        if op == ">=":
            share = (x[0] / y[0] / want, x[1] / y[2] / want, x[2] / y[1] / want)
        else:
            share = (want / (x[0] / y[0]), want / (x[2] / y[1]), want / (x[1] / y[2]))
        label = f"{n.removeprefix('dist_')}\\n{op} {want:g}x {a.replace('erlang.dist_', 'Erlang ')}"
        groups.append((label.replace("_", "\\\\_"), [("share of the target (1 = met)", *share)]))
    if groups:
        s = head(outdir / "targets.svg", "Targets: the share of each reached (1 = met), range over the rounds", "",
                 "share of the target", "set style data histogram\nset style histogram errorbars gap 1 lw 1\n"
                 "set style fill solid 0.6 border -1\nset yrange [0:*]\nset xtics rotate by -25 font ',9'\n"
                 "set key off\nset bmargin 11\nset rmargin 12\n")
        s += series_block("d", [[f'"{c}"', *items[0][1:]] for c, items in groups])
        s += "plot $d using 2:3:4:xtic(1) lc rgb '#4477aa', 1 with lines lw 2 lc rgb '#cc3311' notitle\n"
        drew("targets.svg", gnuplot(s, outdir / "targets.svg"))
    for w in wrote:
        print(f"wrote {w}")
    if not wrote:
        sys.stderr.write("nothing to draw: the run has none of the plotted scenarios\n")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
