#!/usr/bin/env bash
# The consul-rs Node package: `npm install` in node/ (its devDependencies, and the native addon,
# built by the package's prepare script in the workspace target/), then `node --test` over
# node/test against the `consul-rs` binary and embedded agents. Ends with one line
# `node: N passed, M failed` (test-all.sh sums it).
#
# CONSUL_RS_NODE_PROFILE=dev, explicitly: the package builds release for users, but the test
# command compiles the core once, in the dev profile, for `cargo test` and every binding (the
# tests that run `npm pack` and the README's install inherit it too).
set -uo pipefail
cd "$(dirname "$0")/.."
fail() {
  echo "$1" >&2
  echo "node: 0 passed, 1 failed"
  exit 1
}
command -v node >/dev/null || fail "node not found: the Node package needs Node.js >= 18.18"
command -v npm >/dev/null || fail "npm not found"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CONSUL_RS_NODE_PROFILE=dev
export CONSUL_RS_BIN="${CONSUL_RS_BIN:-$PWD/target/debug/consul-rs}"
[ -x "$CONSUL_RS_BIN" ] || cargo build -p consul-rs || fail "cannot build the consul-rs binary"

echo "==> npm install (node/): devDependencies + the native addon"
(cd node && npm install --no-audit --no-fund) || fail "npm install in node/ failed"

echo "==> node --test node/test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Test files run three at a time (they mostly wait on agents and child processes), where the
# runner can (Node >= 20; Node 18 runs them one by one).
concurrency=()
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] && concurrency=(--test-concurrency=3)
(cd node && node --test --test-reporter=tap "${concurrency[@]}" test/) 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -E '^# pass [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
failed=$(grep -E '^# fail [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
passed=${passed:-0}
failed=${failed:-0}
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1 # the runner failed without a countable test failure
fi
echo "node: $passed passed, $failed failed"
exit "$status"
