#!/usr/bin/env python3
"""Ship size, start-up time and idle memory of a single dev node: consul-rs beside etcd (and
Consul, when CONSUL names its binary).

For each system and each of REPEATS runs: spawn the node on free loopback ports with an empty data
dir, poll its API every millisecond until it names a leader (consul-rs and Consul:
`/v1/status/leader` non-empty; etcd: `/v3/maintenance/status` with a non-zero `leader`), and
record the time since spawn; then let it sit idle for IDLE seconds and read VmRSS from
/proc/<pid>/status. Prints medians, min and max, and the binary sizes (as built, and with
`strip --strip-debug` applied to a copy, which is what a split-debuginfo build ships).

    bench/startup.py [--repeats 11] [--idle 5] [--consul-rs target/release/consul-rs]
                     [--etcd /usr/bin/etcd] [--consul /opt/consul-ref/bin/consul] [--json out.json]
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str, method: str = "GET", body: bytes | None = None) -> bytes | None:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
        c.request(method, path, body=body)
        r = c.getresponse()
        data = r.read()
        c.close()
        return data if r.status == 200 else None
    except OSError:
        return None


def consul_like(binary: str, workdir: str):
    """consul-rs or Consul in -dev mode; returns (args, api port, leader test)."""
    http = free_port()
    args = [binary, "agent", "-dev", "-client=127.0.0.1", "-bind=127.0.0.1", f"-http-port={http}",
            f"-dns-port={free_port()}", f"-serf-lan-port={free_port()}", f"-serf-wan-port={free_port()}",
            f"-server-port={free_port()}", f"-data-dir={workdir}", "-log-level=warn"]
    if "consul-rs" not in os.path.basename(binary):
        # Consul's -dev also opens gRPC ports; keep them off so nothing binds a fixed port.
        args += ["-grpc-port=-1", "-hcl", "ports { grpc_tls = -1 }"]

    def has_leader() -> bool:
        body = http_get(http, "/v1/status/leader")
        return body is not None and body.strip() not in (b"", b'""')
    return args, has_leader


def etcd(binary: str, workdir: str):
    client, peer = free_port(), free_port()
    args = [binary, "--name=bench", f"--data-dir={workdir}",
            f"--listen-client-urls=http://127.0.0.1:{client}", f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=bench=http://127.0.0.1:{peer}", "--log-level=error"]

    def has_leader() -> bool:
        body = http_get(client, "/v3/maintenance/status", "POST", b"{}")
        if body is None:
            return False
        try:
            return int(json.loads(body).get("leader", "0")) != 0
        except (ValueError, AttributeError):
            return False
    return args, has_leader


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def one_run(kind: str, binary: str, idle: float) -> tuple[float, int]:
    workdir = tempfile.mkdtemp(prefix=f"startup-{kind}-")
    args, has_leader = (etcd if kind == "etcd" else consul_like)(binary, os.path.join(workdir, "data"))
    log = open(os.path.join(workdir, "log"), "wb")
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        while not has_leader():
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} exited: {open(os.path.join(workdir, 'log')).read()[-2000:]}")
            if time.perf_counter() - start > 60:
                raise RuntimeError(f"{kind}: no leader after 60 s")
            time.sleep(0.001)
        elapsed = time.perf_counter() - start
        time.sleep(idle)
        return elapsed, rss_kib(proc.pid)
    finally:
        proc.kill()
        proc.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def sizes(binary: str) -> dict:
    out = {"built_bytes": os.path.getsize(binary)}
    with tempfile.TemporaryDirectory() as d:
        copy = os.path.join(d, "bin")
        shutil.copy(binary, copy)
        if subprocess.run(["strip", "--strip-debug", copy], capture_output=True).returncode == 0:
            out["strip_debug_bytes"] = os.path.getsize(copy)
    dwp = binary + ".dwp"
    if os.path.exists(dwp):
        out["dwp_bytes"] = os.path.getsize(dwp)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--idle", type=float, default=5.0)
    ap.add_argument("--consul-rs", default="target/release/consul-rs")
    ap.add_argument("--etcd", default=shutil.which("etcd") or "")
    ap.add_argument("--consul", default=os.environ.get("CONSUL", ""))
    ap.add_argument("--json", help="write every sample here")
    a = ap.parse_args()
    systems = [("consul-rs", a.consul_rs)]
    if a.etcd:
        systems.append(("etcd", a.etcd))
    if a.consul:
        systems.append(("consul", a.consul))
    samples = {name: {"start_ms": [], "rss_kib": []} for name, _ in systems}
    # Interleaved, so a noisy neighbour hits every system alike.
    for _ in range(a.repeats):
        for name, binary in systems:
            t, rss = one_run("etcd" if name == "etcd" else name, binary, a.idle)
            samples[name]["start_ms"].append(round(t * 1000, 1))
            samples[name]["rss_kib"].append(rss)
    print(f"| system | start to leader, median (min–max) | idle RSS, median | binary as built | strip --strip-debug |")
    print("|---|--:|--:|--:|--:|")
    report = {}
    for name, binary in systems:
        s = samples[name]
        z = sizes(binary)
        report[name] = {**s, **z}
        mb = lambda b: f"{b / 1e6:.1f} MB" if b else "—"  # noqa: E731
        print(f"| {name} | {statistics.median(s['start_ms']):.1f} ms ({min(s['start_ms'])}–{max(s['start_ms'])}) "
              f"| {statistics.median(s['rss_kib']) / 1024:.1f} MiB | {mb(z['built_bytes'])} "
              f"| {mb(z.get('strip_debug_bytes', 0))} |")
        if "dwp_bytes" in z:
            print(f"|   ({name}.dwp beside it) | | | {mb(z['dwp_bytes'])} | |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
