#!/usr/bin/env bash
# What TLS costs the HTTP API: one consul-rs server (fsync on, real data dir) serving plain HTTP
# and HTTPS side by side (certificates made by `consul-rs tls`, `verify_incoming = true`, so
# every HTTPS client presents a certificate: the hardened setup). The same server answers both,
# so the only difference is the transport. For each repeat, plain and TLS runs alternate, in
# swapped order every other repeat; the script prints medians and the TLS/plain ratio for KV GET
# (default consistency) and KV PUT. Each closed-loop client keeps one keep-alive connection, so
# this measures TLS record cost, not handshakes.
#
# Usage: bench/tls.sh
# Environment:
#   REPEATS=5          runs per transport and operation
#   DURATION=8         measured seconds per run
#   WARMUP=2           unmeasured warm-up seconds per run
#   CLIENTS="1 32"     client counts (closed loop)
#   OPS="get put"      operations
#   SKIP_BUILD=1       use the existing release binaries
#   CARGO_TARGET_DIR   where the release binaries are (and are built): default <repo>/target
#   RESULTS_DIR=<repo>/bench-results   where tls-<timestamp>.jsonl is written
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPEATS="${REPEATS:-5}"
DURATION="${DURATION:-8}"
WARMUP="${WARMUP:-2}"
CLIENTS="${CLIENTS:-1 32}"
OPS="${OPS:-get put}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CONSUL_BIN="$TARGET_DIR/release/consul-rs"
BENCH_BIN="$TARGET_DIR/release/consul-rs-bench"
RESULTS_DIR="${RESULTS_DIR:-$ROOT/bench-results}"
HTTP_PORT=18551
HTTPS_PORT=18552

log() { printf '[tls.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

TMP="$(mktemp -d /tmp/consul-rs-tls-bench.XXXXXX)"
AGENT_PID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$AGENT_PID" ]]; then
        kill -TERM "$AGENT_PID" 2>/dev/null || true
        wait "$AGENT_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    log "building release binaries"
    (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -p consul-rs -p consul-rs-bench)
fi
[[ -x "$CONSUL_BIN" && -x "$BENCH_BIN" ]] || die "missing $CONSUL_BIN or $BENCH_BIN"
command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/tls-$(date -u +%Y%m%dT%H%M%SZ).jsonl"

PKI="$TMP/pki"
mkdir -p "$PKI"
(cd "$PKI" && "$CONSUL_BIN" tls ca create >/dev/null && "$CONSUL_BIN" tls cert create -server -dc dc1 >/dev/null \
    && "$CONSUL_BIN" tls cert create -cli -dc dc1 >/dev/null) || die "tls commands"
cat >"$TMP/tls.json" <<EOF
{"ports": {"https": $HTTPS_PORT},
 "tls": {"defaults": {"ca_file": "$PKI/consul-agent-ca.pem", "cert_file": "$PKI/dc1-server-consul-0.pem",
                      "key_file": "$PKI/dc1-server-consul-0-key.pem", "verify_incoming": true}}}
EOF
"$CONSUL_BIN" agent -server -bootstrap -data-dir="$TMP/data" -node=bench -bind=127.0.0.1 -client=127.0.0.1 \
    -http-port=$HTTP_PORT -dns-port=-1 -server-port=18553 -serf-lan-port=18554 -log-level=warn \
    -config-file="$TMP/tls.json" >"$TMP/log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$HTTP_PORT/v1/status/leader" | grep -q 18553 && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$HTTP_PORT/v1/status/leader" | grep -q 18553 || die "agent did not elect itself: $(cat "$TMP/log")"
TLS_ARGS=(--cacert "$PKI/consul-agent-ca.pem" --client-cert "$PKI/dc1-cli-consul-0.pem"
    --client-key "$PKI/dc1-cli-consul-0-key.pem")

log "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$REPEATS"); do
    order="plain tls"
    if ((r % 2 == 0)); then order="tls plain"; fi
    for op in $OPS; do
        for c in $CLIENTS; do
            for t in $order; do
                if [[ $t == tls ]]; then
                    ep=(--endpoints "https://127.0.0.1:$HTTPS_PORT" "${TLS_ARGS[@]}")
                else
                    ep=(--endpoints "http://127.0.0.1:$HTTP_PORT")
                fi
                log "repeat $r, $op, $c clients, $t"
                "$BENCH_BIN" "${ep[@]}" --op "$op" --mode default --clients "$c" --duration "$DURATION" \
                    --warmup "$WARMUP" --json --tag "tls-$t-r$r" >>"$OUT"
            done
        done
    done
done

log "results: $OUT"
jq -rs '
  def median: sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end;
  group_by([.op, .clients]) | .[] | . as $g
  | ($g | map(select(.tag|startswith("tls-plain"))) ) as $p
  | ($g | map(select(.tag|startswith("tls-tls"))) ) as $t
  | [ $g[0].op, $g[0].clients,
      ($p | map(.throughput_ops_s) | median), ($t | map(.throughput_ops_s) | median),
      ($p | map(.latency_us.p50/1000) | median), ($t | map(.latency_us.p50/1000) | median),
      ($p | map(.latency_us.p99/1000) | median), ($t | map(.latency_us.p99/1000) | median) ]
  | "| \(.[0]) | \(.[1]) | \(.[2]|floor) | \(.[3]|floor) | \((.[3]/.[2]*100|round)/100)× | \(.[4]*1000|round/1000) | \(.[5]*1000|round/1000) | \(.[6]*1000|round/1000) | \(.[7]*1000|round/1000) |"
' "$OUT" | { echo "| op | clients | HTTP req/s | HTTPS req/s | HTTPS/HTTP | HTTP p50 ms | HTTPS p50 ms | HTTP p99 ms | HTTPS p99 ms |"; echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|"; cat; }
