#!/usr/bin/env python3
"""consul_rs vs py-consul against the same agent (issue #6 item 5).

Measures KV GET/PUT ops/s and p99 from one thread (sync clients) and from 16 asyncio tasks
(consul_rs.AsyncClient vs py-consul's consul.aio), the time from a PUT to a consul_rs watch
waking, and the cost of Discovery.pick(). Starts a `consul-rs agent -dev` ($CONSUL_RS_BIN,
else target/release or target/debug) unless --addr is given.

    .venv/bin/pip install py-consul aiohttp && .venv/bin/python bench/python_bench.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

import consul  # py-consul
import consul.aio

import consul_rs

REPO = Path(__file__).resolve().parents[1]
VALUE = b"v" * 128
KEYS = [f"pybench/{i}" for i in range(1000)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_agent() -> tuple[subprocess.Popen[bytes], str]:
    binary = os.environ.get("CONSUL_RS_BIN") or next(
        str(p) for p in (REPO / "target/release/consul-rs", REPO / "target/debug/consul-rs") if p.exists())
    http = free_port()
    proc = subprocess.Popen([binary, "agent", "-dev", "-client", "127.0.0.1", "-bind=127.0.0.1",
                             f"-http-port={http}", f"-server-port={free_port()}", f"-serf-lan-port={free_port()}",
                             f"-dns-port={free_port()}", "-log-level", "warn"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/v1/status/leader", timeout=2) as r:
                if r.read().strip() not in (b'""', b""):
                    return proc, f"127.0.0.1:{http}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("agent did not start")


def summarise(name: str, lat: list[float], elapsed: float) -> dict[str, float | str]:
    lat.sort()
    return {"name": name, "ops": len(lat) / elapsed, "p50_ms": lat[len(lat) // 2] * 1e3,
            "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1e3}


def sync_run(name: str, op, seconds: float) -> dict[str, float | str]:
    lat: list[float] = []
    i = 0
    start = time.perf_counter()
    while (now := time.perf_counter()) - start < seconds:
        op(KEYS[i % len(KEYS)])
        lat.append(time.perf_counter() - now)
        i += 1
    return summarise(name, lat, time.perf_counter() - start)


async def async_run(name: str, op, seconds: float, tasks: int) -> dict[str, float | str]:
    lat: list[float] = []
    start = time.perf_counter()

    async def worker(w: int) -> None:
        i = w
        while (now := time.perf_counter()) - start < seconds:
            await op(KEYS[i % len(KEYS)])
            lat.append(time.perf_counter() - now)
            i += tasks

    await asyncio.gather(*(worker(w) for w in range(tasks)))
    return summarise(name, lat, time.perf_counter() - start)


def watch_latency(c: consul_rs.Client, rounds: int) -> list[float]:
    out = []
    with c.watch.key("pybench/watch") as w:
        w.next(timeout=10)
        for i in range(rounds):
            time.sleep(0.15)  # let the watch settle into its blocking query
            t = time.perf_counter()
            c.kv.put("pybench/watch", str(i).encode())
            w.next(timeout=10)
            out.append(time.perf_counter() - t)
    return sorted(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", help="agent host:port (default: start a consul-rs dev agent)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--tasks", type=int, default=16)
    args = ap.parse_args()
    proc = None
    addr = args.addr
    if addr is None:
        proc, addr = start_agent()
    host, port = addr.rsplit(":", 1)
    try:
        rs = consul_rs.Client(addr)
        pc = consul.Consul(host=host, port=int(port))
        for k in KEYS:
            rs.kv.put(k, VALUE)
        results = [
            sync_run("consul_rs  PUT 1 thread", lambda k: rs.kv.put(k, VALUE), args.seconds),
            sync_run("py-consul  PUT 1 thread", lambda k: pc.kv.put(k, VALUE), args.seconds),
            sync_run("consul_rs  GET 1 thread", lambda k: rs.kv.get(k), args.seconds),
            sync_run("py-consul  GET 1 thread", lambda k: pc.kv.get(k), args.seconds),
        ]

        async def run_async() -> list[dict[str, float | str]]:
            ars = consul_rs.AsyncClient(addr)
            apc = consul.aio.Consul(host=host, port=int(port))
            out = [
                await async_run(f"consul_rs  PUT {args.tasks} tasks", lambda k: ars.kv.put(k, VALUE), args.seconds,
                                args.tasks),
                await async_run(f"py-consul  PUT {args.tasks} tasks", lambda k: apc.kv.put(k, VALUE), args.seconds,
                                args.tasks),
                await async_run(f"consul_rs  GET {args.tasks} tasks", lambda k: ars.kv.get(k), args.seconds,
                                args.tasks),
                await async_run(f"py-consul  GET {args.tasks} tasks", lambda k: apc.kv.get(k), args.seconds,
                                args.tasks),
            ]
            await apc.close()
            return out

        results += asyncio.run(run_async())
        print(f"{'run':28} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for r in results:
            print(f"{r['name']:28} {r['ops']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}")

        wl = watch_latency(rs, 50)
        print(f"watch wake after PUT (50 rounds): median {statistics.median(wl) * 1e3:.2f} ms, "
              f"p99 {wl[-1] * 1e3:.2f} ms (includes the PUT itself)")

        for i in range(5):
            rs.catalog.register({"Node": f"pb{i}", "Address": f"10.7.0.{i}", "Service": {"Service": "pybench-web",
                                                                                     "Port": 80}})
        with rs.discover("pybench-web") as d:
            d.ready(10)
            while len(d.instances) < 5:
                time.sleep(0.05)
            for strategy, key in (("round_robin", None), ("consistent_hash", "user-1")):
                n = 20000
                t = time.perf_counter()
                for _ in range(n):
                    d.pick(strategy, key=key)
                per = (time.perf_counter() - t) / n
                print(f"pick({strategy}) over 5 instances: {per * 1e6:.2f} µs per call")
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
