#!/usr/bin/env bash
# Runs every test of the project: Rust (unit + in-process clusters + real processes) and the
# Python wire-compatibility suite against the unmodified py-consul client. Node and C suites
# join here when their packages land. Prints each runner's summary, then one total line.
set -uo pipefail
cd "$(dirname "$0")/.."
log_dir=$(mktemp -d)
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
CONSUL_RS_BIN="$PWD/target/debug/consul-rs" "$venv/bin/python" -m pytest -q tests/python 2>&1 | tee "$log_dir/pytest.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# One total over every runner, from their own summary lines.
cargo_passed=$(grep -E '^test result:' "$log_dir/cargo.log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | paste -sd+ - | bc)
cargo_failed=$(grep -E '^test result:' "$log_dir/cargo.log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | paste -sd+ - | bc)
py_passed=$(grep -oE '[0-9]+ passed' "$log_dir/pytest.log" | tail -1 | grep -oE '[0-9]+' || echo 0)
py_failed=$(grep -oE '[0-9]+ failed' "$log_dir/pytest.log" | tail -1 | grep -oE '[0-9]+' || echo 0)
passed=$(( ${cargo_passed:-0} + ${py_passed:-0} ))
failed=$(( ${cargo_failed:-0} + ${py_failed:-0} ))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1 # a runner failed without a countable test failure (build or collection error)
fi
echo
echo "all: $passed passed, $failed failed"
exit "$status"
