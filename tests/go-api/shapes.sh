#!/usr/bin/env bash
# Compares the JSON shape of every read endpoint the Go, Python and Node clients call with the
# official Go client's types, and those differences with the ones the real Consul 1.16.0 shows
# for the same requests (shapes/consul-1.16.0.txt): consul-rs must send exactly the fields
# Consul sends, no more and no fewer (see shapes/shapes_test.go).
#
#   tests/go-api/shapes.sh            check consul-rs (CONSUL_RS_BIN, default target/debug/consul-rs)
#   tests/go-api/shapes.sh -record    rewrite shapes/consul-1.16.0.txt from the binary in
#                                     CONSUL_RS_BIN, which must then be the real Consul 1.16.0
#                                     (../shared/tools/build-consul-ref.sh builds it)
#
# Prints `go-shapes: N passed, M failed` (one per endpoint, plus the checker's own test).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
broken() { echo "go-shapes: $1" >&2; echo "go-shapes: 0 passed, 1 failed"; exit 1; }
command -v go >/dev/null || broken "go not found"
bin="${CONSUL_RS_BIN:-$repo/target/debug/consul-rs}"
[ -x "$bin" ] || broken "$bin not found (build consul-rs or set CONSUL_RS_BIN)"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

work="$(mktemp -d "${TMPDIR:-/tmp}/consul-rs-shapes.XXXXXX")" || broken "mktemp failed"
# testutil execs `consul` with our TMPDIR: kill whatever of this run is left, then remove it all.
cleanup() {
  for pid in $(grep -lsFxz "TMPDIR=$work/tmp" /proc/[0-9]*/environ | cut -d/ -f3); do
    kill -KILL "$pid" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$work/bin" "$work/tmp"
ln -s "$bin" "$work/bin/consul"
cd "$here" || exit 1
go test -c -o "$work/shapes.test" ./shapes || broken "go test -c failed"
unset_consul_env=()
for v in $(compgen -e | grep -E '^CONSUL_'); do unset_consul_env+=(-u "$v"); done

if [ "${1:-}" = -record ]; then
  out="$here/shapes/consul-1.16.0.txt"
  {
    echo "# What Consul 1.16.0 answers differently from github.com/hashicorp/consul/api v1.22.0's types,"
    echo "# per request: written by \`tests/go-api/shapes.sh -record\` against the real Consul on $(date -u +%F)."
    echo "# LABEL<TAB>difference; consul-rs must show exactly these (shapes/shapes_test.go)."
  } >"$work/record.txt"
  (cd shapes && env "${unset_consul_env[@]}" PATH="$work/bin:$PATH" TMPDIR="$work/tmp" SHAPES_RECORD="$work/record.txt" \
    timeout 300 "$work/shapes.test" -test.count=1 -test.v -test.run "TestShapes") >"$work/record.log" 2>&1 || { grep -E "^\s+shapes_test|FAIL|Error" "$work/record.log" | head -30; broken "recording failed"; }
  mv "$work/record.txt" "$out"
  echo "go-shapes: recorded $(grep -vc '^#' "$out") differences in $out"
  exit 0
fi

(cd shapes && env "${unset_consul_env[@]}" PATH="$work/bin:$PATH" TMPDIR="$work/tmp" \
  timeout -k 10 300 "$work/shapes.test" -test.count=1 -test.v -test.timeout 280s) >"$work/log" 2>&1
rc=$?
# Only the leaves count: a parent test fails when any of its endpoints does.
grep -E -- '--- (FAIL|PASS)' "$work/log" | grep -vE -- '--- (FAIL|PASS): TestShapes(ACL)? ' | sed 's/^ *//' >"$work/results"
grep -E -- '^--- FAIL' "$work/results" >/dev/null && grep -E '^\s+shapes_test' -A12 "$work/log" | grep -v 'answered:' | head -80
cat "$work/results"
passed=$(grep -c -- '--- PASS' "$work/results")
failed=$(grep -c -- '--- FAIL' "$work/results")
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  tail -20 "$work/log"
  failed=1
fi
echo "go-shapes: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
