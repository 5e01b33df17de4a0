#!/bin/bash
# Memory per key, seen from the heap profiler (issue #22). One run: a fresh `-server -bootstrap`
# agent with a data dir and `enable_debug`, 100,000 PUTs of 128-byte values from 16 connections,
# then the agent's VmRSS, PUTs/s and the in-use total of its heap profile (`/debug/pprof/heap`, jemalloc's
# samples). Usage: bench/heap-per-key.sh LABEL [BINARY]; needs python3, curl, bc and go (for
# `go tool pprof`). Ports 18300-18600 on 127.0.0.1. Read the saved profile with
# (`heap-LABEL.pb.gz`, left in the current directory) with `go tool pprof -top -cum`.
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
"$bin" agent -server -bootstrap -data-dir $d/data -bind 127.0.0.1 -client 127.0.0.1 -http-port 18500 -dns-port 18600 -server-port 18300 -serf-lan-port 18301 -serf-wan-port 18302 -config-file $d/c.json -log-level warn > $d/log 2>&1 &
p=$!
until curl -sf http://127.0.0.1:18500/v1/status/leader | grep -q 18300; do sleep 0.2; done
s=$(date +%s.%N)
python3 "$load" 100000
e=$(date +%s.%N)
sleep 2
rss=$(awk '/VmRSS/{print $2}' /proc/$p/status)
curl -s -o "heap-$1.pb.gz" http://127.0.0.1:18500/debug/pprof/heap
heap=$(go tool pprof -top -nodecount=1 "heap-$1.pb.gz" 2>/dev/null | sed -n 's/.*accounting for .* of \([0-9.]*MB\) total.*/\1/p')
echo "$1 puts_per_s=$(echo "100000/($e-$s)" | bc) rss_kib=$rss heap_inuse=$heap"
kill $p; wait $p 2>/dev/null || true
rm -rf $d "$load"
