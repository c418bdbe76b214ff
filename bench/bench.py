#!/usr/bin/env python3
"""Benchmark lb against nginx and HAProxy on this machine, in one run.

The load balancer under test is pinned to CPU 0; the load generator and the backends (one
static nginx with many ports) share CPU 1. Each contender gets an equivalent config: one
worker, round robin (or the scenario's algorithm), upstream keep-alive, X-Forwarded-For added.
Every (scenario, contender) run is repeated and the median is reported, with ratios to nginx
and HAProxy.

Besides plain HTTP/1.1, clients speak TLS 1.3 to the load balancer (keep-alive, and a new
connection per request) and HTTP/2 over TLS; the backends stay plain HTTP/1.1.

Figures per row:
- req/s at saturation (wrk, 64 keep-alive connections, closed loop; h2load with 10 streams on
  each connection for HTTP/2);
- LB CPU microseconds per request (utime+stime from /proc over the measured window: the most
  stable figure on a noisy machine);
- p50/p99 latency at the same offered load for all contenders (oha, open loop at half the
  slowest contender's saturation rate, corrected for coordinated omission; wrk 4.1's own
  percentiles are not exact);
- peak RSS (VmHWM summed over the LB's processes);
- backend connections opened per request (nginx stub_status `accepts`).
Plus: resident memory of thousands of idle keep-alive connections, and after they close
(bench/idle.py); the cost of lb's production features (admin API, metrics, access log, health
checks) against lb without them (lb_features against ka_small, and features_ab: lb's runs
alternating with and without them, so that drift between scenarios cannot pass for their cost);
traffic rules' cost (rules_ab: a route with a regex rewrite and three header rules against a
plain route, runs alternating); gzip of a 16 KiB JSON body against nginx's gzip on (gzip_16k);
threads: 2 against threads: 1 with both CPUs shared by everything; a latency vs offered-load chart
(oha, open loop); instructions per request under callgrind.

Usage: bench/run [--quick] [--reps N] [--duration S] [--only SCENARIO[,..]] [--no-curve]
       [--no-callgrind] [--out DIR] [--lb-server "key: value,..."] [--contenders lb,nginx,...]
       [--idle N[,N]]      idle keep-alive connection counts (default 5000,10000; '' for none)
       [--baseline PATH]   another lb binary (e.g. the previous commit's) measured as contender
                           `lb-base` in the same run, for before/after rows in the history table
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
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import idle

ROOT = Path(__file__).resolve().parent.parent
LB_BIN = ROOT / "target" / "release" / "lb"
DEMO_BIN = ROOT / "target" / "release" / "lb-demo"
OHA = Path(os.environ.get("OHA", ROOT / "target" / "bench-tools" / "bin" / "oha"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
LB_CPU, LOAD_CPU = "0", "1"
CONTENDERS = ["lb", "nginx", "haproxy"]
BASE_BIN = None  # --baseline: the `lb-base` contender's binary
LB_SERVER_EXTRA = ""  # e.g. "work_stealing: false", from --lb-server
SMALL_BODY = "hello world\n"
GZIP_LEVEL = 1  # nginx's default gzip_comp_level, and lb's gzip level
MAX_CONNS = 8000  # lb max_connections, nginx worker_connections, HAProxy maxconn (raised for the idle part)


# ----------------------------------------------------------------------------- processes

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n):
    """`n` distinct free ports: all held open while choosing, so none repeats."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


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


def thread_cpu_seconds(pid, name):
    """CPU seconds of each thread of `pid` named `name`, by thread id."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip() != name:
                continue
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[tid] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


class Proc:
    """A child process (pinned to `cpu` unless it is None) in a session of its own, logging to
    `log`; `stop` ends the whole session, with SIGKILL if `sig` is not enough."""

    def __init__(self, cmd, cpu, log, env=None):
        self.log = log
        pin = ["taskset", "-c", cpu] if cpu is not None else []
        with open(log, "wb") as out:
            self.p = subprocess.Popen(pin + cmd, stdout=out, stderr=subprocess.STDOUT,
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


def client_tls():
    """A client context that takes the bench's self-signed certificate (wrk, h2load and oha do not
    verify it either)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def wait_http(port, path="/small", limit=60, tls=False):
    end = time.time() + limit
    while time.time() < end:
        try:
            if tls:
                c = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=client_tls())
            else:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            if c.getresponse().status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


# ----------------------------------------------------------------------------- configs

# The TLS scenarios give the three the same certificate and TLS 1.3 (nginx and HAProxy are held
# to it; lb's rustls also offers 1.2, which no client here picks), with each following the
# client's cipher order (HAProxy prefers its own unless told), so every contender negotiates the
# same suite and X25519 with a given client. Session resumption is each one's default: nginx
# issues stateless tickets, HAProxy tickets and a session cache, lb (rustls) a 256-entry
# session cache with 2 tickets per handshake.

def make_certificate(work):
    """The TLS scenarios' certificate, made once per run: self-signed ECDSA P-256 in cert.pem, its
    key in key.pem, and both in cert+key.pem for HAProxy, which reads them from one file."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-subj", "/CN=bench", "-days", "2", "-keyout", str(work / "key.pem"),
                    "-out", str(work / "cert.pem")], check=True, capture_output=True, timeout=60)
    (work / "cert+key.pem").write_text((work / "cert.pem").read_text() + (work / "key.pem").read_text())


def json_16k():
    """16 KiB of JSON as an API answers it: a list of records alike in shape, unlike in values."""
    items, i = [], 0
    while len("[" + ",".join(items) + "]") < 16384 - 200:
        items.append(json.dumps({"id": i, "sku": f"SKU-{(i * 7919) % 100000:05d}", "name": f"item {i}",
                                 "price": round((i * 37 % 1000) / 7, 2), "in_stock": i % 3 != 0,
                                 "tags": ["new", "sale"][: i % 3]}))
        i += 1
    text = "[" + ",".join(items) + "]"
    return text + " " * (16384 - len(text))


# A route with a regex rewrite (to the same path: the backends serve /small) and three header
# rules, against a plain route (rules_ab).
RULES_ROUTE = """routes:
  - match: {path_prefix: /}
    upstream: bench
    request:
      rewrite: {regex: "^/(s)mall$", replace: "/${1}mall"}
      set_headers: {X-Client: "$client_ip"}
      add_headers: {X-Env: prod}
    response:
      remove_headers: [Server]
"""

# Compression as nginx's `gzip on` with gzip_types application/json (gzip_16k).
COMPRESS_ROUTE = """routes:
  - match: {path_prefix: /}
    upstream: bench
    compress: {algorithms: [gzip], types: [application/json], min_size: 1KiB, level: LEVEL}
""".replace("LEVEL", str(GZIP_LEVEL))


def backends_conf(work, ports):
    (work / "16k").write_bytes(bytes((i * 7) % 251 for i in range(16384)))
    (work / "16k.json").write_text(json_16k())
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
    location = /16k.json {{ default_type application/json; alias {work}/16k.json; }}
    location = /healthz {{ return 200 "ok\\n"; }}
    location = /stub {{ stub_status; }}
  }}
}}
"""
    path = work / "backends.conf"
    path.write_text(conf)
    return path


def lb_conf(work, port, ports, algorithm, features, threads=1, health_interval="1s", tls=None):
    backends = "\n".join(f"      - address: 127.0.0.1:{p}" for p in ports)
    listener = f"address: 127.0.0.1:{port}, max_connections: {MAX_CONNS}"
    if tls:
        listener += (f", tls: {{certificates: [{{cert: {work}/cert.pem, key: {work}/key.pem}}], "
                     f"http2: {'true' if tls == 'h2' else 'false'}}}")
    key = "    hash_key: uri\n" if algorithm == "consistent" else ""
    health = ""
    if "health" in features:
        health = f"    health_check: {{path: /healthz, interval: {health_interval}}}\n"
    extra = ""
    if "metrics" in features:
        metrics = next(p for p in free_ports(2) if p != port)
        extra += f"metrics: {{address: 127.0.0.1:{metrics}}}\n"
    if "access_log" in features:
        extra += f"access_log: {{path: {work}/access.log}}\n"
    if "admin" in features:
        admin = next(p for p in free_ports(3) if p != port and f"127.0.0.1:{p}" not in extra)
        extra += f"admin: {{address: 127.0.0.1:{admin}, state_file: {work}/state.json}}\n"
    server_extra = "".join(f"  {kv.strip()}\n" for kv in LB_SERVER_EXTRA.split(",") if kv.strip())
    routes = (RULES_ROUTE if "rules" in features else "") + (COMPRESS_ROUTE if "gzip" in features else "")
    conf = f"""server:
  threads: {threads}
{server_extra}  pid_file: {work}/lb.pid
  upgrade_sock: {work}/lb.sock
  upstream_keepalive_pool_size: 1024
listeners: [{{{listener}}}]
clients: {{keepalive_requests: 100000000}}
{extra}upstreams:
  bench:
    algorithm: {algorithm}
{key}{health}    backends:
{backends}
{routes}"""
    path = work / "lb.yaml"
    path.write_text(conf)
    return path


NGINX_BALANCE = {"round_robin": "", "least_connections": "least_conn;",
                 "consistent": "hash $request_uri consistent;"}
HAPROXY_BALANCE = {"round_robin": "balance roundrobin", "least_connections": "balance leastconn",
                   "consistent": "balance uri\n  hash-type consistent"}


def nginx_conf(work, port, ports, algorithm, tls=None, gzip=False):
    servers = "\n".join(f"    server 127.0.0.1:{p};" for p in ports)
    listen, tls_conf = f"127.0.0.1:{port}", ""
    if tls:
        listen += " ssl http2" if tls == "h2" else " ssl"
        tls_conf = (f"\n    ssl_certificate {work}/cert.pem;\n    ssl_certificate_key {work}/key.pem;"
                    "\n    ssl_protocols TLSv1.3;")
    conf = f"""
worker_processes 1;
daemon off;
pid {work}/nginx-lb.pid;
error_log {work}/nginx-lb.err warn;
worker_rlimit_nofile {MAX_CONNS * 2 + 100};
events {{ worker_connections {MAX_CONNS}; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  {"gzip on; gzip_types application/json; gzip_min_length 1024; gzip_comp_level " + str(GZIP_LEVEL) + ";" if gzip else ""}
  upstream bench {{
    {NGINX_BALANCE[algorithm]}
{servers}
    keepalive 1024;
    keepalive_requests 100000000;
  }}
  server {{
    listen {listen};{tls_conf}
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


def haproxy_conf(work, port, ports, algorithm, tls=None):
    servers = "\n".join(f"  server s{i} 127.0.0.1:{p}" for i, p in enumerate(ports))
    bind = f"127.0.0.1:{port}"
    if tls:
        alpn = "h2,http/1.1" if tls == "h2" else "http/1.1"
        bind += f" ssl crt {work}/cert+key.pem ssl-min-ver TLSv1.3 prefer-client-ciphers alpn {alpn}"
    conf = f"""global
  nbthread 1
  maxconn {MAX_CONNS}
  # maxconn makes HAProxy ask for two file descriptors per connection; where the hard limit is
  # lower (raising it needs CAP_SYS_RESOURCE) it starts anyway, as nginx does when
  # worker_rlimit_nofile asks for more: the idle connections part needs one per connection.
  no strict-limits
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option forwardfor
  http-reuse always
frontend fe
  bind {bind}
  default_backend be
backend be
  {HAPROXY_BALANCE[algorithm]}
{servers}
"""
    path = work / "haproxy.cfg"
    path.write_text(conf)
    return path


def start_contender(name, work, port, ports, algorithm, features=(), wrapper=(), threads=1, cpus=LB_CPU,
                    health_interval="1s", tls=None):
    if name in ("lb", "lb-base"):
        binary = LB_BIN if name == "lb" else BASE_BIN
        if name == "lb-base" and not binary_accepts(binary, work, algorithm, features):
            features = tuple(f for f in features if f != "admin")  # an lb from before the admin API
        conf = lb_conf(work, port, ports, algorithm, features, threads, health_interval, tls)
        env = dict(os.environ, RUST_LOG="warn")
        return Proc(list(wrapper) + [str(binary), "-c", str(conf)], cpus, work / f"{name}.log", env)
    if name == "nginx":
        conf = nginx_conf(work, port, ports, algorithm, tls, gzip="gzip" in features)
        extra = ["-g", "master_process off;"] if wrapper else []
        return Proc(list(wrapper) + ["nginx", "-c", str(conf)] + extra, cpus, work / "nginx-lb.log")
    if name == "haproxy":
        conf = haproxy_conf(work, port, ports, algorithm, tls)
        return Proc(list(wrapper) + ["haproxy", "-db", "-f", str(conf)], cpus, work / "haproxy.log")
    raise ValueError(f"unknown contender {name!r}")


def start_for(name, work, ports, scenario):
    port = free_port()
    features = scenario.get("features", ())
    if name == "lb+features":  # the interleaved A/B: the same binary with the features on
        name, features = "lb", FEATURES
    if name == "lb+rules":  # rules_ab: the same binary, the route with rules
        name, features = "lb", ("rules",)
    lb = start_contender(name, work, port, ports[: scenario["backends"]], scenario["algorithm"],
                         features, threads=scenario.get("threads", 1),
                         cpus=scenario.get("lb_cpus", LB_CPU), tls=scenario.get("tls"))
    if not wait_http(port, tls=bool(scenario.get("tls"))):
        lb.stop(signal.SIGINT)
        raise RuntimeError(f"{name} did not start; see {lb.log}")
    return lb, port


# ----------------------------------------------------------------------------- measuring

def backend_accepts(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/stub")
    text = c.getresponse().read().decode()
    return int(text.splitlines()[2].split()[0])


def parse_wrk(out):
    """Requests, req/s and failures from wrk's report (latency comes from oha: wrk 4.1's
    percentiles are not exact)."""
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return {"requests": requests, "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "errors": errors}


def parse_h2load(out):
    """Requests, req/s and failures from h2load's report, as from wrk's (`failed` counts streams
    that broke and answers other than 2xx and 3xx)."""
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed", out)
    return {"requests": int(done.group(1)), "rps": float(re.search(r"finished in \S+, ([\d.]+) req/s", out).group(1)),
            "errors": int(done.group(2))}


def url_of(port, scenario):
    return f"{'https' if scenario.get('tls') else 'http'}://127.0.0.1:{port}{scenario['path']}"


WRK_RANDOM_URI = """
request = function()
  return wrk.format("GET", "/small?k=" .. math.random(100000, 999999))
end
"""


def run_wrk(work, port, scenario, conns, seconds):
    cpus = scenario.get("load_cpus", LOAD_CPU)
    cmd = ["taskset", "-c", cpus, "wrk", f"-t{len(cpus.split(','))}", f"-c{conns}", f"-d{seconds}s"]
    if scenario.get("new_conn"):
        cmd += ["-H", "Connection: close"]
    for header in scenario.get("headers", ()):
        cmd += ["-H", header]
    if scenario.get("random_uri"):
        script = work / "random_uri.lua"
        script.write_text(WRK_RANDOM_URI)
        cmd += ["-s", str(script)]
    cmd.append(url_of(port, scenario))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    return parse_wrk(out)


def run_h2load(port, scenario, conns, seconds):
    """Closed loop over HTTP/2 (TLS, ALPN h2): `conns` connections, each with the scenario's
    `streams` requests in flight."""
    cpus = scenario.get("load_cpus", LOAD_CPU)
    cmd = ["taskset", "-c", cpus, "h2load", "-t", str(len(cpus.split(","))), "-c", str(conns),
           "-m", str(scenario["streams"]), "-D", str(seconds), url_of(port, scenario)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    return parse_h2load(out)


def run_load(work, port, scenario, conns, seconds):
    """Closed-loop load at saturation: h2load for HTTP/2 clients, wrk for HTTP/1.1."""
    if scenario.get("tls") == "h2":
        return run_h2load(port, scenario, conns, seconds)
    return run_wrk(work, port, scenario, conns, seconds)


def measure(name, work, ports, scenario, conns, seconds, warmup):
    lb, port = start_for(name, work, ports, scenario)
    try:
        run_load(work, port, scenario, conns, warmup)
        pids = lb.pids()
        cpu0, acc0 = cpu_seconds(pids), backend_accepts(ports[0])
        result = run_load(work, port, scenario, conns, seconds)
        cpu1, acc1 = cpu_seconds(pids), backend_accepts(ports[0])
        result["cpu_us_per_req"] = (cpu1 - cpu0) * 1e6 / max(result["requests"], 1)
        result["rss_mib"] = idle.status_kib(lb.pids(), "VmHWM") / 1024
        result["conns_per_req"] = max(acc1 - acc0 - 1, 0) / max(result["requests"], 1)
        result["lb_cpu_util"] = (cpu1 - cpu0) / seconds
        return result
    finally:
        lb.stop(signal.SIGINT)


def run_oha(port, scenario, rate, seconds, conns=64):
    """Open loop at `rate` requests/s: (p50 ms, p99 ms, achieved req/s, non-2xx + errors)."""
    url = url_of(port, scenario)
    cmd = ["taskset", "-c", scenario.get("load_cpus", LOAD_CPU), str(OHA), "--no-tui", "--output-format", "json",
           "-c", str(conns), "-q", str(int(rate)), "-z", f"{seconds}s", "--latency-correction"]
    if scenario.get("new_conn"):
        cmd.append("--disable-keepalive")
    if scenario.get("tls"):
        cmd.append("--insecure")  # the bench's certificate is self-signed
    if scenario.get("tls") == "h2":
        cmd += ["--http2", "-p", str(scenario["streams"])]
    if scenario.get("random_uri"):
        cmd.append("--rand-regex-url")
        url = url + "\\?k=[0-9]{6}"
    report = parse_oha(subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 60).stdout)
    return {k: report[k] for k in ("p50_ms", "p99_ms", "achieved", "requests", "failed")}


def parse_oha(out):
    """oha's JSON report: latency percentiles and mean (ms), achieved req/s, requests answered or
    failed, and failures (non-2xx answers and errors; requests cut off by the end of a `-z` run
    are not failures)."""
    report = json.loads(out)
    codes = {int(k): v for k, v in (report.get("statusCodeDistribution") or {}).items()}
    errors = {k: v for k, v in (report.get("errorDistribution") or {}).items() if "deadline" not in k}
    failed = sum(v for k, v in codes.items() if not 200 <= k < 300) + sum(errors.values())
    pct = report["latencyPercentiles"]
    return {"p50_ms": pct["p50"] * 1000, "p99_ms": pct["p99"] * 1000, "mean_ms": report["summary"]["average"] * 1000,
            "achieved": report["summary"]["requestsPerSec"], "requests": sum(codes.values()) + sum(errors.values()),
            "failed": failed}


def measure_open(name, work, ports, scenario, rate, seconds):
    """LB CPU per request and its split over the proxy threads, at an offered `rate`."""
    lb, port = start_for(name, work, ports, scenario)
    try:
        run_load(work, port, scenario, 64, 1)
        pids = lb.pids()
        cpu0, threads0 = cpu_seconds(pids), thread_cpu_seconds(lb.p.pid, "lb proxy")
        lat = run_oha(port, scenario, rate, seconds)
        cpu1, threads1 = cpu_seconds(pids), thread_cpu_seconds(lb.p.pid, "lb proxy")
        used = {t: threads1.get(t, 0) - threads0.get(t, 0) for t in threads1}
        busy = sum(used.values()) or 1
        shares = sorted((v / busy for v in used.values()), reverse=True)
        return {"cpu_us_per_req": (cpu1 - cpu0) * 1e6 / max(lat["requests"], 1),
                "thread_shares": shares, **lat}
    finally:
        lb.stop(signal.SIGINT)


def latency_at(name, work, ports, scenario, rate, seconds):
    lb, port = start_for(name, work, ports, scenario)
    try:
        run_load(work, port, scenario, 64, 1)
        return run_oha(port, scenario, rate, seconds)
    finally:
        lb.stop(signal.SIGINT)


def median_of(runs):
    """Per figure, the median over the runs that have it."""
    keys = {k for r in runs for k, v in r.items() if v is not None}
    return {k: statistics.median(r[k] for r in runs if r.get(k) is not None) for k in keys}


# ----------------------------------------------------------------------------- scenarios

# lb's production features, as the lb_features and features_ab scenarios turn them on.
FEATURES = ("admin", "metrics", "access_log", "health")

SCENARIOS = {
    "ka_small": {"title": "keep-alive, small body", "path": "/small", "backends": 2, "algorithm": "round_robin"},
    "ka_16k": {"title": "keep-alive, 16 KiB body", "path": "/16k", "backends": 2, "algorithm": "round_robin"},
    "new_conn": {"title": "new connection per request", "path": "/small", "backends": 2,
                 "algorithm": "round_robin", "new_conn": True},
    # TLS to the load balancer, plain HTTP/1.1 to the backends. "tls" is what the clients speak
    # over it (ALPN): "h2" also has lb, nginx and HAProxy offer h2.
    "tls_ka": {"title": "HTTPS keep-alive, small body", "path": "/small", "backends": 2,
               "algorithm": "round_robin", "tls": "http/1.1"},
    # wrk (and oha) resume the TLS session of their previous connection: every request pays a
    # TCP connection and a resumed handshake (PSK with X25519, no certificate signature).
    "tls_new_conn": {"title": "HTTPS, new connection per request (TLS session resumed)", "path": "/small",
                     "backends": 2, "algorithm": "round_robin", "tls": "http/1.1", "new_conn": True},
    "h2": {"title": "HTTP/2 from the client (TLS), small body", "path": "/small", "backends": 2,
           "algorithm": "round_robin", "tls": "h2", "streams": 10},
    "pool100_least_conn": {"title": "100 backends, least connections", "path": "/small", "backends": 100,
                           "algorithm": "least_connections"},
    "pool100_consistent": {"title": "100 backends, consistent hash of the URI", "path": "/small",
                           "backends": 100, "algorithm": "consistent", "random_uri": True},
    "lb_features": {"title": "lb with admin API, metrics, access log, health checks", "path": "/small",
                    "backends": 2, "algorithm": "round_robin",
                    "features": FEATURES, "contenders": ["lb", "lb-base"]},
    # The features' cost with lb alone, its runs alternating with and without them, so that the
    # machine's drift between scenarios does not pass for their cost.
    "features_ab": {"title": "lb without and with its production features, runs alternating", "path": "/small",
                    "backends": 2, "algorithm": "round_robin", "contenders": ["lb", "lb+features"],
                    "no_latency": True},
    # Scaling: both CPUs shared by everything, so threads: 2 can only show what the second
    # core's spare cycles give.
    # Traffic rules' cost: a route with a rewrite and three header rules against a plain route,
    # lb's runs alternating.
    "rules_ab": {"title": "lb with a plain route and with a rewrite + 3 header rules, runs alternating",
                 "path": "/small", "backends": 2, "algorithm": "round_robin",
                 "contenders": ["lb", "lb+rules"], "no_latency": True},
    # Response compression: gzip at nginx's default level on a 16 KiB JSON body, against nginx's
    # gzip on.
    "gzip_16k": {"title": "gzip of a 16 KiB JSON body", "path": "/16k.json", "backends": 2,
                 "algorithm": "round_robin", "features": ("gzip",), "contenders": ["lb", "nginx"],
                 "headers": ["Accept-Encoding: gzip"]},
    "scale_t1": {"title": "lb threads: 1, all on both CPUs", "path": "/small", "backends": 2,
                 "algorithm": "round_robin", "contenders": ["lb"], "threads": 1,
                 "lb_cpus": "0,1", "load_cpus": "0,1", "no_latency": True, "open_rate": 10000},
    "scale_t2": {"title": "lb threads: 2, all on both CPUs", "path": "/small", "backends": 2,
                 "algorithm": "round_robin", "contenders": ["lb"], "threads": 2,
                 "lb_cpus": "0,1", "load_cpus": "0,1", "no_latency": True, "open_rate": 20000},
}


def binary_accepts(binary, work, algorithm, features):
    conf = lb_conf(work, free_port(), [1, 2], algorithm, features)
    return subprocess.run([str(binary), "-t", "-c", str(conf)], capture_output=True, timeout=60).returncode == 0


def lb_supports(work, scenario):
    conf = lb_conf(work, free_port(), [1, 2], scenario["algorithm"], scenario.get("features", ()),
                   tls=scenario.get("tls"))
    ok = subprocess.run([str(LB_BIN), "-t", "-c", str(conf)], capture_output=True, text=True, timeout=60)
    return ok.returncode == 0, ok.stderr.strip()


def run_table(work, ports, args):
    rows = {}
    for key in args.only:
        scenario = SCENARIOS[key]
        supported, why = lb_supports(work, scenario)
        contenders = [c for c in scenario.get("contenders", CONTENDERS) if c.split("+")[0] in CONTENDERS]
        contenders = [c for c in contenders if c != "lb" or supported]
        runs = {c: [] for c in contenders}
        for rep in range(args.reps):
            for name in contenders:
                r = measure(name, work, ports, scenario, args.conns, args.duration, args.warmup)
                print(f"  {key} {name} #{rep + 1}: {r['rps']:.0f} req/s, {r['cpu_us_per_req']:.1f} us/req, "
                      f"errors {r['errors']}", flush=True)
                runs[name].append(r)
        rows[key] = {c: median_of(rs) for c, rs in runs.items() if rs}
        if scenario.get("open_rate") and rows[key]:
            for name in contenders:
                o = measure_open(name, work, ports, scenario, scenario["open_rate"], args.latency_duration)
                rows[key][name]["open"] = o
                print(f"  {key} {name} @{scenario['open_rate']}/s: {o['cpu_us_per_req']:.1f} us/req, "
                      f"proxy threads {[round(x, 2) for x in o['thread_shares']]}", flush=True)
        if not scenario.get("no_latency") and rows[key]:
            # The same offered load for every contender: half the slowest one's saturation rate.
            rate = args.latency_rate or 0.5 * min(r["rps"] for r in rows[key].values())
            for name in contenders:
                lat = [latency_at(name, work, ports, scenario, rate, args.latency_duration)
                       for _ in range(max(1, args.reps))]
                m = median_of(lat)
                rows[key][name].update({"p50_ms": m["p50_ms"], "p99_ms": m["p99_ms"], "at_rate": rate,
                                        "lat_failed": m["failed"]})
                print(f"  {key} {name} @{rate:.0f}/s: p50 {m['p50_ms']:.2f} ms, p99 {m['p99_ms']:.2f} ms", flush=True)
        if not supported:
            rows[key]["lb_unsupported"] = why
    return rows


def run_idle(work, ports, args):
    global MAX_CONNS

    def start(name, max_conns):
        global MAX_CONNS
        MAX_CONNS = max_conns
        port = free_port()
        proc = start_contender(name, work, port, ports[:2], "round_robin")
        if not wait_http(port):
            proc.stop(signal.SIGINT)
            raise RuntimeError(f"{name} did not start; see {proc.log}")
        return proc, port

    try:
        return idle.run(CONTENDERS, args.idle, start, SMALL_BODY.encode())
    finally:
        MAX_CONNS = 8000


def run_curve(work, ports, args):
    """Open-loop latency at rising offered loads until a contender falls behind."""
    scenario = SCENARIOS["ka_small"]
    curve = {c: [] for c in CONTENDERS}
    for name in CONTENDERS:
        for rate in args.curve:
            runs = [latency_at(name, work, ports, scenario, rate, args.curve_duration) for _ in range(args.curve_reps)]
            m = median_of(runs)
            m["rate"] = rate
            print(f"  curve {name} {rate}/s: achieved {m['achieved']:.0f}, p50 {m['p50_ms']:.2f} ms, "
                  f"p99 {m['p99_ms']:.2f} ms", flush=True)
            if m["achieved"] < 0.97 * rate or m["p99_ms"] > 200:
                break  # saturated: the next rates only queue up
            curve[name].append(m)
    return curve


# ----------------------------------------------------------------------------- callgrind

def count_instructions(name, work, ports, n, features=()):
    port = free_port()
    label = name + ("+features" if features else "")
    out = work / f"callgrind.{label}.{n}"
    wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    # Health checks stay configured but do not fire while requests are counted: under valgrind a
    # request takes ~100x longer, so 1 s checks would be charged to requests many times over.
    proc = start_contender(name, work, port, ports[:2], "round_robin", features, wrapper=wrapper,
                           health_interval="1h")
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
    for f in work.glob(f"callgrind.{label}.{n}*"):
        m = re.search(r"^(?:summary|totals):\s+(\d+)", f.read_text(errors="replace"), re.M)
        total += int(m.group(1)) if m else 0
    return total


def run_callgrind(work, ports, args):
    result = {}
    features = SCENARIOS["lb_features"]["features"]
    runs = [(c, ()) for c in CONTENDERS] + ([("lb", features)] if "lb" in CONTENDERS else [])
    for name, feats in runs:
        label = name + ("+features" if feats else "")
        small = count_instructions(name, work, ports, 500, feats)
        large = count_instructions(name, work, ports, 2500, feats)
        result[label] = round((large - small) / 2000) if small and large else None
        print(f"  callgrind {label}: {result[label]} instructions/request", flush=True)
    return result


# ----------------------------------------------------------------------------- report

def fmt(v, digits=1):
    return "–" if v is None else f"{v:.{digits}f}"


def ratio(a, b):
    return "–" if not a or not b else f"{a / b:.2f}×"


def markdown(rows, callgrind, args):
    lines = [
        f"Machine: {os.cpu_count()} CPUs; LB pinned to CPU {LB_CPU}, load generator + backends on CPU {LOAD_CPU}; "
        f"{args.conns} connections; {args.duration} s per run, median of {args.reps} runs. req/s: saturation "
        "(wrk, closed loop). p50/p99: oha, open loop at the same offered load for the three (the `@ rate` "
        + ("column: set with --latency-rate" if args.latency_rate
           else "column: half the slowest contender's saturation rate")
        + "), corrected for coordinated omission.",
        "",
        "| scenario | LB | req/s | CPU µs/req | vs nginx | vs HAProxy | p50 ms | p99 ms | @ rate | peak RSS MiB "
        "| backend conns/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, row in rows.items():
        if key.startswith("scale_"):
            continue
        nginx, haproxy = row.get("nginx", {}), row.get("haproxy", {})
        for name in CONTENDERS + ["lb+features", "lb+rules"]:
            label = "lb (baseline)" if name == "lb-base" else name
            r = row.get(name)
            if r is None:
                if name == "lb" and "lb_unsupported" in row:
                    lines.append(f"| {SCENARIOS[key]['title']} | lb | not supported | | | | | | | | | |")
                continue
            cpu = r["cpu_us_per_req"]
            vs_n = ratio(cpu, nginx.get("cpu_us_per_req")) if name != "nginx" else ""
            vs_h = ratio(cpu, haproxy.get("cpu_us_per_req")) if name != "haproxy" else ""
            rate = f"{r['at_rate']:.0f}/s" if r.get("at_rate") else ""
            lines.append(
                f"| {SCENARIOS[key]['title']} | {label} | {r['rps']:.0f} | {cpu:.1f} | {vs_n} | {vs_h} "
                f"| {fmt(r.get('p50_ms'), 2)} | {fmt(r.get('p99_ms'), 2)} | {rate} | {r['rss_mib']:.1f} "
                f"| {r['conns_per_req']:.3f} | {r['errors'] + r.get('lat_failed', 0):.0f} |")
    lines += extra_lines(rows)
    if callgrind:
        labels = [l for l in ("lb", "lb-base", "lb+features", "nginx", "haproxy") if l in callgrind]
        lines += ["", "| instructions per request (callgrind; 2500- minus 500-request run, ÷ 2000) | "
                  + " | ".join(labels) + " | lb vs nginx | lb+features vs nginx |",
                  "|---|" + "---:|" * (len(labels) + 2),
                  "| small body, keep-alive | " + " | ".join(str(callgrind[l] or "–") for l in labels)
                  + f" | {ratio(callgrind.get('lb'), callgrind.get('nginx'))}"
                  + f" | {ratio(callgrind.get('lb+features'), callgrind.get('nginx'))} |"]
    return "\n".join(lines) + "\n"


def extra_lines(rows):
    out = []
    for name in ("lb", "lb-base"):
        base, feat = rows.get("ka_small", {}).get(name), rows.get("lb_features", {}).get(name)
        if base and feat:
            extra = feat["cpu_us_per_req"] / base["cpu_us_per_req"] - 1
            label = "the baseline lb's" if name == "lb-base" else "lb's"
            out += ["", f"Production features ({label}: {SCENARIOS['lb_features']['title'][8:]}): "
                    f"{feat['cpu_us_per_req']:.1f} µs/req against {base['cpu_us_per_req']:.1f} without: "
                    f"{extra * 100:+.1f}% CPU per request."]
    rules = rows.get("rules_ab", {})
    if rules.get("lb") and rules.get("lb+rules"):
        base, with_rules = rules["lb"]["cpu_us_per_req"], rules["lb+rules"]["cpu_us_per_req"]
        out += ["", f"Traffic rules (rules_ab: a regex rewrite, two request header rules and one response rule, "
                f"runs alternating): {with_rules:.1f} µs/req against {base:.1f} on a plain route: "
                f"{(with_rules / base - 1) * 100:+.1f}% CPU per request (the target: at most +5%)."]
    gz = rows.get("gzip_16k", {})
    if gz.get("lb") and gz.get("nginx"):
        out += ["", f"gzip of a 16 KiB JSON body at level {GZIP_LEVEL} (gzip_16k): lb {gz['lb']['cpu_us_per_req']:.1f} "
                f"µs/req, nginx {gz['nginx']['cpu_us_per_req']:.1f}: {ratio(gz['lb']['cpu_us_per_req'], gz['nginx']['cpu_us_per_req'])} of nginx's CPU "
                f"per request; {gz['lb']['rps']:.0f} req/s against {gz['nginx']['rps']:.0f}."]
    ab = rows.get("features_ab", {})
    if ab.get("lb") and ab.get("lb+features"):
        base, feat = ab["lb"]["cpu_us_per_req"], ab["lb+features"]["cpu_us_per_req"]
        out += ["", f"Production features, measured with lb's runs alternating with and without them "
                f"(features_ab): {feat:.1f} µs/req with them against {base:.1f} without: "
                f"{(feat / base - 1) * 100:+.1f}% CPU per request."]
    for key, row in rows.items():
        new, old = row.get("lb"), row.get("lb-base")
        if new and old:
            out += ["", f"Against the baseline binary in the same run ({SCENARIOS[key]['title']}): "
                    f"{new['cpu_us_per_req']:.1f} µs/req against {old['cpu_us_per_req']:.1f} "
                    f"({(new['cpu_us_per_req'] / old['cpu_us_per_req'] - 1) * 100:+.1f}%), "
                    f"{new['rps']:.0f} req/s against {old['rps']:.0f}."]
    out += tls_lines(rows)
    t1, t2 = rows.get("scale_t1", {}).get("lb"), rows.get("scale_t2", {}).get("lb")
    if t1 and t2 and "open" in t1 and "open" in t2:
        o1, o2 = t1["open"], t2["open"]
        r1, r2 = SCENARIOS["scale_t1"]["open_rate"], SCENARIOS["scale_t2"]["open_rate"]
        out += ["", f"Threads (lb, load generator and backends all on both CPUs), at the same load per proxy thread: "
                f"threads: 1 at {r1} req/s spends {o1['cpu_us_per_req']:.1f} µs per request; threads: 2 at {r2} req/s "
                f"spends {o2['cpu_us_per_req']:.1f} µs, split "
                f"{' / '.join(f'{x * 100:.0f}%' for x in o2['thread_shares'])} over its two proxy threads "
                f"({o2['cpu_us_per_req'] / o1['cpu_us_per_req']:.2f}× the cost per request). "
                f"At saturation (closed loop) threads: 1 serves {t1['rps']:.0f} req/s using "
                f"{t1['lb_cpu_util'] * 100:.0f}% of a core and threads: 2 {t2['rps']:.0f} req/s using "
                f"{t2['lb_cpu_util'] * 100:.0f}%: the load generator and backends take the rest of the machine."]
    return out


def tls_lines(rows):
    if not any(SCENARIOS[key].get("tls") for key in rows):
        return []
    return ["", f"HTTPS rows: TLS 1.3 from the clients to the load balancer (the same self-signed ECDSA P-256 "
            f"certificate for the three, X25519, each one's own session resumption), plain HTTP/1.1 to the backends; "
            f"HTTP/2 with {SCENARIOS['h2']['streams']} requests in flight on each connection (h2load, and oha --http2 "
            f"for p50/p99). Their p99 is mostly the start of oha's run, while it makes its TLS connections: compare p50."]


COLORS = {"lb": "#d62728", "lb-base": "#ff9896", "nginx": "#2ca02c", "haproxy": "#1f77b4"}


def nice_step(top, ticks=5):
    raw = top / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def svg_chart(curve):
    """Latency (log scale) against offered load, p99 solid and p50 dashed per contender."""
    w, h, ml, mr, mt, mb = 720, 420, 70, 20, 40, 50
    pts = [p for c in curve.values() for p in c] or [{"rate": 1, "p99_ms": 1, "p50_ms": 1}]
    top = max(p["rate"] for p in pts) * 1.05
    xstep = nice_step(top)
    xmax = xstep * math.ceil(top / xstep)
    lo = 10 ** math.floor(math.log10(max(min(p["p50_ms"] for p in pts), 0.01)))
    hi = max(10 ** math.ceil(math.log10(max(p["p99_ms"] for p in pts))), lo * 10)
    sx = lambda x: ml + x / xmax * (w - ml - mr)
    sy = lambda y: h - mb - (math.log10(max(y, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * (h - mt - mb)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
           f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">Latency vs offered load (keep-alive, '
           f'small body, 1 LB core; open loop)</text>',
           f'<line x1="{ml}" y1="{h - mb}" x2="{w - mr}" y2="{h - mb}" stroke="black"/>',
           f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{h - mb}" stroke="black"/>',
           f'<text x="{(w + ml) / 2}" y="{h - 12}" text-anchor="middle">offered load (requests/s)</text>',
           f'<text x="16" y="{(h + mt) / 2}" transform="rotate(-90 16 {(h + mt) / 2})" text-anchor="middle">'
           f'latency ms, log scale: p99 solid, p50 dashed</text>']
    for i in range(round(xmax / xstep) + 1):
        x = xstep * i
        out.append(f'<text x="{sx(x)}" y="{h - mb + 16}" text-anchor="middle">{x:g}</text>')
    decade = lo
    while decade <= hi * 1.001:
        for m in (1, 2, 5):
            y = decade * m
            if lo <= y <= hi * 1.001:
                out.append(f'<text x="{ml - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
                out.append(f'<line x1="{ml}" y1="{sy(y):.1f}" x2="{w - mr}" y2="{sy(y):.1f}" stroke="#eee"/>')
        decade *= 10
    for n, (name, points) in enumerate(curve.items()):
        for metric, dash in (("p99_ms", ""), ("p50_ms", ' stroke-dasharray="4 3"')):
            path = " ".join(f"{sx(p['rate']):.1f},{sy(p[metric]):.1f}" for p in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{COLORS[name]}" stroke-width="2"{dash}/>')
        for p in points:
            out.append(f'<circle cx="{sx(p["rate"]):.1f}" cy="{sy(p["p99_ms"]):.1f}" r="3" fill="{COLORS[name]}"/>')
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
    ap.add_argument("--latency-rate", type=float, default=0, help="offered req/s for p50/p99 (default: half the slowest)")
    ap.add_argument("--latency-duration", type=int, default=5)
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--no-curve", action="store_true")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--lb-server", default="", help="extra server settings for lb, comma-separated key: value")
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--baseline", default="", help="another lb binary, measured as contender lb-base")
    ap.add_argument("--idle", default="5000,10000", help="idle keep-alive connection counts ('' for none)")
    args = ap.parse_args()
    args.idle = [int(n) for n in args.idle.split(",") if n]
    global LB_SERVER_EXTRA, BASE_BIN
    LB_SERVER_EXTRA = args.lb_server
    CONTENDERS[:] = [c for c in args.contenders.split(",") if c]
    if args.baseline:
        BASE_BIN = Path(args.baseline).resolve()
        if not BASE_BIN.exists():
            sys.exit(f"--baseline {BASE_BIN}: no such file")
        CONTENDERS.insert(1, "lb-base")
    if not set(CONTENDERS) <= {"lb", "lb-base", "nginx", "haproxy"}:
        sys.exit(f"unknown contender in {CONTENDERS}; use lb, nginx, haproxy")
    args.only = [s for s in args.only.split(",") if s]
    args.curve = [2000, 5000, 10000, 15000, 20000, 25000, 30000, 35000, 40000, 45000, 50000, 55000, 60000]
    args.curve_duration, args.curve_reps = 5, 1
    if args.quick:
        args.reps, args.duration, args.warmup, args.latency_duration = 1, 3, 1, 3
        args.curve, args.curve_duration = [5000, 20000, 40000], 3
        args.idle = args.idle[:1]
    unknown = [s for s in args.only if s not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenario {unknown}; one of {list(SCENARIOS)}")
    if os.cpu_count() < 2:
        sys.exit("needs 2 CPUs: one for the load balancer, one for the load")
    if not OHA.exists():
        sys.exit(f"{OHA} missing: run bench/tools (or bench/run) first")

    work = Path(tempfile.mkdtemp(prefix="lb-bench-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user and serve /16k from here
    ports = free_ports(100)
    make_certificate(work)
    backends = Proc(["nginx", "-c", str(backends_conf(work, ports))], LOAD_CPU, work / "backends.log")
    curve, callgrind, idles = {}, None, {}
    try:
        if not wait_http(ports[0]):
            sys.exit(f"backends did not start; see {work}/backends.log")
        print("table:", flush=True)
        rows = run_table(work, ports, args)
        if not args.no_curve:
            print("curve:", flush=True)
            curve = run_curve(work, ports, args)
        if not args.no_callgrind:
            print("callgrind:", flush=True)
            callgrind = run_callgrind(work, ports, args)
        if args.idle:
            print("idle connections:", flush=True)
            idles = run_idle(work, ports, args)
    finally:
        backends.stop()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows, callgrind, args)
    if idles:
        table += "\n".join(idle.markdown(idles, lambda n: "lb (baseline)" if n == "lb-base" else n)) + "\n"
    (out / "latest.md").write_text(table)
    (out / "latest.json").write_text(json.dumps({"rows": rows, "curve": curve, "callgrind": callgrind,
                                                 "idle": idles, "args": vars(args)}, indent=1, default=str))
    if any(curve.values()):
        (out / "latency.svg").write_text(svg_chart(curve))
    print()
    print(table)
    shutil.rmtree(work, ignore_errors=True)  # kept on failure: the logs are there


if __name__ == "__main__":
    main()
