#!/bin/bash
# Memory per key, seen from the heap profiler (issue #22). One run: a fresh `-server -bootstrap`
# agent with a data dir and `enable_debug`, 100,000 PUTs of 128-byte values from 16 connections,
# then the agent's VmRSS, PUTs/s and the in-use total of its heap profile (`/debug/pprof/heap`, jemalloc's
# samples). Usage: bench/heap-per-key.sh LABEL [BINARY]; needs python3, curl, bc and go (for
# `go tool pprof`). Ports 18300-18600 on 127.0.0.1. Read the saved profile with
# (`heap-LABEL.pb.gz`, left in the current directory) with `go tool pprof -top -cum`.
# KIND=consul runs HashiCorp Consul's binary the same way (its Go heap profile instead of
# jemalloc's; no DNS or gRPC ports); KEYS=N writes N keys instead of 100,000.
set -e
bin=${2:-target/debug/consul-rs}
load=$(mktemp /tmp/heap-load.XXXX.py)
cat > "$load" <<'PY'
import http.client, os, sys, threading
n = int(sys.argv[1]); T = 16
val = os.urandom(64).hex().encode()  # 128 bytes
def worker(t):
    c = http.client.HTTPConnection("127.0.0.1", 18500)
    for i in range(t, n, T):
        c.request("PUT", f"/v1/kv/bench/key-{i:08d}", body=val)
        r = c.getresponse(); r.read()
        if r.status != 200: sys.exit(f"PUT answered {r.status}")
ts = [threading.Thread(target=worker, args=(t,)) for t in range(T)]
[t.start() for t in ts]; [t.join() for t in ts]
PY
d=$(mktemp -d /tmp/memrun.XXXX)
echo '{"enable_debug": true}' > $d/c.json
keys=${KEYS:-100000}
case ${KIND:-consul-rs} in
  consul-rs) ports=(-dns-port 18600) ;;
  consul) ports=(-dns-port -1 -grpc-port -1 -hcl 'ports { grpc_tls = -1 }') ;;
  *) echo "KIND: consul-rs or consul" >&2; exit 2 ;;
esac
"$bin" agent -server -bootstrap -data-dir $d/data -bind 127.0.0.1 -client 127.0.0.1 -http-port 18500 "${ports[@]}" -server-port 18300 -serf-lan-port 18301 -serf-wan-port 18302 -config-file $d/c.json -log-level warn > $d/log 2>&1 &
p=$!
until curl -sf http://127.0.0.1:18500/v1/status/leader | grep -q 18300; do sleep 0.2; done
# Consul's leader needs a moment to set up its KV endpoints after the election.
until curl -sf -X PUT -d x http://127.0.0.1:18500/v1/kv/heap-ready >/dev/null; do sleep 0.2; done
s=$(date +%s.%N)
python3 "$load" "$keys"
e=$(date +%s.%N)
sleep 2
rss=$(awk '/VmRSS/{print $2}' /proc/$p/status)
curl -s -o "heap-$1.pb.gz" http://127.0.0.1:18500/debug/pprof/heap
heap=$(go tool pprof -top -nodecount=1 "heap-$1.pb.gz" 2>/dev/null | sed -n 's/.*accounting for .* of \([0-9.]*MB\) total.*/\1/p')
# consul-rs's own count of the KV table's bytes per key (absent on Consul).
per_key=$(curl -s http://127.0.0.1:18500/v1/agent/metrics | python3 -c 'import json,sys; print(next((round(g["Value"]) for g in json.load(sys.stdin)["Gauges"] if g["Name"] == "consul.state.kv_bytes_per_key"), "-"))')
echo "$1 keys=$keys puts_per_s=$(echo "$keys/($e-$s)" | bc) rss_kib=$rss heap_inuse=$heap kv_bytes_per_key=$per_key"
kill $p; wait $p 2>/dev/null || true
rm -rf $d "$load"
