#!/usr/bin/env bash
# DNS benchmark: a consul-rs dev agent against unbound serving the same records from a static
# local zone, both on 127.0.0.1, measured with dnsperf. Prints a markdown table of medians.
#
# Usage: bench/dns.sh            (from anywhere; see bench/README.md)
# Environment:
#   DURATION=10        measured seconds per dnsperf run
#   REPEATS=3          runs per server and mode (medians are taken over these)
#   WARMUP=2           unmeasured seconds per server and mode before the first repeat (0 = none)
#   CLIENTS=8          dnsperf -c (client sockets)
#   OUTSTANDING=64     dnsperf -q (queries in flight at most, over all clients)
#   MAX_QPS=           dnsperf -Q (rate cap; empty = none, i.e. closed loop at OUTSTANDING)
#   INSTANCES=100      passing instances of `web` (nodes n000…, one instance each; at most 999)
#   UNBOUND_THREADS=1  unbound num-threads (consul-rs answers catalog lookups on two UDP receiver tasks)
#   RESULTS_DIR=<repo>/bench-results   where dns-<timestamp>/ is written
#   SKIP_BUILD=1       use the existing release binary
#   CONSUL_BIN=<CARGO_TARGET_DIR, else repo/target>/release/consul-rs
#   PROFILE=1          after the measured runs, `perf record -g` the agent during one more
#                      DURATION-long run per mode and write `perf report` summaries to the results
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${DURATION:-10}"
REPEATS="${REPEATS:-3}"
WARMUP="${WARMUP:-2}"
CLIENTS="${CLIENTS:-8}"
OUTSTANDING="${OUTSTANDING:-64}"
MAX_QPS="${MAX_QPS:-}"
INSTANCES="${INSTANCES:-100}"
UNBOUND_THREADS="${UNBOUND_THREADS:-1}"
RESULTS_DIR="${RESULTS_DIR:-$ROOT/bench-results}"
CONSUL_BIN="${CONSUL_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/consul-rs}"
PROFILE="${PROFILE:-0}"

MODES=(udp edns)
SERVERS=(consul unbound)

log() { printf '[dns.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ "$INSTANCES" =~ ^[0-9]+$ ]] && ((INSTANCES >= 1 && INSTANCES <= 999)) || die "INSTANCES must be 1…999"
[[ "$REPEATS" =~ ^[0-9]+$ ]] && ((REPEATS >= 1)) || die "REPEATS must be a positive integer"

# ---------------------------------------------------------------- cleanup (g)
PIDS=()          # long-running processes we started (agent, unbound)
CUR_PID=""       # the dnsperf / perf currently running, if any
PERF_PID=""
TMP=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    # dnsperf runs under /usr/bin/time: stop the child first, then the rest.
    [[ -n "$CUR_PID" ]] && pkill -TERM -P "$CUR_PID" 2>/dev/null || true
    for pid in "$CUR_PID" "$PERF_PID" "${PIDS[@]}"; do
        [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
    done
    for pid in "$CUR_PID" "$PERF_PID" "${PIDS[@]}"; do
        [[ -n "$pid" ]] || continue
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [[ -n "$TMP" && -d "$TMP" ]] && rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- (a) tools
need_pkgs=()
command -v dnsperf >/dev/null || need_pkgs+=(dnsperf)
command -v unbound >/dev/null || need_pkgs+=(unbound)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y "${need_pkgs[@]}" >/dev/null; then
        apt-get update >/dev/null
        apt-get install -y "${need_pkgs[@]}" >/dev/null
    fi
fi
for tool in dnsperf unbound unbound-checkconf dig curl python3 awk; do
    command -v "$tool" >/dev/null || die "$tool not found (dig: apt-get install bind9-dnsutils)"
done
if [[ "$PROFILE" == 1 ]]; then command -v perf >/dev/null || die "PROFILE=1 needs perf"; fi

# ---------------------------------------------------------------- (b) build
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "cargo build --release -p consul-rs"
    (cd "$ROOT" && cargo build --release -p consul-rs)
fi
[[ -x "$CONSUL_BIN" ]] || die "$CONSUL_BIN not found (build it or set CONSUL_BIN)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/consul-rs-dns.XXXXXX")"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$RESULTS_DIR/dns-$STAMP"
mkdir -p "$OUT/raw"

# Free loopback ports: the kernel picks them; each is checked free for both TCP and UDP, and all
# sockets are held until every port is chosen so the ports are distinct.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
held, ports = [], []
while len(ports) < int(sys.argv[1]):
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        t.close(); continue
    held += [t, u]; ports.append(port)
print(" ".join(map(str, ports)))
EOF
}
read -r HTTP_PORT DNS_PORT SERVER_PORT SERF_PORT UNBOUND_PORT <<<"$(free_ports 5)"
log "ports: consul http $HTTP_PORT dns $DNS_PORT server $SERVER_PORT serf $SERF_PORT; unbound $UNBOUND_PORT"

node_name() { printf 'n%03d' "$1"; }
node_addr() { echo "10.0.$(($1 / 250)).$(($1 % 250 + 1))"; }
SERVICE_PORT=8080

# CPU seconds (user+system, all threads) a process has used so far.
CLK_TCK="$(getconf CLK_TCK)"
cpu_secs() { awk -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%.3f\n", ($12 + $13) / hz }' "/proc/$1/stat"; }

# ---------------------------------------------------------------- (c) consul-rs
log "starting consul-rs dev agent"
(cd "$TMP" && exec "$CONSUL_BIN" agent -dev -client 127.0.0.1 -bind 127.0.0.1 \
    -http-port "$HTTP_PORT" -dns-port "$DNS_PORT" -server-port "$SERVER_PORT" \
    -serf-lan-port "$SERF_PORT" -log-level warn) >"$TMP/consul.log" 2>&1 &
CONSUL_PID=$!
PIDS+=("$CONSUL_PID")
for i in $(seq 300); do
    body="$(curl -fsS --max-time 1 "http://127.0.0.1:$HTTP_PORT/v1/status/leader" 2>/dev/null || true)"
    [[ -n "$body" && "$body" != '""' ]] && break
    kill -0 "$CONSUL_PID" 2>/dev/null || { cat "$TMP/consul.log" >&2; die "consul-rs exited"; }
    ((i < 300)) || die "consul-rs has no leader after 30 s"
    sleep 0.1
done
log "registering $INSTANCES passing instances of web"
for ((i = 0; i < INSTANCES; i++)); do
    n="$(node_name "$i")"
    reply="$(curl -fsS --max-time 5 -X PUT "http://127.0.0.1:$HTTP_PORT/v1/catalog/register" -d "{
        \"Node\": \"$n\", \"Address\": \"$(node_addr "$i")\",
        \"Service\": {\"ID\": \"web-$n\", \"Service\": \"web\", \"Port\": $SERVICE_PORT},
        \"Check\": {\"CheckID\": \"web-alive\", \"Name\": \"web alive\", \"Status\": \"passing\", \"ServiceID\": \"web-$n\"}}")" \
        || die "registering $n failed"
    [[ "$reply" == true ]] || die "registering $n: unexpected reply '$reply'"
done

# ---------------------------------------------------------------- (d) unbound
mkdir -p "$TMP/unbound"
UNBOUND_CONF="$TMP/unbound/unbound.conf"
{
    cat <<EOF
# Generated by bench/dns.sh: authoritative-style static answers for consul., nothing else.
server:
    username: ""
    chroot: ""
    directory: "$TMP/unbound"
    pidfile: ""
    do-daemonize: no
    use-syslog: no
    logfile: "$TMP/unbound/unbound.log"
    verbosity: 0
    num-threads: $UNBOUND_THREADS
    interface: 127.0.0.1@$UNBOUND_PORT
    port: $UNBOUND_PORT
    do-ip6: no
    access-control: 0.0.0.0/0 refuse
    access-control: 127.0.0.0/8 allow
    # Answer up to what the client advertises (dnsperf -e: 4096), like consul-rs.
    edns-buffer-size: 4096
    max-udp-size: 4096
    # Never go to the network: everything outside consul. is refused locally,
    # so no root priming or other recursion can happen.
    do-not-query-localhost: yes
    local-zone: "." refuse
    local-zone: "consul." static
EOF
    for ((i = 0; i < INSTANCES; i++)); do
        n="$(node_name "$i")"
        echo "    local-data: \"web.service.consul. 0 IN SRV 1 1 $SERVICE_PORT $n.node.dc1.consul.\""
    done
    for ((i = 0; i < INSTANCES; i++)); do
        echo "    local-data: \"$(node_name "$i").node.dc1.consul. 0 IN A $(node_addr "$i")\""
    done
    cat <<EOF
remote-control:
    control-enable: no
EOF
} >"$UNBOUND_CONF"
unbound-checkconf "$UNBOUND_CONF" >/dev/null || die "unbound-checkconf rejected $UNBOUND_CONF"
cp "$UNBOUND_CONF" "$OUT/unbound.conf"
log "starting unbound"
unbound -d -c "$UNBOUND_CONF" >"$TMP/unbound/stderr.log" 2>&1 &
UNBOUND_PID=$!
PIDS+=("$UNBOUND_PID")

port_of() { if [[ $1 == consul ]]; then echo "$DNS_PORT"; else echo "$UNBOUND_PORT"; fi; }
pid_of() { if [[ $1 == consul ]]; then echo "$CONSUL_PID"; else echo "$UNBOUND_PID"; fi; }
label_of() { if [[ $1 == consul ]]; then echo consul-rs; else echo unbound; fi; }

# Both servers must return every instance over TCP before anything is measured.
for s in "${SERVERS[@]}"; do
    for i in $(seq 100); do
        got="$(dig @127.0.0.1 -p "$(port_of "$s")" +tcp +short +time=1 +tries=1 web.service.consul SRV 2>/dev/null | grep -c node.dc1.consul || true)"
        [[ "$got" == "$INSTANCES" ]] && break
        kill -0 "$(pid_of "$s")" 2>/dev/null || die "$(label_of "$s") exited (logs in $TMP)"
        ((i < 100)) || die "$(label_of "$s") answers $got of $INSTANCES SRV records over TCP"
        sleep 0.2
    done
done
log "both servers answer $INSTANCES SRV records over TCP"

# What one query returns from each server in each mode (dig with the same EDNS as dnsperf:
# none, or a bare OPT with a 4096-byte buffer; +ignore keeps a truncated answer as is).
dig_shape() { # server mode
    local extra=(+noedns)
    case "$2" in
        edns) extra=(+edns=0 +bufsize=4096 +nocookie) ;;
        tcp) extra=(+tcp +edns=0 +bufsize=4096 +nocookie) ;;
    esac
    dig @127.0.0.1 -p "$(port_of "$1")" +ignore +noad +time=2 +tries=1 "${extra[@]}" web.service.consul SRV
}
{
    echo "| server | mode | answer | additional | TC | bytes |"
    echo "|---|---|--:|--:|---|--:|"
    for s in "${SERVERS[@]}"; do
        for m in udp edns tcp; do
            dig_shape "$s" "$m" >"$OUT/raw/dig-$s-$m.txt"
            awk -v s="$(label_of "$s")" -v m="$m" '
                /;; flags:/ { tc = ($0 ~ /flags:[^;]* tc[ ;]/) ? "yes" : "no"
                              for (i = 1; i <= NF; i++) { if ($i == "ANSWER:") an = $(i + 1); if ($i == "ADDITIONAL:") ad = $(i + 1) }
                              gsub(/,/, "", an) }
                /MSG SIZE/ { sz = $NF }
                END { printf "| %s | %s | %s | %s | %s | %s |\n", s, m, an, ad, tc, sz }' "$OUT/raw/dig-$s-$m.txt"
        done
    done
} >"$OUT/answers.md"

# ---------------------------------------------------------------- (e) dnsperf
QFILE="$TMP/queries.txt"
echo "web.service.consul SRV" >"$QFILE"

# Runs dnsperf against server $1 in mode $2 for $3 seconds, output to $4; sets RUN_CPU to the CPU
# seconds the server used meanwhile and RUN_CLIENT_CPU to dnsperf's own (empty without
# /usr/bin/time). Not called in a subshell, so cleanup sees CUR_PID.
run_dnsperf() {
    local server="$1" mode="$2" secs="$3" out="$4" pid c0 c1 timer=()
    local args=(-s 127.0.0.1 -p "$(port_of "$server")" -d "$QFILE" -l "$secs" -c "$CLIENTS" -q "$OUTSTANDING" -t 5)
    [[ "$mode" == edns ]] && args+=(-e)
    [[ -n "$MAX_QPS" ]] && args+=(-Q "$MAX_QPS")
    [[ -x /usr/bin/time ]] && timer=(/usr/bin/time -f '%U %S' -o "$TMP/client-cpu")
    rm -f "$TMP/client-cpu"
    pid="$(pid_of "$server")"
    c0="$(cpu_secs "$pid")"
    echo "# dnsperf ${args[*]}" >"$out"
    "${timer[@]}" dnsperf "${args[@]}" >>"$out" 2>&1 &
    CUR_PID=$!
    wait "$CUR_PID" || die "dnsperf failed against $(label_of "$server") ($mode): $(tail -3 "$out")"
    CUR_PID=""
    c1="$(cpu_secs "$pid")"
    RUN_CPU="$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.3f", b - a }')"
    RUN_CLIENT_CPU=""
    [[ -s "$TMP/client-cpu" ]] && RUN_CLIENT_CPU="$(awk 'END { printf "%.3f", $1 + $2 }' "$TMP/client-cpu")"
    return 0
}

# One line per run: server mode repeat qps avg_ms max_ms sd_ms sent completed lost resp_bytes
# server_cpu_cores noerror_pct client_cpu_cores
parse_dnsperf() { # file server mode repeat server_cpu_secs client_cpu_secs
    awk -v s="$2" -v m="$3" -v r="$4" -v cpu="$5" -v ccpu="$6" '
        /Queries sent:/ { sent = $3 }
        /Queries completed:/ { done = $3 }
        /Queries lost:/ { lost = $3 }
        /Response codes:/ { for (i = 1; i <= NF; i++) if ($i == "NOERROR") { ok = $(i + 2); gsub(/[()%]/, "", ok) } }
        /Average packet size:/ { rsp = $NF }
        /Run time \(s\):/ { rt = $4 }
        /Queries per second:/ { qps = $4 }
        /Average Latency \(s\):/ { avg = $4; mx = $NF; gsub(/\)/, "", mx) }
        /Latency StdDev \(s\):/ { sd = $4 }
        END {
            if (qps == "") exit 1
            printf "%s\t%s\t%s\t%.1f\t%.3f\t%.3f\t%.3f\t%d\t%d\t%d\t%d\t%.2f\t%s\t%s\n",
                s, m, r, qps, avg * 1000, mx * 1000, sd * 1000, sent, done, lost, rsp, cpu / rt, (ok == "" ? 0 : ok),
                (ccpu == "" ? "nan" : sprintf("%.2f", ccpu / rt))
        }' "$1"
}

RUNS="$OUT/runs.tsv"
printf 'server\tmode\trepeat\tqps\tavg_ms\tmax_ms\tsd_ms\tsent\tcompleted\tlost\tresp_bytes\tserver_cpu_cores\tnoerror_pct\tclient_cpu_cores\n' >"$RUNS"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

if ((WARMUP > 0)); then
    log "warm-up: ${WARMUP} s per server and mode"
    for m in "${MODES[@]}"; do
        for s in "${SERVERS[@]}"; do run_dnsperf "$s" "$m" "$WARMUP" "$TMP/warmup.txt"; done
    done
fi

for ((r = 1; r <= REPEATS; r++)); do
    # Alternate which server goes first on every repeat.
    if ((r % 2)); then order=(consul unbound); else order=(unbound consul); fi
    for m in "${MODES[@]}"; do
        for s in "${order[@]}"; do
            f="$OUT/raw/$r-$m-$s.txt"
            run_dnsperf "$s" "$m" "$DURATION" "$f"
            line="$(parse_dnsperf "$f" "$s" "$m" "$r" "$RUN_CPU" "$RUN_CLIENT_CPU")" || die "could not parse $f"
            echo "$line" >>"$RUNS"
            log "repeat $r/$REPEATS $m $(label_of "$s"): $(cut -f4 <<<"$line") q/s, avg $(cut -f5 <<<"$line") ms, lost $(cut -f10 <<<"$line"), server CPU $(cut -f12 <<<"$line") cores, dnsperf CPU $(cut -f14 <<<"$line") cores"
        done
    done
done
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- optional profile
# consul-rs is built without frame pointers but with debug info (profile.release debug = 1), so
# call graphs are unwound from DWARF; -F 499 keeps perf.data to ~20 MB/s (it stays in $TMP).
if [[ "$PROFILE" == 1 ]]; then
    for m in "${MODES[@]}"; do
        log "profiling consul-rs ($m, ${DURATION} s)"
        perf record -F 499 --call-graph dwarf,32768 -o "$TMP/perf-$m.data" -p "$CONSUL_PID" >"$TMP/perf-$m.log" 2>&1 &
        PERF_PID=$!
        sleep 0.5
        run_dnsperf consul "$m" "$DURATION" "$OUT/raw/profile-$m.txt"
        kill -INT "$PERF_PID" 2>/dev/null || true
        wait "$PERF_PID" 2>/dev/null || true
        PERF_PID=""
        # Flat self time, then inclusive time of every (non-inlined) frame above 1 %.
        perf report -i "$TMP/perf-$m.data" --stdio --no-children --sort symbol -g none --percent-limit 0.5 \
            2>/dev/null | grep -v -e '^#' -e '^$' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//' \
            >"$OUT/perf-$m-self.txt" || true
        perf report -i "$TMP/perf-$m.data" --stdio --children --sort symbol -g none --percent-limit 1 \
            2>/dev/null | grep -v -e '^#' -e '^$' -e '(inlined)' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//' \
            >"$OUT/perf-$m-inclusive.txt" || true
        rm -f "$TMP/perf-$m.data"
    done
fi

# ---------------------------------------------------------------- (f) report
median_of() { # values on stdin
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
col() { # server mode column-number
    awk -F'\t' -v s="$1" -v m="$2" -v c="$3" 'NR > 1 && $1 == s && $2 == m { print $c }' "$RUNS"
}
med() { col "$1" "$2" "$3" | median_of; }
sum() { col "$1" "$2" "$3" | awk '{ t += $1 } END { print t + 0 }'; }
minmax() { col "$1" "$2" "$3" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.0f–%.0f", lo, hi }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "—"; else printf "%.2f×", a / b }'; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { printf f, v }'; }

MODE_LABEL_udp="plain UDP (no EDNS)"
MODE_LABEL_edns="EDNS0, 4096-byte buffer"
TABLE="$OUT/table.md"
{
    echo "| mode | consul-rs q/s | unbound q/s | q/s ratio (consul-rs/unbound) | consul-rs avg ms | unbound avg ms | consul-rs max ms | unbound max ms | response bytes (c/u) | server CPU, cores (c/u) | q/s per server core (c/u) | dnsperf CPU, cores (c/u) | lost (c/u) | q/s min–max (c; u) |"
    echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    for m in "${MODES[@]}"; do
        label_var="MODE_LABEL_$m"
        cq="$(med consul "$m" 4)"; uq="$(med unbound "$m" 4)"
        ca="$(med consul "$m" 5)"; ua="$(med unbound "$m" 5)"
        cx="$(med consul "$m" 6)"; ux="$(med unbound "$m" 6)"
        cb="$(med consul "$m" 11)"; ub="$(med unbound "$m" 11)"
        cc="$(med consul "$m" 12)"; uc="$(med unbound "$m" 12)"
        cl="$(sum consul "$m" 10)"; ul="$(sum unbound "$m" 10)"
        ck="$(med consul "$m" 14)"; uk="$(med unbound "$m" 14)"
        cpc="$(awk -v q="$cq" -v c="$cc" 'BEGIN { if (c > 0) printf "%.0f", q / c; else print "—" }')"
        upc="$(awk -v q="$uq" -v c="$uc" 'BEGIN { if (c > 0) printf "%.0f", q / c; else print "—" }')"
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s/%s | %s/%s | %s/%s | %s/%s | %s/%s | %s; %s |\n' \
            "${!label_var}" "$(fmt "$cq" %.0f)" "$(fmt "$uq" %.0f)" "$(ratio "$cq" "$uq")" \
            "$(fmt "$ca" %.3f)" "$(fmt "$ua" %.3f)" "$(fmt "$cx" %.2f)" "$(fmt "$ux" %.2f)" \
            "$(fmt "$cb" %.0f)" "$(fmt "$ub" %.0f)" "$(fmt "$cc" %.2f)" "$(fmt "$uc" %.2f)" "$cpc" "$upc" "$(fmt "$ck" %.2f)" "$(fmt "$uk" %.2f)" "$cl" "$ul" \
            "$(minmax consul "$m" 4)" "$(minmax unbound "$m" 4)"
    done
} >"$TABLE"

{
    echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r); load average $LOAD_START at start, $LOAD_END at end."
    echo "consul-rs: $CONSUL_BIN ($(stat -c %y "$CONSUL_BIN" | cut -d. -f1)); $(unbound -V | head -1 | sed 's/Version/unbound/'); $(dnsperf -h 2>&1 | grep -m1 '^Version' | sed 's/Version/dnsperf/')."
    echo "$INSTANCES passing instances of web; query \`web.service.consul SRV\`; dnsperf -c $CLIENTS -q $OUTSTANDING${MAX_QPS:+ -Q $MAX_QPS} -l $DURATION, $REPEATS repeats per server and mode (interleaved, order swapped every repeat), ${WARMUP} s warm-up; unbound num-threads $UNBOUND_THREADS."
    echo "Latency: dnsperf $(dnsperf -h 2>&1 | grep -m1 '^Version' | cut -d' ' -f2) reports only average, min, max and standard deviation (no histogram or percentiles), so the table gives the median of each run's average and of each run's max."
} >"$OUT/machine.txt"

echo
cat "$OUT/machine.txt"
echo
echo "What one query returns (dig, same EDNS as dnsperf):"
echo
cat "$OUT/answers.md"
echo
echo "Medians over $REPEATS runs of ${DURATION} s:"
echo
cat "$TABLE"
awk -F'\t' 'NR > 1 && $13 != "100.00" { printf "WARNING: %s %s repeat %s: only %s%% NOERROR answers\n", $1, $2, $3, $13 }' \
    "$RUNS" | tee "$OUT/warnings.txt"
[[ -s "$OUT/warnings.txt" ]] || rm -f "$OUT/warnings.txt"
echo
echo "Raw outputs: $OUT"
