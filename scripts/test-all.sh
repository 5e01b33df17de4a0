#!/usr/bin/env bash
# Runs every test of the project: Rust (unit + in-process clusters + real processes) and the
# Python wire-compatibility suite against the unmodified py-consul client, then the consul_rs
# Python package (built with `pip install ./python`) and its pytest suite, the console's
# real-browser suite (scripts/test-browser.sh), then the C library's
# suite (scripts/test-c.sh), the consul-rs Node package (scripts/test-node.sh), the JVM package
# (scripts/test-jvm.sh) and the official Go
# client's own test suite against consul-rs as `consul` (tests/go-api/run.sh) and the response-shape
# comparison with Consul 1.16.0 (tests/go-api/shapes.sh). Prints each
# runner's summary, then one total line.
set -uo pipefail
cd "$(dirname "$0")/.."
log_dir=$(mktemp -d)
# One target dir (the workspace's, unless CARGO_TARGET_DIR names another) and one profile (dev)
# for every step, so the core compiles once.
target="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TARGET_DIR="$target"
trap 'rm -rf "$log_dir"' EXIT
status=0

echo "==> cargo build (workspace, bins)"
cargo build --workspace --bins --locked || exit 1

echo "==> cargo test --workspace"
cargo test --workspace --locked 2>&1 | tee "$log_dir/cargo.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "==> pytest tests/python (py-consul wire compatibility)"
venv=".venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || exit 1
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt || exit 1
CONSUL_RS_BIN="$target/debug/consul-rs" "$venv/bin/python" -m pytest -q tests/python 2>&1 | tee "$log_dir/pytest.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "==> pip install ./python + pytest python/tests (the consul_rs package)"
# Reuse the target dir and its dev profile, so only the extension itself is compiled. maturin is
# for test_wheel.py, which builds the README's wheel (dev profile too) and installs it elsewhere.
if MATURIN_PEP517_ARGS="--profile dev" "$venv/bin/pip" install --quiet \
    --disable-pip-version-check ./python pytest-asyncio mypy 'maturin>=1.16,<2'; then
  CONSUL_RS_BIN="$target/debug/consul-rs" "$venv/bin/python" -m pytest -q python/tests 2>&1 | tee "$log_dir/pytest-sdk.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
else
  status=1
fi

echo "==> scripts/test-browser.sh (the console in headless Chromium)"
CONSUL_RS_BIN="$target/debug/consul-rs" ./scripts/test-browser.sh 2>&1 | tee "$log_dir/pytest-browser.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "==> C library: make -C c test (libconsul_rs; ASan/UBSan, valgrind, install + pkg-config)"
./scripts/test-c.sh 2>&1 | tee "$log_dir/c.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# ---- Node package (node/): npm install + node --test; summary line `node: N passed, M failed`.
echo "==> scripts/test-node.sh (the consul-rs Node package)"
CONSUL_RS_BIN="$target/debug/consul-rs" ./scripts/test-node.sh 2>&1 | tee "$log_dir/node.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
node_passed=$(grep -E '^node: [0-9]+ passed, [0-9]+ failed$' "$log_dir/node.log" | tail -1 | sed -E 's/^node: ([0-9]+) passed.*/\1/')
node_failed=$(grep -E '^node: [0-9]+ passed, [0-9]+ failed$' "$log_dir/node.log" | tail -1 | sed -E 's/.* ([0-9]+) failed$/\1/')
if [ -z "$node_passed" ]; then
  node_passed=0
  node_failed=1 # no summary line: the runner itself broke
fi

# ---- JVM package (jvm/): mvn verify (JUnit 5); summary line `jvm: N passed, M failed`.
echo "==> scripts/test-jvm.sh (the consul-rs JVM package)"
./scripts/test-jvm.sh 2>&1 | tee "$log_dir/jvm.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
jvm_passed=$(grep -E '^jvm: [0-9]+ passed, [0-9]+ failed$' "$log_dir/jvm.log" | tail -1 | sed -E 's/^jvm: ([0-9]+) passed.*/\1/')
jvm_failed=$(grep -E '^jvm: [0-9]+ passed, [0-9]+ failed$' "$log_dir/jvm.log" | tail -1 | sed -E 's/.* ([0-9]+) failed$/\1/')
if [ -z "$jvm_passed" ]; then
  jvm_passed=0
  jvm_failed=1 # no summary line: the runner itself broke
fi

# ---- The official Go client's own test suite (tests/go-api/run.sh): github.com/hashicorp/consul/api
# v1.22.0's tests against consul-rs installed as `consul`; short mode under CI=true or
# GO_API_SHORT=1. Summary line `go-api: N passed, M failed, K skipped`.
echo "==> tests/go-api/run.sh (the official Go client's test suite against consul-rs as consul)"
CONSUL_RS_BIN="$PWD/target/debug/consul-rs" ./tests/go-api/run.sh 2>&1 | tee "$log_dir/go-api.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
go_line=$(grep -E '^go-api: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log_dir/go-api.log" | tail -1)
go_passed=$(echo "$go_line" | sed -nE 's/^go-api: ([0-9]+) passed.*/\1/p')
go_failed=$(echo "$go_line" | sed -nE 's/.* ([0-9]+) failed,.*/\1/p')
if [ -z "$go_passed" ]; then
  go_passed=0
  go_failed=1 # no summary line: the runner itself broke
fi

# ---- Response shapes against Consul's (tests/go-api/shapes.sh): every read endpoint's JSON compared
# with the Go client's types and with the differences the real Consul 1.16.0 shows. Summary line
# `go-shapes: N passed, M failed`.
echo "==> tests/go-api/shapes.sh (response shapes: consul-rs against Consul 1.16.0)"
CONSUL_RS_BIN="$target/debug/consul-rs" ./tests/go-api/shapes.sh 2>&1 | tee "$log_dir/go-shapes.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
shapes_line=$(grep -E '^go-shapes: [0-9]+ passed, [0-9]+ failed$' "$log_dir/go-shapes.log" | tail -1)
shapes_passed=$(echo "$shapes_line" | sed -nE 's/^go-shapes: ([0-9]+) passed.*/\1/p')
shapes_failed=$(echo "$shapes_line" | sed -nE 's/.* ([0-9]+) failed$/\1/p')
if [ -z "$shapes_passed" ]; then
  shapes_passed=0
  shapes_failed=1 # no summary line: the runner itself broke
fi

# One total over every runner, from their own summary lines.
cargo_passed=$(grep -E '^test result:' "$log_dir/cargo.log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | paste -sd+ - | bc)
cargo_failed=$(grep -E '^test result:' "$log_dir/cargo.log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | paste -sd+ - | bc)
py_passed=0
py_failed=0
for log in "$log_dir"/pytest*.log; do
  [ -f "$log" ] || continue
  n=$(grep -oE '[0-9]+ passed' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  f=$(grep -oE '[0-9]+ failed' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  # A test whose fixture broke is an error, not a failure, to pytest: it counts as failed here.
  e=$(grep -oE '[0-9]+ errors?' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  py_passed=$(( py_passed + ${n:-0} ))
  py_failed=$(( py_failed + ${f:-0} + ${e:-0} ))
done
c_line=$(grep -E '^c: [0-9]+ passed, [0-9]+ failed$' "$log_dir/c.log" | tail -1)
c_passed=$(echo "$c_line" | sed -nE 's/^c: ([0-9]+) passed.*/\1/p')
c_failed=$(echo "$c_line" | sed -nE 's/.* ([0-9]+) failed$/\1/p')
passed=$(( ${cargo_passed:-0} + ${py_passed:-0} + ${c_passed:-0} + ${node_passed:-0} + ${jvm_passed:-0} + ${go_passed:-0} + ${shapes_passed:-0} ))
failed=$(( ${cargo_failed:-0} + ${py_failed:-0} + ${c_failed:-0} + ${node_failed:-0} + ${jvm_failed:-0} + ${go_failed:-0} + ${shapes_failed:-0} ))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1 # a runner failed without a countable test failure (build or collection error)
fi
echo
echo "all: $passed passed, $failed failed"
exit "$status"
