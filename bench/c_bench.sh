#!/usr/bin/env bash
# libconsul_rs vs the consul_rs Python package against THE SAME consul-rs dev agent (issue #8
# item 6; BENCHMARKS.md "C library"). Builds the library (make -C c, workspace dev profile, like
# the Python extension in test-all), bench/c_bench.c with -O2, starts one
# `consul-rs agent -dev` ($CONSUL_RS_BIN, else target/release or target/debug), runs the C
# benchmark, then the same KV loops through consul_rs if $PYTHON (default .venv/bin/python) can
# import it. Node figures join when the Node package lands. With BENCH_ADDR=host:port it uses that
# agent instead of starting one (bench/jvm_bench.sh).
#
#   bench/c_bench.sh [seconds-per-row] [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
threads=${2:-16}
PYTHON=${PYTHON:-.venv/bin/python}
make -s -C c lib >/dev/null
cc -std=gnu11 -O2 -Wall -Wextra -Werror -Ic/include bench/c_bench.c -o c/build/c_bench -Lc/build -lconsul_rs \
  -Wl,-rpath,"$PWD/c/build" -lpthread
if [ -n "${BENCH_ADDR:-}" ]; then
  # An agent someone else started (bench/jvm_bench.sh runs C, Python and the JVM against one).
  http=${BENCH_ADDR##*:}
  bin="(given) $BENCH_ADDR"
else
  . bench/dev-agent.sh
  start_dev_agent
  trap 'kill $agent 2>/dev/null; wait $agent 2>/dev/null' EXIT
fi
echo "agent: $bin on 127.0.0.1:$http; $(nproc) CPUs"
c/build/c_bench "127.0.0.1:$http" "$secs" "$threads"
if "$PYTHON" -c 'import consul_rs' 2>/dev/null; then
  "$PYTHON" - "127.0.0.1:$http" "$secs" "$threads" <<'PY'
import asyncio, sys, time
import consul_rs
addr, secs, tasks = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
value = b"v" * 128
keys = [f"cbench/{i}" for i in range(1000)]
def row(name, lat, elapsed):
    lat.sort()
    print(f"{name:26} {len(lat) / elapsed:9.0f} {lat[len(lat) // 2] * 1e3:8.2f} {lat[int(len(lat) * 0.99)] * 1e3:8.2f}")
def sync(name, op):
    lat, i, start = [], 0, time.perf_counter()
    while (t := time.perf_counter()) - start < secs:
        op(keys[i % 1000]); lat.append(time.perf_counter() - t); i += 1
    row(name, lat, time.perf_counter() - start)
async def many(name, op):
    lat, start = [], time.perf_counter()
    async def worker(w):
        i = w
        while (t := time.perf_counter()) - start < secs:
            await op(keys[i % 1000]); lat.append(time.perf_counter() - t); i += tasks
    await asyncio.gather(*(worker(w) for w in range(tasks)))
    row(name, lat, time.perf_counter() - start)
c = consul_rs.Client(addr)
print(f"{'run (consul_rs, Python)':26} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
sync("py PUT 1 thread", lambda k: c.kv.put(k, value))
sync("py GET 1 thread", lambda k: c.kv.get(k))
async def run_async():
    a = consul_rs.AsyncClient(addr)
    await many(f"py PUT {tasks} tasks", lambda k: a.kv.put(k, value))
    await many(f"py GET {tasks} tasks", lambda k: a.kv.get(k))
asyncio.run(run_async())
PY
else
  echo "($PYTHON cannot import consul_rs: Python rows skipped; pip install ./python into it)"
fi
