#!/usr/bin/env bash
# What recording metrics costs a KV write: one consul-rs server (fsync on, real data dir)
# measured with metrics on (the default, plus a Prometheus retention so the cumulative series
# are kept too) and with `telemetry { disable_metrics = true }` (a consul-rs extension: nothing
# is recorded). `PUT /v1/kv/bench/<n>` over 1000 keys with consul-rs-bench. The two
# configurations alternate, REPEATS times each and in swapped order every other repeat, so
# machine noise and any order effect fall on both; the script prints the medians and the ratio.
#
# Usage: bench/metrics.sh
# Environment:
#   REPEATS=6          runs per configuration
#   DURATION=8         measured seconds per run
#   WARMUP=2           unmeasured warm-up seconds per run
#   CLIENTS="1 32"     client counts (closed loop)
#   SKIP_BUILD=1       use the existing release binaries
#   CARGO_TARGET_DIR   where the release binaries are (and are built): default <repo>/target
#   RESULTS_DIR=<repo>/bench-results   where metrics-<timestamp>.jsonl is written
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPEATS="${REPEATS:-6}"
DURATION="${DURATION:-8}"
WARMUP="${WARMUP:-2}"
CLIENTS="${CLIENTS:-1 32}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CONSUL_BIN="$TARGET_DIR/release/consul-rs"
BENCH_BIN="$TARGET_DIR/release/consul-rs-bench"
RESULTS_DIR="${RESULTS_DIR:-$ROOT/bench-results}"
HTTP_PORT=18551

log() { printf '[metrics.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

TMP="$(mktemp -d /tmp/consul-rs-metrics-bench.XXXXXX)"
AGENT_PID=""
stop_agent() {
    if [[ -n "$AGENT_PID" ]]; then
        kill -TERM "$AGENT_PID" 2>/dev/null || true
        wait "$AGENT_PID" 2>/dev/null || true
        AGENT_PID=""
    fi
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_agent
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
mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/metrics-$(date -u +%Y%m%dT%H%M%SZ).jsonl"

# start_agent off|on: a fresh single server with its own data dir.
start_agent() {
    local mode=$1 dir="$TMP/$1-$RANDOM"
    mkdir -p "$dir"
    if [[ $mode == on ]]; then
        echo '{"telemetry": {"prometheus_retention_time": "60s"}}' >"$dir/telemetry.json"
    else
        echo '{"telemetry": {"disable_metrics": true}}' >"$dir/telemetry.json"
    fi
    "$CONSUL_BIN" agent -server -bootstrap -data-dir="$dir/data" -node=bench -bind=127.0.0.1 \
        -client=127.0.0.1 -http-port=$HTTP_PORT -dns-port=-1 -server-port=18552 -serf-lan-port=18553 \
        -log-level=warn -config-file="$dir/telemetry.json" >"$dir/log" 2>&1 &
    AGENT_PID=$!
    for _ in $(seq 1 100); do
        if curl -sf "http://127.0.0.1:$HTTP_PORT/v1/status/leader" | grep -q 18552; then
            break
        fi
        sleep 0.1
    done
    curl -sf "http://127.0.0.1:$HTTP_PORT/v1/status/leader" | grep -q 18552 || die "agent ($mode) did not elect itself"
}

# utime + stime of process $1, in clock ticks (/proc/<pid>/stat fields 14 and 15).
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
log "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$REPEATS"); do
    order="off on"
    if ((r % 2 == 0)); then order="on off"; fi
    for mode in $order; do
        start_agent "$mode"
        for c in $CLIENTS; do
            log "repeat $r, metrics $mode, $c clients"
            cpu_before=$(cpu_ticks "$AGENT_PID")
            "$BENCH_BIN" --endpoints "http://127.0.0.1:$HTTP_PORT" --op put --clients "$c" \
                --duration "$DURATION" --warmup "$WARMUP" --json --tag "metrics-$mode-r$r" >"$TMP/run.json"
            cpu_after=$(cpu_ticks "$AGENT_PID")
            # The agent's CPU time per measured write (warm-up included in both, so WARMUP=0
            # makes it exact): unlike throughput, barely moved by other work on the machine.
            jq -c --argjson ticks "$((cpu_after - cpu_before))" --argjson hz "$(getconf CLK_TCK)" \
                '. + {agent_cpu_us_per_op: ($ticks / $hz * 1e6 / .ops)}' "$TMP/run.json" >>"$OUT"
        done
        stop_agent
    done
done

log "results: $OUT"
# Medians per (metrics on/off, clients) and the on/off ratio.
jq -rs '
  def median: sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end;
  group_by(.clients) | .[] | . as $g
  | ($g | map(select(.tag|startswith("metrics-off"))) ) as $off
  | ($g | map(select(.tag|startswith("metrics-on"))) ) as $on
  | [ $g[0].clients,
      ($off | map(.throughput_ops_s) | median), ($on | map(.throughput_ops_s) | median),
      ($off | map(.latency_us.p50/1000) | median), ($on | map(.latency_us.p50/1000) | median),
      ($off | map(.latency_us.p99/1000) | median), ($on | map(.latency_us.p99/1000) | median),
      ($off | map(.agent_cpu_us_per_op) | median), ($on | map(.agent_cpu_us_per_op) | median) ]
  | "| \(.[0]) | \(.[1]|floor) | \(.[2]|floor) | \((.[2]/.[1]*100|round)/100)× | \(.[3]*100|round/100) | \(.[4]*100|round/100) | \(.[5]*100|round/100) | \(.[6]*100|round/100) | \(.[7]|round) | \(.[8]|round) | \((.[8]/.[7]*1000|round)/1000)× |"
' "$OUT" | { echo "| clients | metrics off req/s | metrics on req/s | on/off | off p50 ms | on p50 ms | off p99 ms | on p99 ms | off agent CPU µs/op | on agent CPU µs/op | CPU on/off |"; echo "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"; cat; }
