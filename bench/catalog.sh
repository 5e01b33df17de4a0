#!/usr/bin/env bash
# The service-discovery benchmark (issue #3): one release `consul-rs` server with a data dir
# (fsync on), 10,000 service instances with a TTL check each registered on it, then health
# queries and check flips. Prints the tool's JSON and keeps a copy in bench-results/.
# Settings: SERVICES (10000), INSTANCES (1000 per name), SKIP_BUILD=1, BIN (the agent binary to
# measure, default target/release/consul-rs: for A/B runs against an older build), QUERY_CLIENTS (4).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SERVICES="${SERVICES:-10000}"
INSTANCES="${INSTANCES:-1000}"
BIN="${BIN:-target/release/consul-rs}"
QUERY_CLIENTS="${QUERY_CLIENTS:-4}"
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -p consul-rs -p consul-rs-bench
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port)
"$BIN" agent -server -bootstrap -node bench -data-dir "$work/data" -bind 127.0.0.1 -client 127.0.0.1 \
  -http-port "$http" -server-port "$(free_port)" -serf-lan-port "$(free_port)" -dns-port "$(free_port)" -log-level warn &
pid=$!
for _ in $(seq 100); do
  curl -sf "127.0.0.1:$http/v1/status/leader" | grep -q ':' && break
  sleep 0.1
done
mkdir -p bench-results
out="bench-results/catalog-$(date -u +%Y%m%dT%H%M%SZ).json"
target/release/consul-rs-catalog-bench --addr "127.0.0.1:$http" --pid "$pid" --services "$SERVICES" --instances "$INSTANCES" --query-clients "$QUERY_CLIENTS" | tee "$out"
