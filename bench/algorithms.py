#!/usr/bin/env python3
"""Compare lb's balancing algorithms on heterogeneous backends, with the same load for each.

Three demo backends (lb-demo): `fast` answers in 2 ms, `slow` in 40 ms, `flaky` in 2 ms but
fails 20% of requests with a 500. For every algorithm, lb (2 threads) is started in front of
them and oha drives 32 keep-alive connections for DURATION seconds, URIs varying so the
hashing algorithms spread. Reported per algorithm: requests/s, exact p50/p99 latency, error
rate (non-2xx) and each backend's share. Output: bench/results/algorithms.md and
algorithms.svg. (wrk 4.1's latency percentiles are not exact for such two-peaked latencies.)

Usage: bench/run-algorithms [--duration S] [--connections N] [--out DIR]
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
# Shared with the main benchmark.
from bench import DEMO_BIN, LB_BIN, OHA, Proc, free_port, free_ports, parse_oha, wait_http  # noqa: E402

BACKENDS = [("fast", ["--delay", "2ms"]), ("slow", ["--delay", "40ms"]), ("flaky", ["--delay", "2ms", "--fail-rate", "0.2"])]
ALGORITHMS = [
    ("round_robin", ""),
    ("random", ""),
    ("hash", "    hash_key: uri\n"),
    ("consistent", "    hash_key: uri\n"),
    ("least_connections", ""),
    ("power_of_two", ""),
    ("least_time", ""),
    ("sticky", ""),
    ("first", "    max_connections: 16\n    queue_size: 64\n"),
]


def start_backends(work, ports, procs):
    """Starts the demo backends on `ports` (appending them to `procs`); their addresses by name."""
    addrs = {}
    for (name, flags), port in zip(BACKENDS, ports):
        procs.append(Proc([str(DEMO_BIN)] + flags + [f"{name}=127.0.0.1:{port}"], None, work / f"{name}.log"))
        addrs[name] = f"127.0.0.1:{port}"
        if not wait_http(port, "/healthz", limit=30):
            raise RuntimeError(f"backend {name} did not start; see {work}/{name}.log")
    return addrs


def demo_requests(addr):
    with urllib.request.urlopen(f"http://{addr}/_demo/stats", timeout=5) as r:
        return json.loads(r.read())["requests"]


def run_one(work, addrs, algorithm, extra, args):
    port = free_port()  # the backends already listen, so it cannot be one of theirs
    backends = "\n".join(f"      - address: {a}" for a in addrs.values())
    conf = work / f"{algorithm}.yaml"
    conf.write_text(f"""server: {{threads: 2, pid_file: {work}/lb.pid, upgrade_sock: {work}/lb.sock, grace_period_seconds: 1}}
listeners: [{{address: 127.0.0.1:{port}}}]
upstreams:
  bench:
    algorithm: {algorithm}
{extra}    backends:
{backends}
""")
    lb = Proc([str(LB_BIN), "-c", str(conf)], None, work / f"lb-{algorithm}.log", env=dict(os.environ, RUST_LOG="error"))
    try:
        if not wait_http(port, "/item/1", limit=30):
            raise RuntimeError(f"lb did not start for {algorithm}; see {lb.log}")
        url = f"http://127.0.0.1:{port}/item/[0-9]{{6}}"
        oha = [str(OHA), "--no-tui", "--output-format", "json", "-c", str(args.connections), "--rand-regex-url"]
        # A short warm-up (connections, least_time's averages), then the measured run.
        subprocess.run(oha + ["-z", "1s", url], capture_output=True, timeout=60)
        before = {n: demo_requests(a) for n, a in addrs.items()}
        out = subprocess.run(oha + ["-z", f"{args.duration}s", url], capture_output=True, text=True,
                             timeout=args.duration + 60).stdout
        after = {n: demo_requests(a) for n, a in addrs.items()}
    finally:
        lb.stop(signal.SIGINT)
    return summarize(parse_oha(out), {n: after[n] - before[n] for n in addrs})


def summarize(report, hits):
    total_hits = max(sum(hits.values()), 1)
    return {"rps": report["achieved"], "p50_ms": report["p50_ms"], "p99_ms": report["p99_ms"],
            "mean_ms": report["mean_ms"], "error_rate": report["failed"] / max(report["requests"], 1),
            "share": {n: h / total_hits for n, h in hits.items()}}


def markdown(results, args):
    lines = [f"{args.connections} keep-alive connections, {args.duration} s per algorithm; backends: fast (2 ms), "
             "slow (40 ms), flaky (2 ms, 20% 500s).", "",
             "| algorithm | req/s | p50 ms | mean ms | p99 ms | errors | fast | slow | flaky |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        s = r["share"]
        lines.append(f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['mean_ms']:.2f} | {r['p99_ms']:.2f} "
                     f"| {r['error_rate'] * 100:.1f}% "
                     f"| {s['fast'] * 100:.0f}% | {s['slow'] * 100:.0f}% | {s['flaky'] * 100:.0f}% |")
    return "\n".join(lines) + "\n"


def svg(results):
    names = list(results)
    w, h, ml, mt, mb, gap = 860, 380, 60, 50, 90, 8
    top = max(r["p99_ms"] for r in results.values()) * 1.15
    slot = (w - ml - 20) / len(names)
    bar = (slot - gap) / 4
    y = lambda v: h - mb - v / top * (h - mt - mb)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">lb algorithms on fast / slow / flaky backends '
           '(same load each)</text>',
           f'<line x1="{ml}" y1="{h - mb}" x2="{w - 20}" y2="{h - mb}" stroke="black"/>',
           f'<text x="14" y="{(h + mt - mb) / 2}" transform="rotate(-90 14 {(h + mt - mb) / 2})" text-anchor="middle">'
           'latency ms (blue) · error % (red)</text>']
    for i in range(6):
        v = top * i / 5
        out.append(f'<text x="{ml - 5}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
        out.append(f'<line x1="{ml}" y1="{y(v):.1f}" x2="{w - 20}" y2="{y(v):.1f}" stroke="#eee"/>')
    for i, name in enumerate(names):
        r, x = results[name], ml + i * slot + gap / 2
        for j, (key, color) in enumerate((("p50_ms", "#c6dbef"), ("mean_ms", "#6baed6"), ("p99_ms", "#08519c"))):
            out.append(f'<rect x="{x + j * bar:.1f}" y="{y(r[key]):.1f}" width="{bar:.1f}" '
                       f'height="{h - mb - y(r[key]):.1f}" fill="{color}"/>')
        err = r["error_rate"] * 100
        out.append(f'<rect x="{x + 3 * bar:.1f}" y="{y(err * top / 25):.1f}" width="{bar:.1f}" '
                   f'height="{h - mb - y(err * top / 25):.1f}" fill="#de2d26"/>')
        out.append(f'<text x="{x + 3.5 * bar:.1f}" y="{y(err * top / 25) - 3:.1f}" text-anchor="middle" '
                   f'fill="#de2d26">{err:.0f}%</text>')
        out.append(f'<text x="{x + 2 * bar:.1f}" y="{h - mb + 14}" text-anchor="end" '
                   f'transform="rotate(-35 {x + 2 * bar:.1f} {h - mb + 14})">{name}</text>')
    legend = (("p50", "#c6dbef"), ("mean", "#6baed6"), ("p99", "#08519c"), ("errors (0-25% scale)", "#de2d26"))
    for k, (label, color) in enumerate(legend):
        out.append(f'<rect x="{ml + 10 + k * 120}" y="{mt - 20}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{ml + 24 + k * 120}" y="{mt - 11}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--only", default="", help="comma-separated algorithms (default: all)")
    args = ap.parse_args()
    only = [a for a in args.only.split(",") if a]
    unknown = set(only) - {name for name, _ in ALGORITHMS}
    if unknown:
        sys.exit(f"unknown algorithm {sorted(unknown)}; one of {[name for name, _ in ALGORITHMS]}")
    work = Path(tempfile.mkdtemp(prefix="lb-alg-"))
    backend_ports = free_ports(len(BACKENDS))
    procs, results = [], {}
    try:
        addrs = start_backends(work, backend_ports, procs)
        for name, extra in ALGORITHMS:
            if only and name not in only:
                continue
            results[name] = run_one(work, addrs, name, extra, args)
            r = results[name]
            print(f"{name:18} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f}  p99 {r['p99_ms']:7.2f}  "
                  f"errors {r['error_rate'] * 100:4.1f}%  shares {json.dumps({k: round(v, 2) for k, v in r['share'].items()})}",
                  flush=True)
    finally:
        for p in procs:
            p.stop()
    shutil.rmtree(work, ignore_errors=True)  # kept on failure: the logs are there
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "algorithms.md").write_text(markdown(results, args))
    (out / "algorithms.svg").write_text(svg(results))
    print()
    print(markdown(results, args))


if __name__ == "__main__":
    main()
