# Sourced by the binding benchmarks (bench/c_bench.sh, bench/jvm_bench.sh): `start_dev_agent`
# starts one `consul-rs agent -dev` ($CONSUL_RS_BIN, else target/release or target/debug) on free
# loopback ports, waits for its leader, and sets `bin`, `http` (its HTTP port) and `agent` (its
# pid); the caller stops it (`kill "$agent"`) in its own EXIT trap.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_dev_agent() {
  bin=${CONSUL_RS_BIN:-}
  if [ -z "$bin" ]; then
    for b in target/release/consul-rs target/debug/consul-rs; do [ -x "$b" ] && { bin=$b; break; }; done
  fi
  [ -n "$bin" ] || { echo "build the agent first: cargo build -p consul-rs" >&2; exit 1; }
  http=$(free_port)
  "$bin" agent -dev -client 127.0.0.1 -bind=127.0.0.1 -http-port="$http" -server-port="$(free_port)" \
    -serf-lan-port="$(free_port)" -dns-port="$(free_port)" -log-level warn </dev/null >/dev/null 2>&1 &
  agent=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$http/v1/status/leader" 2>/dev/null | grep -q ':' && return 0
    sleep 0.1
  done
  echo "the dev agent ($bin) had no leader in 10 s" >&2
  exit 1
}
