"""Idle keep-alive connections: what they cost each load balancer in resident memory, and what
is left 10 s after they close. Part of bench/bench.py (`--idle 5000,10000`).

Per contender, fresh: one request to warm up, then RSS (summed over its processes) is the base;
`n` connections are opened 250 at a time, each with one request answered, and left open (the
peak RSS is sampled after each group); once RSS holds still (parked connections, freed request
memory) it is the idle figure; then all close, and RSS 10 s later is the after figure.
"""

import resource
import signal
import socket
import time
from pathlib import Path

GROUP = 250
REQUEST = b"GET /small HTTP/1.1\r\nHost: bench\r\n\r\n"


def status_kib(pids, field):
    """A memory field of /proc/PID/status (VmRSS: resident now, VmHWM: its peak) summed over
    `pids`, in KiB; processes gone meanwhile count 0."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def raise_open_files():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def answered(sock, body):
    data = b""
    while not data.endswith(body):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk


def settled(proc, least=3.0, limit=20.0):
    """RSS once it has held still for a second (at least `least` s, at most `limit` s)."""
    start, last = time.time(), status_kib(proc.pids(), "VmRSS")
    while True:
        time.sleep(0.5)
        now = status_kib(proc.pids(), "VmRSS")
        if (now == last and time.time() - start >= least) or time.time() - start > limit:
            return now
        last = now


def measure(proc, port, n, body):
    time.sleep(1)
    base = status_kib(proc.pids(), "VmRSS")
    socks, peak = [], base
    while len(socks) < n:
        group = [socket.create_connection(("127.0.0.1", port)) for _ in range(min(GROUP, n - len(socks)))]
        for s in group:
            s.sendall(REQUEST)
        for s in group:
            answered(s, body)
        socks += group
        peak = max(peak, status_kib(proc.pids(), "VmRSS"))
    idle = settled(proc)
    for s in socks:
        s.close()
    time.sleep(10)
    after = status_kib(proc.pids(), "VmRSS")
    return {"n": n, "base": base, "peak": peak, "idle": idle, "after": after}


def run(contenders, counts, start, body):
    """`start(name, max_conns)` starts a contender and returns (Proc, port) once it answers."""
    raise_open_files()
    results = {}
    for n in counts:
        for name in contenders:
            proc, port = start(name, n + 1000)
            try:
                r = measure(proc, port, n, body)
            finally:
                proc.stop(signal.SIGINT)
            per = (r["idle"] - r["base"]) / n
            print(f"  idle {name} {n}: base {r['base']} KiB, peak {r['peak']}, idle {r['idle']} "
                  f"({per:.2f} KiB/conn), 10 s after close {r['after']}", flush=True)
            results.setdefault(n, {})[name] = r
    return results


def markdown(results, label_of):
    lines = ["", "Idle keep-alive connections (opened 250 at a time, one request each, then left open; RSS summed "
             "over the LB's processes; cost = idle − base):", "",
             "| connections | LB | base MiB | peak MiB | idle MiB | KiB per idle connection | vs nginx "
             "| 10 s after close MiB | given back of the peak |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for n, row in results.items():
        nginx = row.get("nginx")
        nginx_cost = (nginx["idle"] - nginx["base"]) / n if nginx else None
        for name, r in row.items():
            cost = (r["idle"] - r["base"]) / n
            vs = f"{cost / nginx_cost:.2f}×" if nginx_cost and name != "nginx" else ""
            rise = r["peak"] - r["base"]
            back = f"{(r['peak'] - r['after']) / rise * 100:.0f}%" if rise > 0 else "–"
            lines.append(f"| {n} | {label_of(name)} | {r['base'] / 1024:.1f} | {r['peak'] / 1024:.1f} "
                         f"| {r['idle'] / 1024:.1f} | {cost:.2f} | {vs} | {r['after'] / 1024:.1f} | {back} |")
    return lines
