#!/usr/bin/env python3
"""Runs bench/artillery/scenario.yml against lb in front of three demo backends, killing backend
b 5 s into the scenario's "backend failure" phase (as Artillery announces it) and restarting it
15 s later. Everything listens on free 127.0.0.1 ports; the run is bounded by the scenario's
phases (and a timeout). Prints Artillery's summary and exits 1 when any request failed or
returned a 5xx.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
# Shared with the main benchmark.
from bench import DEMO_BIN, LB_BIN, Proc, free_ports, wait_http  # noqa: E402
ARTILLERY = ROOT / "target" / "bench-tools" / "artillery" / "node_modules" / ".bin" / "artillery"
SCENARIO = ROOT / "bench" / "artillery" / "scenario.yml"
FAILURE_PHASE = "Phase started: backend failure"
RUN_LIMIT = 15 * 60  # seconds; the scenario's phases take 80


def demo(work, name, port):
    return Proc([str(DEMO_BIN), f"{name}=127.0.0.1:{port}"], None, work / f"{name}.log")


def config(work, listen, ports):
    backends = "\n".join(f"      - address: 127.0.0.1:{p}" for p in ports)
    health = "    health_check: {path: /healthz, interval: 500ms, unhealthy_threshold: 2, healthy_threshold: 2}\n"
    return f"""server: {{threads: 1, pid_file: {work}/lb.pid, upgrade_sock: {work}/lb.sock}}
listeners: [{{address: 127.0.0.1:{listen}}}]
upstreams:
  web:
    backends:
{backends}
{health}  weighted:
    algorithm: weighted_round_robin
    backends:
{backends}
{health}  hashed:
    algorithm: consistent
    hash_key: {{header: X-User}}
    backends:
{backends}
{health}routes:
  - {{path_prefix: /weighted/, upstream: weighted}}
  - {{path_prefix: /hashed/, upstream: hashed}}
  - {{upstream: web}}
"""


def main():
    work = Path(tempfile.mkdtemp(prefix="lb-artillery-"))
    *backend_ports, listen = free_ports(4)
    ports = dict(zip("abc", backend_ports))
    (work / "lb.yaml").write_text(config(work, listen, backend_ports))
    demos = {n: demo(work, n, p) for n, p in ports.items()}
    lb = Proc([str(LB_BIN), "-c", str(work / "lb.yaml")], None, work / "lb.log")
    try:
        if not wait_http(listen, "/", limit=60):
            sys.exit(f"lb did not start; see {work}")

        def chaos():
            time.sleep(5)
            print(">>> killing backend b", flush=True)
            demos["b"].stop(signal.SIGKILL)
            time.sleep(15)
            print(">>> restarting backend b", flush=True)
            demos["b"] = demo(work, "b", ports["b"])

        report = work / "report.json"
        env = dict(os.environ, ARTILLERY_DISABLE_TELEMETRY="true")
        run = subprocess.Popen([str(ARTILLERY), "run", "--target", f"http://127.0.0.1:{listen}", "--output",
                                str(report), str(SCENARIO)], env=env, stdout=subprocess.PIPE, text=True)
        killer = threading.Timer(RUN_LIMIT, run.kill)
        killer.start()
        for line in run.stdout:
            print(line, end="", flush=True)
            if FAILURE_PHASE in line:
                threading.Thread(target=chaos, daemon=True).start()
        returncode = run.wait()
        killer.cancel()
        counters = json.loads(report.read_text())["aggregate"]["counters"]
        bad = {k: v for k, v in counters.items() if k.startswith("http.codes.5") or k.startswith("errors.")}
        transitions = [l.strip() for l in (work / "lb.log").read_text().splitlines() if "becomes" in l]
        print("\nlb health transitions:\n  " + "\n  ".join(transitions))
        print(f"\nrequests: {counters.get('http.requests')}, 2xx: {counters.get('http.codes.200')}, "
              f"failed vusers: {counters.get('vusers.failed', 0)}, 5xx/errors: {bad or 'none'}")
        return 1 if bad or counters.get("vusers.failed") or returncode else 0
    finally:
        lb.stop(signal.SIGINT)
        for p in demos.values():
            p.stop()


if __name__ == "__main__":
    sys.exit(main())
