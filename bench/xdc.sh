#!/usr/bin/env bash
# Cross-datacenter reads: two one-server datacenters (dc1, dc2, -dev) on loopback, WAN joined.
# 1. KV GET latency (consul-rs-bench, closed loop) served locally by dc1's server vs the same
#    GET with ?dc=dc2 sent to dc1's server (forwarded to dc2 over the server RPC port). The WAN
#    is loopback, so the difference is the forwarding overhead, not a network.
# 2. Prepared-query failover: dc1's `web` instance turns critical (a catalog write), then
#    /v1/query/webq/execute is polled until it answers from dc2; the time from sending the
#    write to the first dc2 answer, and back to dc1 after the passing write.
#
# Usage: bench/xdc.sh            (PROFILE=release|debug, default release; CLIENTS=1; DURATION=10;
#                                 ROUNDS=20 failover rounds)
# Environment: CARGO_TARGET_DIR (default <repo>/target), SKIP_BUILD=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROFILE="${PROFILE:-release}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/$PROFILE/consul-rs"
BENCH="$TARGET_DIR/$PROFILE/consul-rs-bench"
CLIENTS="${CLIENTS:-1}"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-20}"

log() { printf '[xdc.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ -z "${SKIP_BUILD:-}" ]]; then
    flag=""; [[ "$PROFILE" == release ]] && flag="--release"
    (cd "$ROOT" && cargo build $flag --locked --workspace --bin consul-rs --bin consul-rs-bench)
fi

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DIR="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

start() { # node dc http wan [extra…]
    local node=$1 dc=$2 http=$3 wan=$4; shift 4
    "$BIN" agent -dev -client 127.0.0.1 -bind=127.0.0.1 -node "$node" -datacenter "$dc" \
        -http-port="$http" -server-port="$(port)" -serf-lan-port="$(port)" -serf-wan-port="$wan" \
        -dns-port="$(port)" -log-level=error "$@" >"$DIR/$node.log" 2>&1 &
    PIDS+=($!)
}
H1=$(port); W1=$(port); H2=$(port); W2=$(port)
start s1 dc1 "$H1" "$W1"
start s2 dc2 "$H2" "$W2" -retry-join-wan="127.0.0.1:$W1"
for _ in $(seq 100); do
    n=$(curl -s "127.0.0.1:$H1/v1/catalog/datacenters" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0)
    [[ "$n" == 2 ]] && break
    sleep 0.2
done
log "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p')"

for dc in "" dc2; do
    label=${dc:-local}
    "$BENCH" --target consul --endpoints "http://127.0.0.1:$H1" --clients "$CLIENTS" --op get \
        --duration "$DURATION" --warmup 2 --keys 100 ${dc:+--dc "$dc"} --json --tag "$label" >"$DIR/$label.json"
    python3 - "$DIR/$label.json" "$label" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
lat = r["latency_us"]
print(f"KV GET {sys.argv[2]:>6}: ops={r['ops']} errors={r['errors']} {r['throughput_ops_s']:.0f} ops/s "
      f"p50={lat['p50'] / 1000:.3f} ms p99={lat['p99'] / 1000:.3f} ms")
EOF
done

python3 - "$H1" "$H2" "$ROUNDS" <<'EOF'
import json, sys, time, urllib.request
h1, h2, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
def call(port, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")
def web(port, node, addr, status):
    call(port, "PUT", "/v1/catalog/register", {"Node": node, "Address": addr,
         "Service": {"ID": "web", "Service": "web", "Port": 80},
         "Check": {"CheckID": "web", "Name": "web", "ServiceID": "web", "Status": status}})
web(h1, "n1", "127.0.0.1", "passing")
web(h2, "n2", "127.0.0.2", "passing")
call(h1, "POST", "/v1/query", {"Name": "webq", "Service": {"Service": "web", "Failover": {"Datacenters": ["dc2"]}}})
def until(port, dc, start):
    while True:
        out = call(port, "GET", "/v1/query/webq/execute")
        if out["Datacenter"] == dc and out["Nodes"]:
            return (time.perf_counter() - start) * 1000, out["Failovers"]
to_dc2, back = [], []
for _ in range(rounds):
    start = time.perf_counter()
    web(h1, "n1", "127.0.0.1", "critical")
    ms, failovers = until(h1, "dc2", start); assert failovers == 1
    to_dc2.append(ms)
    start = time.perf_counter()
    web(h1, "n1", "127.0.0.1", "passing")
    back.append(until(h1, "dc1", start)[0])
def stats(xs):
    xs = sorted(xs); return f"median {xs[len(xs)//2]:.2f} ms, max {xs[-1]:.2f} ms"
print(f"critical write sent -> first answer from dc2 ({rounds} rounds): {stats(to_dc2)}")
print(f"passing write sent -> first answer from dc1: {stats(back)}")
EOF
