#!/usr/bin/env bash
# Leader failover: kill -9 the leader of a 3-server cluster, time until the next acknowledged
# write, for consul-rs (raft_multiplier 1 and 5) and etcd (default timing), on this machine
# (loopback only). Prints the machine, one report per scenario and a markdown table for
# BENCHMARKS.md; the JSON lines go to $RESULTS_DIR/failover-<UTC timestamp>.jsonl.
#
# Usage: bench/failover.sh [runs]          (runs = leader kills per scenario, default 20)
# Environment:
#   SCENARIOS="consul:1 consul:5 etcd"   consul:<raft_multiplier> and/or etcd, run in this order
#   SKIP_BUILD=1        use the existing release binaries
#   CARGO_TARGET_DIR    where the release binaries are (and are built): default <repo>/target
#   CONSUL_BIN          consul-rs binary (default: $CARGO_TARGET_DIR/release/consul-rs)
#   DATA_ROOT=/tmp      parent of the temporary data dirs (a real disk: fsync must mean something)
#   RESULTS_DIR=<repo>/bench-results
#   KEEP_LOGS=1         keep every server's log in $RESULTS_DIR/failover-<timestamp>-logs/
#   EXTRA_ARGS          more consul-rs-failover-bench flags (e.g. "--timeout-ms 250")
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${1:-${RUNS:-20}}"
SCENARIOS="${SCENARIOS:-consul:1 consul:5 etcd}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BENCH_BIN="$TARGET_DIR/release/consul-rs-failover-bench"
CONSUL_BIN="${CONSUL_BIN:-$TARGET_DIR/release/consul-rs}"
DATA_ROOT="${DATA_ROOT:-/tmp}"
RESULTS_DIR="${RESULTS_DIR:-$ROOT/bench-results}"
EXTRA_ARGS="${EXTRA_ARGS:-}"

log() { printf '[failover.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
want() { [[ " $SCENARIOS " == *" $1"* ]]; }

[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "runs must be a positive integer, got '$RUNS'"
for s in $SCENARIOS; do
    [[ $s == etcd || $s =~ ^consul:([1-9]|10)$ ]] || die "unknown scenario '$s' (use consul:<1-10> or etcd)"
done

# The tool kills its servers and removes its temp dir itself on exit, Ctrl-C and TERM; the
# script only has to pass the signal on and wait for it to finish cleaning up.
TOOL_PID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$TOOL_PID" ]]; then
        kill -TERM "$TOOL_PID" 2>/dev/null || true
        wait "$TOOL_PID" 2>/dev/null || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- etcd, build
if want etcd && ! command -v etcd >/dev/null; then
    log "etcd not found: installing Debian's etcd-server/etcd-client"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y etcd-server etcd-client
fi
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    pkgs=(-p consul-rs-bench)
    want consul && [[ "$CONSUL_BIN" == "$TARGET_DIR/release/consul-rs" ]] && pkgs=(-p consul-rs "${pkgs[@]}")
    log "cargo build --release ${pkgs[*]} (target dir $TARGET_DIR)"
    (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release "${pkgs[@]}")
fi
[[ -x "$BENCH_BIN" ]] || die "missing $BENCH_BIN (build it, or set CARGO_TARGET_DIR)"
want consul && { [[ -x "$CONSUL_BIN" ]] || die "missing $CONSUL_BIN"; }

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/failover-$STAMP.jsonl"
# The commit measured; "-dirty" when tracked files differ from it (the binary may not match).
COMMIT="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
[[ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]] || COMMIT+="-dirty"
# The last commit that changed the server code (core/, server/): what the numbers belong to.
CODE_COMMIT="$(git -C "$ROOT" log -1 --format=%h -- core server 2>/dev/null || echo unknown)"

machine() {
    echo "- commit measured: $COMMIT (last change to core/ or server/: $CODE_COMMIT; consul-rs binary $CONSUL_BIN, built $(date -u -r "$CONSUL_BIN" +%Y-%m-%dT%H:%MZ 2>/dev/null || echo '?'))"
    echo "- machine: $(nproc) cores (nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(free -h | awk '/^Mem:/ {print $2}') RAM, kernel $(uname -r)"
    want etcd && echo "- etcd: $(etcd --version | head -n1 | sed 's/etcd Version: //')"
    echo "- data dirs: $(df -T "$DATA_ROOT" | awk 'NR == 2 {print $2}') under $DATA_ROOT; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- $RUNS leader kills per scenario; writes every 10 ms, 500 ms timeout, to a fixed survivor${EXTRA_ARGS:+; extra flags: $EXTRA_ARGS}"
}
MACHINE="$(machine)"
printf '%s\n\n' "$MACHINE" >&2

# ---------------------------------------------------------------- scenarios
for s in $SCENARIOS; do
    args=(--runs "$RUNS" --json --label "commit $COMMIT (core/server $CODE_COMMIT)" --data-root "$DATA_ROOT")
    if [[ $s == etcd ]]; then
        args+=(--system etcd)
    else
        args+=(--system consul --raft-multiplier "${s#consul:}" --consul-bin "$CONSUL_BIN")
    fi
    [[ "${KEEP_LOGS:-0}" == 1 ]] && args+=(--keep-logs "$RESULTS_DIR/failover-$STAMP-logs/${s/:/-m}")
    # shellcheck disable=SC2206 # EXTRA_ARGS is a list of flags on purpose.
    args+=($EXTRA_ARGS)
    log "scenario $s: $RUNS kills"
    # In the background + wait, so INT/TERM reach the trap (and the tool) at once.
    "$BENCH_BIN" "${args[@]}" >>"$OUT" &
    TOOL_PID=$!
    if ! wait "$TOOL_PID"; then
        log "scenario $s failed (see above); continuing with the next"
    fi
    TOOL_PID=""
done

# ---------------------------------------------------------------- report
[[ -s "$OUT" ]] || die "no scenario produced a result"
echo
echo "## Failover — $STAMP"
echo
echo "$MACHINE"
echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg); raw: $OUT"
echo
"$BENCH_BIN" table "$OUT"
