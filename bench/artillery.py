#!/usr/bin/env python3
"""Runs bench/artillery/scenario.yml against lb in front of three demo backends, killing backend
b 5 s into the last phase and restarting it 15 s later. Everything listens on free 127.0.0.1
ports; the run is bounded by the scenario's phases. Prints Artillery's summary and exits 1 when
any request failed or returned a 5xx.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from bench import free_port  # noqa: E402  (shared with the main benchmark)
LB = ROOT / "target" / "release" / "lb"
DEMO = ROOT / "target" / "release" / "lb-demo"
ARTILLERY = ROOT / "target" / "bench-tools" / "artillery" / "node_modules" / ".bin" / "artillery"
SCENARIO = ROOT / "bench" / "artillery" / "scenario.yml"
FAILURE_PHASE_STARTS = 10 + 30 + 10  # seconds: warm-up + sustained + burst


def demo(name, port):
    return subprocess.Popen([str(DEMO), f"{name}=127.0.0.1:{port}"], stdout=subprocess.DEVNULL)


def main():
    work = Path(tempfile.mkdtemp(prefix="lb-artillery-"))
    ports = {n: free_port() for n in "abc"}
    listen = free_port()
    backends = "\n".join(f"      - address: 127.0.0.1:{p}" for p in ports.values())
    health = "    health_check: {path: /healthz, interval: 500ms, unhealthy_threshold: 2, healthy_threshold: 2}\n"
    (work / "lb.yaml").write_text(f"""server: {{threads: 1, pid_file: {work}/lb.pid, upgrade_sock: {work}/lb.sock}}
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
""")
    demos = {n: demo(n, p) for n, p in ports.items()}
    lb = subprocess.Popen([str(LB), "-c", str(work / "lb.yaml")], stderr=open(work / "lb.log", "w"))
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", listen), 1).close()
                break
            except OSError:
                time.sleep(0.05)

        def chaos():
            time.sleep(FAILURE_PHASE_STARTS + 5)
            print(">>> killing backend b", flush=True)
            demos["b"].kill()
            time.sleep(15)
            print(">>> restarting backend b", flush=True)
            demos["b"] = demo("b", ports["b"])

        threading.Thread(target=chaos, daemon=True).start()
        env = dict(os.environ, ARTILLERY_DISABLE_TELEMETRY="true")
        report = work / "report.json"
        run = subprocess.run([str(ARTILLERY), "run", "--target", f"http://127.0.0.1:{listen}", "--output", str(report),
                              str(SCENARIO)], env=env)
        counters = json.loads(report.read_text())["aggregate"]["counters"]
        bad = {k: v for k, v in counters.items() if k.startswith("http.codes.5") or k.startswith("errors.")}
        transitions = [l.strip() for l in (work / "lb.log").read_text().splitlines() if "becomes" in l]
        print("\nlb health transitions:\n  " + "\n  ".join(transitions))
        print(f"\nrequests: {counters.get('http.requests')}, 2xx: {counters.get('http.codes.200')}, "
              f"failed vusers: {counters.get('vusers.failed', 0)}, 5xx/errors: {bad or 'none'}")
        return 1 if bad or counters.get("vusers.failed") or run.returncode else 0
    finally:
        lb.send_signal(signal.SIGINT)
        for p in demos.values():
            p.kill()


if __name__ == "__main__":
    sys.exit(main())
