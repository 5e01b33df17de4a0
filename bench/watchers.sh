#!/bin/bash
# Watch goals of issue #22: `--watchers` blocking queries parked on `--keys` keys of one
# `-server -bootstrap` agent with a data dir (fsync on), released by one PUT per key; the span
# from each PUT to each watcher's answer, and the agent's RSS before and with the queries parked
# (`bench/src/bin/watchers.rs`). Connections come from 127.0.0.2… (64 addresses), so the agents'
# default limit of 200 HTTP connections per client IP holds for both.
# Usage: bench/watchers.sh consul-rs|consul BINARY [watchers-bench args…]
#   e.g. bench/watchers.sh consul-rs target/release/consul-rs --watchers 10000 --rounds 5
#        bench/watchers.sh consul /tmp/consul-ref/bin/consul --watchers 10000 --rounds 5
# Each watcher is one open file here and one in the agent: the open-file limit (`ulimit -n`)
# caps --watchers a little below it. Ports 18500 (HTTP) and 18300-18302 on 127.0.0.1.
set -euo pipefail
kind=$1 bin=$2
shift 2
tool=${WATCHERS_BENCH:-${CARGO_TARGET_DIR:-target}/release/consul-rs-watchers-bench}
d=$(mktemp -d /tmp/watchers.XXXX)
trap 'kill $p 2>/dev/null; wait $p 2>/dev/null; rm -rf "$d"' EXIT
case $kind in
  consul-rs) extra=(-dns-port 18600) ;;
  consul) extra=(-dns-port -1 -grpc-port -1 -hcl 'ports { grpc_tls = -1 }') ;;
  *) echo "kind: consul-rs or consul" >&2; exit 2 ;;
esac
"$bin" agent -server -bootstrap -node bench -data-dir "$d/data" -bind 127.0.0.1 -client 127.0.0.1 \
  -http-port 18500 -server-port 18300 -serf-lan-port 18301 -serf-wan-port 18302 "${extra[@]}" \
  -log-level warn > "$d/log" 2>&1 &
p=$!
until curl -sf http://127.0.0.1:18500/v1/status/leader | grep -q 18300; do sleep 0.2; done
# Consul's leader needs a moment to set up its KV endpoints after the election.
until curl -sf -X PUT -d x http://127.0.0.1:18500/v1/kv/watch-bench-ready >/dev/null; do sleep 0.2; done
"$tool" --addr 127.0.0.1:18500 --pid $p --sources 64 "$@"
