#!/usr/bin/env bash
# Benchmarks a 3-server consul-rs cluster against a 3-member etcd cluster on this machine
# (loopback only) with consul-rs-bench, and prints a markdown table of medians.
#
# Usage: bench/run.sh            (from anywhere; see bench/README.md)
# Environment:
#   REPEATS=3          times the whole matrix is run (medians are taken over these)
#   DURATION=10        measured seconds per run
#   WARMUP=2           unmeasured warm-up seconds per run
#   TARGETS="consul etcd"   which systems to start and measure (e.g. TARGETS=etcd)
#   VALUE_SIZE=128     value size in bytes
#   KEYS=1000          key space (bench/0 … bench/<KEYS-1>)
#   PUT_CLIENTS="1 16 64"   client counts for the PUT runs
#   GET_CLIENTS=64     client count for the GET runs
#   RESULTS_DIR=<repo>/bench-results   where <timestamp>.jsonl is written
#   SKIP_BUILD=1       use the existing release binaries
#   CONSUL_BIN=<repo>/target/release/consul-rs
#   DATA_ROOT=/tmp     parent of the temporary data dirs (must be a real disk for fsync to mean anything)
#   BENCH_THREADS=1    load-generator threads (raise it if consul-rs-bench nears a full core)
#   KEEP_LOGS=1        copy server logs next to the results before the temp dir is removed
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPEATS="${REPEATS:-3}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
TARGETS="${TARGETS:-consul etcd}"
VALUE_SIZE="${VALUE_SIZE:-128}"
KEYS="${KEYS:-1000}"
PUT_CLIENTS="${PUT_CLIENTS:-1 16 64}"
GET_CLIENTS="${GET_CLIENTS:-64}"
RESULTS_DIR="${RESULTS_DIR:-$ROOT/bench-results}"
CONSUL_BIN="${CONSUL_BIN:-$ROOT/target/release/consul-rs}"
BENCH_BIN="$ROOT/target/release/consul-rs-bench"
DATA_ROOT="${DATA_ROOT:-/tmp}"
BENCH_THREADS="${BENCH_THREADS:-1}"

# Ports: three of each kind, all on 127.0.0.1.
ETCD_CLIENT_PORTS=(12379 22379 32379)
ETCD_PEER_PORTS=(12380 22380 32380)
CONSUL_HTTP_PORTS=(18501 18502 18503)
CONSUL_SERVER_PORTS=(18301 18302 18303)
CONSUL_SERF_PORTS=(18311 18312 18313)

log() { printf '[run.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
want() { [[ " $TARGETS " == *" $1 "* ]]; }

for t in $TARGETS; do
    [[ $t == consul || $t == etcd ]] || die "unknown target '$t' in TARGETS (use consul and/or etcd)"
done

# ---------------------------------------------------------------- cleanup (h)
PIDS=()
TMP=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n "${BENCH_PID:-}" ]] && kill "$BENCH_PID" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        if [[ "${KEEP_LOGS:-0}" == 1 && -n "${STAMP:-}" ]]; then
            mkdir -p "$RESULTS_DIR/$STAMP-logs"
            cp "$TMP"/*.log "$RESULTS_DIR/$STAMP-logs/" 2>/dev/null || true
        fi
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- (a) etcd
if want etcd && ! command -v etcd >/dev/null; then
    log "etcd not found: installing Debian's etcd-server/etcd-client"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y etcd-server etcd-client
    # The package may enable a system etcd on the default ports; ours use other ports anyway.
fi
if want etcd; then
    command -v etcdctl >/dev/null || die "etcdctl missing (apt-get install etcd-client)"
    export ETCDCTL_API=3
fi
command -v curl >/dev/null || die "curl is required"

# ---------------------------------------------------------------- (b) build
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    pkgs=(-p consul-rs-bench)
    want consul && [[ "$CONSUL_BIN" == "$ROOT/target/release/consul-rs" ]] && pkgs=(-p consul-rs "${pkgs[@]}")
    log "cargo build --release ${pkgs[*]}"
    (cd "$ROOT" && cargo build --release "${pkgs[@]}")
fi
[[ -x "$BENCH_BIN" ]] || die "missing $BENCH_BIN"
want consul && { [[ -x "$CONSUL_BIN" ]] || die "missing $CONSUL_BIN"; }

port_busy() { ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }
ports=()
want etcd && ports+=("${ETCD_CLIENT_PORTS[@]}" "${ETCD_PEER_PORTS[@]}")
want consul && ports+=("${CONSUL_HTTP_PORTS[@]}" "${CONSUL_SERVER_PORTS[@]}" "${CONSUL_SERF_PORTS[@]}")
for p in "${ports[@]}"; do
    ! port_busy "$p" || die "port $p is already in use on this machine"
done

TMP="$(mktemp -d "$DATA_ROOT/consul-rs-bench.XXXXXX")"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/$STAMP.jsonl"

# ---------------------------------------------------------------- (c) etcd cluster
ETCD_ENDPOINTS=""
if want etcd; then
    initial=""
    for i in 0 1 2; do
        initial+="${initial:+,}e$((i + 1))=http://127.0.0.1:${ETCD_PEER_PORTS[$i]}"
        ETCD_ENDPOINTS+="${ETCD_ENDPOINTS:+,}http://127.0.0.1:${ETCD_CLIENT_PORTS[$i]}"
    done
    for i in 0 1 2; do
        n="e$((i + 1))"
        # fsync is etcd's default (--unsafe-no-fsync is not given).
        etcd --name "$n" --data-dir "$TMP/$n" \
            --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$i]}" \
            --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$i]}" \
            --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORTS[$i]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORTS[$i]}" \
            --initial-cluster "$initial" --initial-cluster-token consul-rs-bench \
            --initial-cluster-state new --logger zap --log-outputs stderr \
            >"$TMP/$n.log" 2>&1 &
        PIDS+=($!)
    done
    log "etcd cluster starting: $ETCD_ENDPOINTS (data in $TMP)"
fi

# ---------------------------------------------------------------- (d) consul-rs cluster
CONSUL_ENDPOINTS=""
if want consul; then
    for i in 0 1 2; do
        n="n$((i + 1))"
        mkdir -p "$TMP/consul-$n"
        printf '{"performance":{"raft_multiplier":1}}\n' >"$TMP/consul-$n.json"
        CONSUL_ENDPOINTS+="${CONSUL_ENDPOINTS:+,}http://127.0.0.1:${CONSUL_HTTP_PORTS[$i]}"
        "$CONSUL_BIN" agent -server -bootstrap-expect 3 \
            -data-dir "$TMP/consul-$n" -bind 127.0.0.1 -client 127.0.0.1 \
            -http-port "${CONSUL_HTTP_PORTS[$i]}" -server-port "${CONSUL_SERVER_PORTS[$i]}" \
            -serf-lan-port "${CONSUL_SERF_PORTS[$i]}" -dns-port -1 \
            -retry-join "127.0.0.1:${CONSUL_SERF_PORTS[0]}" -node "$n" \
            -config-file "$TMP/consul-$n.json" \
            >"$TMP/consul-$n.log" 2>&1 &
        PIDS+=($!)
    done
    log "consul-rs cluster starting: $CONSUL_ENDPOINTS"
fi

# ---------------------------------------------------------------- (e) wait for leaders
all_alive() {
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || return 1
    done
}
fail_with_logs() {
    for f in "$TMP"/*.log; do
        [[ -f $f ]] || continue
        log "--- tail of $(basename "$f")"
        tail -n 20 "$f" >&2 || true
    done
    die "$1"
}
etcd_ready() {
    local status
    status="$(etcdctl --endpoints "$ETCD_ENDPOINTS" --dial-timeout 1s --command-timeout 2s \
        endpoint status -w simple 2>/dev/null)" || return 1
    # One line per member; the 5th column is IS LEADER.
    [[ "$(grep -c . <<<"$status")" == 3 ]] || return 1
    awk -F', ' '$5 == "true" { found = 1 } END { exit !found }' <<<"$status" || return 1
    etcdctl --endpoints "$ETCD_ENDPOINTS" --command-timeout 2s put bench/_probe ok >/dev/null 2>&1
}
consul_ready() {
    local port body
    for port in "${CONSUL_HTTP_PORTS[@]}"; do
        body="$(curl -fsS --max-time 2 "http://127.0.0.1:$port/v1/status/leader" 2>/dev/null)" || return 1
        [[ "$body" =~ ^\"[^\"]+\"[[:space:]]*$ ]] || return 1
    done
}
wait_ready() {
    local name=$1 check=$2 deadline=$((SECONDS + 90))
    until "$check"; do
        all_alive || fail_with_logs "a server process exited while waiting for $name"
        ((SECONDS < deadline)) || fail_with_logs "$name has no leader after 90 s"
        sleep 0.5
    done
    log "$name has a leader"
}
want etcd && wait_ready etcd etcd_ready
want consul && wait_ready consul-rs consul_ready

# ---------------------------------------------------------------- (f) matrix
{
    echo "## consul-rs vs etcd — $STAMP"
    echo
    echo "- machine: $(nproc) cores, $(free -h | awk '/^Mem:/ {print $2}') RAM," \
        "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
    echo "- data dirs: $(df -T "$TMP" | awk 'NR == 2 {print $2}') under $DATA_ROOT; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    want etcd && echo "- etcd: $(etcd --version | head -n1)"
    echo "- runs: ${DURATION}s measured after ${WARMUP}s warm-up, value ${VALUE_SIZE} B, ${KEYS} keys, repeats ${REPEATS}"
    echo
} >&2
HEADER_LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"

run_one() { # target op mode clients rep
    local target=$1 op=$2 mode=$3 clients=$4 rep=$5 endpoints
    if [[ $target == consul ]]; then endpoints=$CONSUL_ENDPOINTS; else endpoints=$ETCD_ENDPOINTS; fi
    local what=$op
    [[ $op == get ]] && what+=" $mode"
    log "rep $rep/$REPEATS: $target $what clients=$clients"
    # In the background + wait, so a TERM/INT trap runs at once instead of after the run.
    "$BENCH_BIN" --target "$target" --endpoints "$endpoints" --clients "$clients" \
        --op "$op" --mode "$mode" --duration "$DURATION" --warmup "$WARMUP" \
        --value-size "$VALUE_SIZE" --keys "$KEYS" --json --tag "rep$rep" --threads "$BENCH_THREADS" \
        >>"$OUT" 2>>"$TMP/bench.log" &
    BENCH_PID=$!
    if ! wait "$BENCH_PID"; then
        BENCH_PID=""
        log "  run failed (see below); continuing"
        tail -n 3 "$TMP/bench.log" >&2 || true
    else
        BENCH_PID=""
        tail -n 1 "$OUT" | sed -E 's/.*"ops":([0-9]+),"errors":([0-9]+),"throughput_ops_s":([0-9.]+).*"p50":([0-9.]+).*"p99":([0-9.]+).*/  ops=\1 errors=\2 ops\/s=\3 p50_us=\4 p99_us=\5/' >&2
    fi
    all_alive || fail_with_logs "a server process died during the run"
}

scenarios=()
for c in $PUT_CLIENTS; do scenarios+=("put default $c"); done
for m in default stale consistent; do scenarios+=("get $m $GET_CLIENTS"); done

for rep in $(seq "$REPEATS"); do
    # Alternate which system goes first so slow drift (compaction, page cache, other load on
    # the machine) does not systematically favour one of them.
    if ((rep % 2 == 1)); then order="consul etcd"; else order="etcd consul"; fi
    for s in "${scenarios[@]}"; do
        read -r op mode clients <<<"$s"
        for target in $order; do
            want "$target" || continue
            # etcd has two read kinds: default and consistent both map to a linearizable
            # range, so the consistent row reuses the default run's numbers.
            [[ $target == etcd && $op == get && $mode == consistent ]] && continue
            run_one "$target" "$op" "$mode" "$clients" "$rep"
        done
    done
done

# ---------------------------------------------------------------- (g) report
log "raw results: $OUT"
echo "## consul-rs vs etcd — $STAMP"
echo
echo "Machine: $(nproc) cores, $(free -h | awk '/^Mem:/ {print $2}') RAM, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)."
echo "Load average at start / end: $HEADER_LOAD / $(cut -d' ' -f1-3 /proc/loadavg). Raw: $OUT"
echo
"$BENCH_BIN" summarize "$OUT"
