#!/usr/bin/env python3
"""Benchmark lb against nginx and HAProxy on this machine, in one run.

The load balancer under test is pinned to CPU 0; wrk and the backends (one static nginx with
many ports) share CPU 1. Each contender gets an equivalent config: one worker, round robin (or
the scenario's algorithm), upstream keep-alive, X-Forwarded-For added. Every (scenario,
contender) run is repeated and the median is reported, with ratios to nginx and HAProxy.

Figures per row: requests/s, p50/p99 latency (wrk --latency), LB CPU microseconds per request
(utime+stime from /proc over the measured window: the most stable figure on a noisy machine),
peak RSS (VmHWM summed over the LB's processes), backend connections opened per request
(nginx stub_status `accepts`).

Usage: bench/run [--quick] [--reps N] [--duration S] [--only SCENARIO[,..]] [--no-curve]
       [--no-callgrind] [--out DIR]
"""

import argparse
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LB_BIN = ROOT / "target" / "release" / "lb"
CLK_TCK = os.sysconf("SC_CLK_TCK")
LB_CPU, LOAD_CPU = "0", "1"
CONTENDERS = ["lb", "nginx", "haproxy"]
LB_SERVER_EXTRA = ""  # e.g. "work_stealing: false", from --lb-server
SMALL_BODY = "hello world\n"


# ----------------------------------------------------------------------------- processes

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_map():
    kids = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(entry))
    return kids


def process_tree(root):
    kids, tree, todo = children_map(), [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(kids.get(pid, []))
    return tree


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def peak_rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


class Proc:
    """A pinned child process, stopped on exit."""

    def __init__(self, cmd, cpu, log, env=None):
        self.log = log
        with open(log, "wb") as out:
            self.p = subprocess.Popen(["taskset", "-c", cpu] + cmd, stdout=out, stderr=subprocess.STDOUT,
                                      env=env, start_new_session=True)

    def pids(self):
        return process_tree(self.p.pid)

    def stop(self, sig=signal.SIGTERM, wait=10):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, sig)
                self.p.wait(wait)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait()


def wait_http(port, path="/small", limit=60):
    end = time.time() + limit
    while time.time() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            if c.getresponse().status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


# ----------------------------------------------------------------------------- configs

def backends_conf(work, ports):
    (work / "16k").write_bytes(bytes((i * 7) % 251 for i in range(16384)))
    listens = "\n".join(f"    listen 127.0.0.1:{p};" for p in ports)
    conf = f"""
worker_processes 1;
daemon off;
pid {work}/backends.pid;
error_log {work}/backends.err warn;
events {{ worker_connections 8000; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {{
{listens}
    location = /small {{ return 200 "{SMALL_BODY.strip()}\\n"; }}
    location = /16k {{ alias {work}/16k; }}
    location = /healthz {{ return 200 "ok\\n"; }}
    location = /stub {{ stub_status; }}
  }}
}}
"""
    path = work / "backends.conf"
    path.write_text(conf)
    return path


def lb_conf(work, port, ports, algorithm, features):
    backends = "\n".join(f"      - address: 127.0.0.1:{p}" for p in ports)
    key = "    hash_key: uri\n" if algorithm == "consistent" else ""
    health = ""
    if "health" in features:
        health = "    health_check: {path: /healthz, interval: 1s}\n"
    extra = ""
    if "metrics" in features:
        extra += f"metrics: {{address: 127.0.0.1:{free_port()}}}\n"
    if "access_log" in features:
        extra += f"access_log: {{path: {work}/access.log}}\n"
    server_extra = "".join(f"  {kv.strip()}\n" for kv in LB_SERVER_EXTRA.split(",") if kv.strip())
    conf = f"""server:
  threads: 1
{server_extra}  pid_file: {work}/lb.pid
  upgrade_sock: {work}/lb.sock
  upstream_keepalive_pool_size: 1024
listeners: [{{address: 127.0.0.1:{port}}}]
{extra}upstreams:
  bench:
    algorithm: {algorithm}
{key}{health}    backends:
{backends}
"""
    path = work / "lb.yaml"
    path.write_text(conf)
    return path


NGINX_BALANCE = {"round_robin": "", "least_connections": "least_conn;",
                 "consistent": "hash $request_uri consistent;"}
HAPROXY_BALANCE = {"round_robin": "balance roundrobin", "least_connections": "balance leastconn",
                   "consistent": "balance uri\n  hash-type consistent"}


def nginx_conf(work, port, ports, algorithm):
    servers = "\n".join(f"    server 127.0.0.1:{p};" for p in ports)
    conf = f"""
worker_processes 1;
daemon off;
pid {work}/nginx-lb.pid;
error_log {work}/nginx-lb.err warn;
events {{ worker_connections 8000; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  upstream bench {{
    {NGINX_BALANCE[algorithm]}
{servers}
    keepalive 1024;
    keepalive_requests 100000000;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}
"""
    path = work / "nginx-lb.conf"
    path.write_text(conf)
    return path


def haproxy_conf(work, port, ports, algorithm):
    servers = "\n".join(f"  server s{i} 127.0.0.1:{p}" for i, p in enumerate(ports))
    conf = f"""global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  {HAPROXY_BALANCE[algorithm]}
{servers}
"""
    path = work / "haproxy.cfg"
    path.write_text(conf)
    return path


def start_contender(name, work, port, ports, algorithm, features=(), wrapper=()):
    if name == "lb":
        conf = lb_conf(work, port, ports, algorithm, features)
        env = dict(os.environ, RUST_LOG="warn")
        return Proc(list(wrapper) + [str(LB_BIN), "-c", str(conf)], LB_CPU, work / "lb.log", env)
    if name == "nginx":
        conf = nginx_conf(work, port, ports, algorithm)
        extra = ["-g", "master_process off;"] if wrapper else []
        return Proc(list(wrapper) + ["nginx", "-c", str(conf)] + extra, LB_CPU, work / "nginx-lb.log")
    conf = haproxy_conf(work, port, ports, algorithm)
    return Proc(list(wrapper) + ["haproxy", "-db", "-f", str(conf)], LB_CPU, work / "haproxy.log")


# ----------------------------------------------------------------------------- measuring

def backend_accepts(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/stub")
    text = c.getresponse().read().decode()
    return int(text.splitlines()[2].split()[0])


def parse_wrk(out):
    def latency(label):
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return None
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        return float(m.group(1)) * scale

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return {"requests": requests, "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": latency("50"), "p99_ms": latency("99"), "errors": errors}


WRK_RANDOM_URI = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/small?k=" .. math.random(1, 100000))
end
"""


def run_wrk(work, port, scenario, conns, seconds):
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency"]
    if scenario.get("new_conn"):
        cmd += ["-H", "Connection: close"]
    if scenario.get("random_uri"):
        script = work / "random_uri.lua"
        script.write_text(WRK_RANDOM_URI)
        cmd += ["-s", str(script)]
    cmd.append(f"http://127.0.0.1:{port}{scenario['path']}")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    return parse_wrk(out)


def measure(name, work, ports, scenario, conns, seconds, warmup):
    port = free_port()
    lb = start_contender(name, work, port, ports[: scenario["backends"]], scenario["algorithm"],
                         scenario.get("features", ()))
    try:
        if not wait_http(port):
            raise RuntimeError(f"{name} did not start; see {lb.log}")
        run_wrk(work, port, scenario, conns, warmup)
        pids = lb.pids()
        cpu0, acc0 = cpu_seconds(pids), backend_accepts(ports[0])
        result = run_wrk(work, port, scenario, conns, seconds)
        cpu1, acc1 = cpu_seconds(pids), backend_accepts(ports[0])
        result["cpu_us_per_req"] = (cpu1 - cpu0) * 1e6 / max(result["requests"], 1)
        result["rss_mib"] = peak_rss_kib(lb.pids()) / 1024
        result["conns_per_req"] = max(acc1 - acc0 - 1, 0) / max(result["requests"], 1)
        return result
    finally:
        lb.stop(signal.SIGINT)


def median_of(runs):
    keys = [k for k in runs[0] if runs[0][k] is not None]
    return {k: statistics.median(r[k] for r in runs if r.get(k) is not None) for k in keys}


# ----------------------------------------------------------------------------- scenarios

SCENARIOS = {
    "ka_small": {"title": "keep-alive, small body", "path": "/small", "backends": 2, "algorithm": "round_robin"},
    "ka_16k": {"title": "keep-alive, 16 KiB body", "path": "/16k", "backends": 2, "algorithm": "round_robin"},
    "new_conn": {"title": "new connection per request", "path": "/small", "backends": 2,
                 "algorithm": "round_robin", "new_conn": True},
    "pool100_least_conn": {"title": "100 backends, least connections", "path": "/small", "backends": 100,
                           "algorithm": "least_connections"},
    "pool100_consistent": {"title": "100 backends, consistent hash of the URI", "path": "/small",
                           "backends": 100, "algorithm": "consistent", "random_uri": True},
    "lb_features": {"title": "lb with metrics, access log, health checks", "path": "/small", "backends": 2,
                    "algorithm": "round_robin", "features": ("metrics", "access_log", "health"),
                    "contenders": ["lb"]},
}


def lb_supports(work, scenario):
    conf = lb_conf(work, free_port(), [1, 2], scenario["algorithm"], scenario.get("features", ()))
    ok = subprocess.run([str(LB_BIN), "-t", "-c", str(conf)], capture_output=True, text=True)
    return ok.returncode == 0, ok.stderr.strip()


def run_table(work, ports, args):
    rows = {}
    for key in args.only:
        scenario = SCENARIOS[key]
        supported, why = lb_supports(work, scenario)
        contenders = scenario.get("contenders", CONTENDERS)
        runs = {c: [] for c in contenders}
        for rep in range(args.reps):
            for name in contenders:
                if name == "lb" and not supported:
                    continue
                r = measure(name, work, ports, scenario, args.conns, args.duration, args.warmup)
                print(f"  {key} {name} #{rep + 1}: {r['rps']:.0f} req/s, {r['cpu_us_per_req']:.1f} us/req, "
                      f"p99 {r['p99_ms']} ms, errors {r['errors']}", flush=True)
                runs[name].append(r)
        rows[key] = {c: median_of(rs) for c, rs in runs.items() if rs}
        if not supported:
            rows[key]["lb_unsupported"] = why
    return rows


def run_curve(work, ports, args):
    scenario = SCENARIOS["ka_small"]
    curve = {c: [] for c in CONTENDERS}
    for conns in args.curve:
        for name in CONTENDERS:
            runs = [measure(name, work, ports, scenario, conns, args.curve_duration, 1)
                    for _ in range(args.curve_reps)]
            m = median_of(runs)
            m["conns"] = conns
            curve[name].append(m)
            print(f"  curve {name} c={conns}: {m['rps']:.0f} req/s p50 {m['p50_ms']} p99 {m['p99_ms']}", flush=True)
    return curve


# ----------------------------------------------------------------------------- callgrind

def count_instructions(name, work, ports, n):
    port = free_port()
    out = work / f"callgrind.{name}.{n}"
    wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    proc = start_contender(name, work, port, ports[:2], "round_robin", wrapper=wrapper)
    try:
        if not wait_http(port, limit=180):
            raise RuntimeError(f"{name} under callgrind did not start; see {proc.log}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(n):
            conn.request("GET", "/small")
            conn.getresponse().read()
        conn.close()
    finally:
        # HAProxy under valgrind ignores SIGINT; SIGTERM is an immediate stop for all three.
        proc.stop(signal.SIGTERM if name == "haproxy" else signal.SIGINT, wait=120)
    total = 0
    for f in work.glob(f"callgrind.{name}.{n}*"):
        m = re.search(r"^(?:summary|totals):\s+(\d+)", f.read_text(errors="replace"), re.M)
        total += int(m.group(1)) if m else 0
    return total


def run_callgrind(work, ports, args):
    result = {}
    for name in CONTENDERS:
        small, large = count_instructions(name, work, ports, 500), count_instructions(name, work, ports, 2500)
        result[name] = round((large - small) / 2000) if small and large else None
        print(f"  callgrind {name}: {result[name]} instructions/request", flush=True)
    return result


# ----------------------------------------------------------------------------- report

def fmt(v, digits=1):
    return "–" if v is None else f"{v:.{digits}f}"


def ratio(a, b):
    return "–" if not a or not b else f"{a / b:.2f}×"


def markdown(rows, callgrind, args):
    lines = [
        f"Machine: {os.cpu_count()} CPUs; LB pinned to CPU {LB_CPU}, wrk + backends on CPU {LOAD_CPU}; "
        f"{args.conns} connections, {args.duration}s per run, median of {args.reps} runs.",
        "",
        "| scenario | LB | req/s | p50 ms | p99 ms | CPU µs/req | vs nginx | vs HAProxy | peak RSS MiB "
        "| backend conns/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, row in rows.items():
        nginx, haproxy = row.get("nginx", {}), row.get("haproxy", {})
        for name in CONTENDERS:
            r = row.get(name)
            if r is None:
                if name == "lb" and "lb_unsupported" in row:
                    lines.append(f"| {SCENARIOS[key]['title']} | lb | not supported yet | | | | | | | | |")
                continue
            cpu = r["cpu_us_per_req"]
            vs_n = ratio(cpu, nginx.get("cpu_us_per_req")) if name != "nginx" else ""
            vs_h = ratio(cpu, haproxy.get("cpu_us_per_req")) if name != "haproxy" else ""
            lines.append(
                f"| {SCENARIOS[key]['title']} | {name} | {r['rps']:.0f} | {fmt(r.get('p50_ms'), 2)} "
                f"| {fmt(r.get('p99_ms'), 2)} | {cpu:.1f} | {vs_n} | {vs_h} | {r['rss_mib']:.1f} "
                f"| {r['conns_per_req']:.3f} | {r['errors']:.0f} |")
    if callgrind:
        lines += ["", "| instructions per request (callgrind, small body, keep-alive) | lb | nginx | HAProxy "
                  "| lb vs nginx |", "|---|---:|---:|---:|---:|",
                  f"| difference of 2500- and 500-request runs ÷ 2000 | {callgrind['lb'] or '–'} "
                  f"| {callgrind['nginx'] or '–'} | {callgrind['haproxy'] or '–'} "
                  f"| {ratio(callgrind['lb'], callgrind['nginx'])} |"]
    return "\n".join(lines) + "\n"


COLORS = {"lb": "#d62728", "nginx": "#2ca02c", "haproxy": "#1f77b4"}


def nice_step(top, ticks=5):
    raw = top / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def svg_chart(curve):
    w, h, ml, mr, mt, mb = 720, 420, 70, 20, 40, 50
    pts = [p for c in curve.values() for p in c]
    xstep = nice_step(max(p["rps"] for p in pts) * 1.05)
    ystep = nice_step(max(p["p99_ms"] for p in pts) * 1.1)
    xmax, ymax = xstep * 5, ystep * 5
    sx = lambda x: ml + x / xmax * (w - ml - mr)
    sy = lambda y: h - mb - y / ymax * (h - mt - mb)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
           f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">Latency vs load (keep-alive, small body, '
           f'1 LB core; points = connections)</text>',
           f'<line x1="{ml}" y1="{h - mb}" x2="{w - mr}" y2="{h - mb}" stroke="black"/>',
           f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{h - mb}" stroke="black"/>',
           f'<text x="{(w + ml) / 2}" y="{h - 12}" text-anchor="middle">throughput (requests/s)</text>',
           f'<text x="16" y="{(h + mt) / 2}" transform="rotate(-90 16 {(h + mt) / 2})" text-anchor="middle">'
           f'latency (ms): p99 solid, p50 dashed</text>']
    for i in range(6):
        x, y = xstep * i, ystep * i
        out.append(f'<text x="{sx(x)}" y="{h - mb + 16}" text-anchor="middle">{x:g}</text>')
        out.append(f'<text x="{ml - 6}" y="{sy(y) + 4}" text-anchor="end">{y:g}</text>')
        out.append(f'<line x1="{ml}" y1="{sy(y)}" x2="{w - mr}" y2="{sy(y)}" stroke="#eee"/>')
    for n, (name, points) in enumerate(curve.items()):
        for metric, dash in (("p99_ms", ""), ("p50_ms", ' stroke-dasharray="4 3"')):
            path = " ".join(f"{sx(p['rps']):.1f},{sy(p[metric]):.1f}" for p in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{COLORS[name]}" stroke-width="2"{dash}/>')
        for p in points:
            out.append(f'<circle cx="{sx(p["rps"]):.1f}" cy="{sy(p["p99_ms"]):.1f}" r="3" fill="{COLORS[name]}"/>')
            out.append(f'<text x="{sx(p["rps"]) + 4:.1f}" y="{sy(p["p99_ms"]) - 4:.1f}" font-size="9" '
                       f'fill="{COLORS[name]}">{p["conns"]}</text>')
        out.append(f'<rect x="{ml + 10}" y="{mt + 5 + n * 18}" width="12" height="12" fill="{COLORS[name]}"/>')
        out.append(f'<text x="{ml + 28}" y="{mt + 15 + n * 18}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 s runs, 1 repetition, short curve")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--no-curve", action="store_true")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--lb-server", default="", help="extra server settings for lb, comma-separated key: value")
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    args = ap.parse_args()
    global LB_SERVER_EXTRA
    LB_SERVER_EXTRA = args.lb_server
    CONTENDERS[:] = [c for c in args.contenders.split(",") if c]
    args.only = [s for s in args.only.split(",") if s]
    args.curve, args.curve_duration, args.curve_reps = [1, 4, 16, 64, 128, 256], 5, 1
    if args.quick:
        args.reps, args.duration, args.warmup = 1, 3, 1
        args.curve, args.curve_duration = [1, 16, 64, 256], 3
    unknown = [s for s in args.only if s not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenario {unknown}; one of {list(SCENARIOS)}")
    if os.cpu_count() < 2:
        sys.exit("needs 2 CPUs: one for the load balancer, one for the load")

    work = Path(tempfile.mkdtemp(prefix="lb-bench-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user and serve /16k from here
    ports = [free_port() for _ in range(100)]
    backends = Proc(["nginx", "-c", str(backends_conf(work, ports))], LOAD_CPU, work / "backends.log")
    try:
        if not wait_http(ports[0]):
            sys.exit(f"backends did not start; see {work}/backends.log")
        print("table:", flush=True)
        rows = run_table(work, ports, args)
        curve = {} if args.no_curve else (print("curve:", flush=True), run_curve(work, ports, args))[1]
        callgrind = None if args.no_callgrind else (print("callgrind:", flush=True),
                                                     run_callgrind(work, ports, args))[1]
    finally:
        backends.stop()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows, callgrind, args)
    (out / "latest.md").write_text(table)
    (out / "latest.json").write_text(json.dumps({"rows": rows, "curve": curve, "callgrind": callgrind,
                                                 "args": vars(args)}, indent=1, default=str))
    if curve:
        (out / "latency.svg").write_text(svg_chart(curve))
    print()
    print(table)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
