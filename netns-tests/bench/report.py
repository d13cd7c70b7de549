#!/usr/bin/env python3
"""report.py — turns the raw figures of netns-tests/bench/run.sh into the
table of ratios (medians over rounds, the issue's targets with met/missed)
and a JSON file.

usage: report.py RAW.tsv OUT.json [--meta key=value ...] [--check]
RAW.tsv lines: case, peer, round, metric, value (tab-separated).
--check: exit 1 unless every case produced its figures (the short mode of
CI); the numbers themselves are never judged by it.
"""
import json
import statistics
import sys
from collections import defaultdict


def load(path):
    raw = defaultdict(list)
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 5 or parts[4] == "":
            continue
        case, peer, rnd, metric, value = parts
        try:
            raw[(case, peer, metric)].append(float(value))
        except ValueError:
            pass
    return raw


# (label, case, metric, numerator peer, denominator peer or None,
#  target operator, target value, unit / how to read).
# A ratio row divides numerator by denominator; with no denominator the
# row compares the figure itself with the target.
ROWS = [
    ("1 KiB GET keep-alive, req/s vs HAProxy http", "keepalive_1k", "rps", "edgemesh-http", "haproxy-http", ">=", 1.2),
    ("1 KiB GET keep-alive, req/s vs nginx proxy", "keepalive_1k", "rps", "edgemesh-http", "nginx", ">=", 1.3),
    ("1 KiB GET keep-alive, req/s vs direct", "keepalive_1k", "rps", "edgemesh-http", "direct", None, None),
    ("1 KiB GET keep-alive, CPU/req vs HAProxy", "keepalive_1k", "cpu_us_per_req", "edgemesh-http", "haproxy-http", None, None),
    ("1 KiB GET keep-alive, req per proxy CPU-second vs HAProxy", "keepalive_1k", "rps_per_cpu", "edgemesh-http", "haproxy-http", None, None),
    ("1 KiB GET keep-alive, proxy-bound (same CPU quota), req/s vs HAProxy http", "keepalive_bound", "rps", "edgemesh-http", "haproxy-http", ">=", 1.2),
    ("1 KiB GET keep-alive, proxy-bound, p99 vs HAProxy", "keepalive_bound", "p99_us", "edgemesh-http", "haproxy-http", "<=", 1.0),
    ("fixed rate (1/2 HAProxy peak), p99 vs HAProxy", "fixed_rate", "p99_us", "edgemesh-http", "haproxy-http", "<=", 1.0),
    ("fixed rate, p99 vs nginx proxy", "fixed_rate", "p99_us", "edgemesh-http", "nginx", None, None),
    ("L4 port, 1 KiB GET keep-alive, req/s vs HAProxy tcp", "keepalive_1k_l4", "rps", "edgemesh-l4", "haproxy-tcp", ">=", 1.0),
    ("L4 port, CPU/req vs HAProxy tcp", "keepalive_1k_l4", "cpu_us_per_req", "edgemesh-l4", "haproxy-tcp", None, None),
    ("new connection per request, conn/s vs HAProxy", "new_conn", "rps", "edgemesh-http", "haproxy-http", ">=", 1.0),
    ("new connection per request, conn/s vs direct", "new_conn", "rps", "edgemesh-http", "direct", None, None),
    ("64 MiB download, MB/s vs direct", "download", "MBps", "edgemesh-http", "direct", ">=", 0.9),
    ("64 MiB download, CPU s/GiB vs HAProxy", "download", "cpu_s_per_GiB", "edgemesh-http", "haproxy-http", "<=", 0.5),
    ("64 MiB download, MB/s vs nginx proxy", "download", "MBps", "edgemesh-http", "nginx", None, None),
    ("64 MiB download, MB/s vs the splice floor", "download", "MBps", "edgemesh-http", "splice-floor", None, None),
    ("64 MiB download, splice floor MB/s vs direct", "download", "MBps", "splice-floor", "direct", None, None),
    ("64 MiB upload, MB/s vs direct", "upload", "MBps", "edgemesh-http", "direct", ">=", 0.9),
    ("64 MiB upload, CPU s/GiB vs HAProxy", "upload", "cpu_s_per_GiB", "edgemesh-http", "haproxy-http", "<=", 0.5),
    ("64 MiB upload, MB/s vs nginx proxy", "upload", "MBps", "edgemesh-http", "nginx", None, None),
    ("64 MiB upload, MB/s vs the splice floor", "upload", "MBps", "edgemesh-http", "splice-floor", None, None),
    ("64 MiB upload, splice floor MB/s vs direct", "upload", "MBps", "splice-floor", "direct", None, None),
    ("DNS A, q/s vs dnsmasq", "dns", "qps", "edgemesh", "dnsmasq", ">=", 1.2),
    ("DNS A, q/s vs no-op queue floor", "dns", "qps", "edgemesh", "noop-queue", ">=", 0.9),
    ("DNS A, queries lost (edgemesh)", "dns", "lost", "edgemesh", None, "<=", 0),
    ("DNS A, CPU/query vs dnsmasq", "dns", "cpu_us_per_query", "edgemesh", "dnsmasq", None, None),
    ("idle keep-alive: connections held (of those asked)", "idle", "held", "edgemesh-http", "direct", ">=", 1.0),
    ("idle keep-alive: user RSS B/conn", "idle", "user_B_per_conn", "edgemesh-http", None, "<=", 1024),
    ("idle keep-alive: kernel B/conn over direct", "idle", "kernel_B_per_conn", "edgemesh-http", None, "<=", 8192),
    ("idle keep-alive: fds/conn", "idle", "fds_per_conn", "edgemesh-http", None, "<=", 1.1),
    ("idle keep-alive: HAProxy user RSS B/conn", "idle", "user_B_per_conn", "haproxy-http", None, None, None),
    ("idle keep-alive: HAProxy kernel B/conn over direct", "idle", "kernel_B_per_conn", "haproxy-http", None, None, None),
    ("registry 10k/50k: load ms", "registry", "load_ms", "edgemesh", None, "<", 1000),
    ("registry: one change visible, ms", "registry", "change_ms", "edgemesh", None, "<", 50),
    ("registry: RSS after load, MiB", "registry", "rss_MiB", "edgemesh", None, "<", 64),
    ("UDP request/response, replies/s vs direct", "udp", "rps", "edgemesh-udp", "direct", None, None),
    ("UDP request/response, replies/s vs socat relay", "udp", "rps", "edgemesh-udp", "socat", None, None),
]

# Figures every run must produce (--check).
REQUIRED = sorted(set([(c, p, m) for (_, c, m, p, d, _, _) in ROWS] +
                      [(c, d, m) for (_, c, m, _, d, _, _) in ROWS if d]))

# The absolute figures printed under the table.
FIGURES = [
    ("keepalive_1k", ["rps", "p50_us", "p99_us", "cpu_us_per_req", "proxy_cpu_pct", "load_cpu_pct", "proxy_side_cpu_pct"]),
    ("keepalive_bound", ["rps", "p50_us", "p99_us", "cpu_us_per_req", "proxy_cpu_pct", "load_cpu_pct", "proxy_side_cpu_pct"]),
    ("keepalive_1k_l4", ["rps", "p50_us", "p99_us", "cpu_us_per_req", "proxy_cpu_pct", "load_cpu_pct", "proxy_side_cpu_pct"]),
    ("new_conn", ["rps", "cpu_us_per_req", "proxy_cpu_pct", "load_cpu_pct", "proxy_side_cpu_pct"]),
    ("fixed_rate", ["half_peak_rps", "rps", "p50_us", "p99_us", "p999_us", "errors"]),
    ("download", ["MBps", "cpu_s_per_GiB", "proxy_cpu_pct", "load_cpu_pct", "proxy_side_cpu_pct"]),
    ("upload", ["MBps", "cpu_s_per_GiB", "proxy_cpu_pct", "load_cpu_pct", "proxy_side_cpu_pct"]),
    ("dns", ["qps", "lost", "cpu_us_per_query"]),
    ("idle", ["held", "user_B_per_conn", "kernel_B_per_conn_total", "kernel_B_per_conn", "fds_per_conn"]),
    ("registry", ["load_ms", "change_ms", "file_change_ms", "rss_MiB", "rss_peak_MiB"]),
    ("udp", ["rps", "lost", "cpu_us_per_req"]),
]


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    raw_path, out_path, rest = args[0], args[1], args[2:]
    check = "--check" in rest
    meta = {}
    if "--meta" in rest:
        for kv in rest[rest.index("--meta") + 1:]:
            if kv.startswith("--"):
                break
            k, _, v = kv.partition("=")
            meta[k] = v
    raw = load(raw_path)

    # The proxies' own kernel memory: total per connection minus direct's.
    direct_k = raw.get(("idle", "direct", "kernel_B_per_conn_total"))
    for (case, peer, metric), vals in list(raw.items()):
        if case == "idle" and metric == "kernel_B_per_conn_total" and peer != "direct" and direct_k:
            raw[(case, peer, "kernel_B_per_conn")] = [v - statistics.median(direct_k) for v in vals]

    # Requests per second of proxy CPU: what req/s would be if the proxy's
    # CPU were the limit (the inverse of CPU/req, per round).
    for (case, peer, metric), vals in list(raw.items()):
        if metric == "cpu_us_per_req":
            raw[(case, peer, "rps_per_cpu")] = [1e6 / v for v in vals if v > 0]

    # User RSS: a process keeps what it allocated for the first round and
    # reuses it later, so the growth is that of the first (largest) round.
    med = {k: (max(v) if k[2] == "user_B_per_conn" else statistics.median(v)) for k, v in raw.items()}
    rows = []
    for label, case, metric, num, den, op, target in ROWS:
        a = med.get((case, num, metric))
        b = med.get((case, den, metric)) if den else None
        value = None
        if a is not None and (den is None or (b is not None and b != 0)):
            value = a / b if den else a
        verdict = ""
        if op and value is not None:
            ok = {">=": value >= target, "<=": value <= target, "<": value < target}[op]
            verdict = "met" if ok else "MISSED"
        elif op:
            verdict = "no figure"
        rows.append({"label": label, "case": case, "metric": metric, "peer": num, "against": den,
                     "value": value, "ratio": bool(den), "target": f"{op} {target}" if op else None,
                     "verdict": verdict or None})

    w = max(len(r["label"]) for r in rows)
    print()
    print(f"{'case':<{w}}  {'value':>9}  {'target':>9}  verdict")
    for r in rows:
        v = r["value"]
        vs = "-" if v is None else (f"{v:.2f}x" if r["ratio"] else f"{v:.2f}" if v < 100 else f"{v:.0f}")
        print(f"{r['label']:<{w}}  {vs:>9}  {r['target'] or '':>9}  {r['verdict'] or ''}")

    # req/s compares proxies only when the proxies' CPU is the limit. Say
    # when it was not: the load side's CPU saturated while the proxies'
    # CPU had room (every proxy then shows the load generator's rate), or
    # the proxies' CPU taken by other processes (other tenants of a shared
    # machine: req/s then follows the proxy's share of its CPU). The
    # CPU/req rows still compare the proxies.
    for case in ("keepalive_1k", "keepalive_1k_l4", "new_conn", "download", "upload"):
        ours = "edgemesh-l4" if case == "keepalive_1k_l4" else "edgemesh-http"
        load_pct = med.get((case, ours, "load_cpu_pct"))
        side = med.get((case, ours, "proxy_side_cpu_pct"))
        own = med.get((case, ours, "proxy_cpu_pct"))
        if load_pct is None or side is None or own is None:
            continue
        if load_pct >= 95 and side < 90:
            print(f"note: {case}: load side's CPU {load_pct:.0f}% busy, the proxies' CPU {side:.0f}% "
                  f"(edgemesh {own:.0f}%): throughput is bound by the load side, not the proxy")
        elif side >= 95 and own < 80:
            print(f"note: {case}: the proxies' CPU was {side:.0f}% busy but edgemesh used {own:.0f}% of it: "
                  f"other processes took the rest; throughput follows the proxy's CPU share")

    print("\nmedians [lowest..highest round]:")
    for case, metrics in FIGURES:
        peers = sorted({p for (c, p, m) in raw if c == case})
        for peer in peers:
            cells = []
            for m in metrics:
                vals = raw.get((case, peer, m))
                if vals:
                    agg = "max " if m == "user_B_per_conn" and len(vals) > 1 else ""
                    spread = f" [{min(vals):g}..{max(vals):g}]" if len(vals) > 1 else ""
                    cells.append(f"{m}={agg}{med[(case, peer, m)]:g}{spread}")
            if cells:
                print(f"  {case:<16} {peer:<14} " + "  ".join(cells))
    for k, v in meta.items():
        print(f"# {k}: {v}")

    # The proxy-bound case needs a cgroup CPU controller; without one it is
    # left out and said so in the meta lines, not counted missing.
    skipped = {"keepalive_bound"} if meta.get("proxy_bound", "").startswith("unavailable") else set()
    missing = [f"{c}/{p}/{m}" for (c, p, m) in REQUIRED if (c, p, m) not in med and c not in skipped]
    doc = {
        "meta": meta,
        "ratios": rows,
        "medians": {f"{c}/{p}/{m}": v for (c, p, m), v in sorted(med.items())},
        "raw": {f"{c}/{p}/{m}": v for (c, p, m), v in sorted(raw.items())},
        "missing": missing,
    }
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"raw figures: {out_path}")
    if missing:
        print("cases without a figure: " + ", ".join(missing))
    if check:
        print("bench-short: every case produced a figure" if not missing else "bench-short: FAILED")
        return 1 if missing else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
