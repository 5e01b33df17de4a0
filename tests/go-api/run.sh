#!/usr/bin/env bash
# Runs the official Go client's own test suite (github.com/hashicorp/consul/api v1.22.0, whose
# agent-backed tests start agents through github.com/hashicorp/consul/sdk v0.14.0 testutil,
# which execs `consul` from PATH) against consul-rs installed as `consul`.
#
# The modules come from the Go module proxy into the Go module cache (go.mod/go.sum here pin
# them); nothing of Consul's is copied into this repository. The test binary is built once
# (`go test -c`) and every test runs in its own process, in its own process group, from the
# package's directory in the module cache (as `go test` would), with -test.count=1 and a
# per-test timeout, so a hung test is killed with every agent it started and cannot stall the
# rest. Tests named in skip.txt are not run (each has a reason there).
#
# Environment:
#   CONSUL_RS_BIN        the binary to install as `consul` (default: target/debug/consul-rs,
#                        built with cargo if missing). Any Consul binary works, e.g. the real
#                        Consul for a baseline.
#   GO_API_SHORT=1, CI   short mode: only the tests of kv, txn, catalog, health, session,
#                        agent, status, event, lock, semaphore and debug (*_test.go of those names).
#   GO_API_RUN=REGEX     only tests whose name matches REGEX (after the short-mode selection).
#   GO_API_JOBS=N        tests run N at a time (default 4; they mostly wait on agents).
#   GO_API_TIMEOUT=SECS  per-test timeout (default 120; the slowest test takes about 12 s).
#   GO_API_LOG_DIR=DIR   keep every test's full -test.v output there as NAME.log.
#   GO_API_VERBOSE=1     print the whole output of failing tests, not just their error lines.
#   GO_API_GATE=floor    exit 0 despite failing tests as long as the pass count is not below the
#                        floor in min-passed (default GO_API_GATE=failures: any failure fails).
#
# Prints one line per test (PASS/FAIL/SKIP), then exactly `go-api: N passed, M failed, K skipped`
# (K counts skip.txt entries among the selected tests and tests that skipped themselves; tests in
# known-failures.txt that fail are listed as XFAIL with their reason and counted apart).
# Exits 1 when a test failed, when a whole run passed fewer tests than min-passed allows for its
# mode (the pass count must not fall), or when the runner itself broke.
set -uo pipefail
# The whole script is one function, read in full before it runs: editing this file while it
# runs cannot change what the running copy does.
main() {
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

summary_broken() {
  echo "go-api: $1" >&2
  echo "go-api: 0 passed, 1 failed, 0 skipped"
  exit 1
}

command -v go >/dev/null || summary_broken "go not found (the suite needs Go >= 1.19)"
command -v timeout >/dev/null || summary_broken "timeout (coreutils) not found"

bin="${CONSUL_RS_BIN:-$repo/target/debug/consul-rs}"
if [ ! -x "$bin" ]; then
  echo "==> $bin missing: cargo build -p consul-rs --bins"
  (cd "$repo" && cargo build -p consul-rs --bins) || summary_broken "cannot build the consul-rs binary"
  [ -x "$bin" ] || summary_broken "$bin not found after the build (CARGO_TARGET_DIR set? pass CONSUL_RS_BIN)"
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

short=0
if [ "${GO_API_SHORT:-}" = 1 ] || [ "${CI:-}" = true ]; then short=1; fi
jobs="${GO_API_JOBS:-4}"
per_test="${GO_API_TIMEOUT:-120}"

work="$(mktemp -d "${TMPDIR:-/tmp}/consul-rs-go-api.XXXXXX")" || summary_broken "mktemp failed"
# Kills every process of the process groups this run started (each test's group holds the test
# binary and every agent it exec'd), then any process still carrying this run's TMPDIR in its
# environment (an agent that moved to a group of its own; testutil execs `consul` with argv[0]
# "consul", so the command line does not name our symlink), then removes the scratch directory
# (test binary, `consul` symlink, logs and every testutil data dir, all under $work).
cleanup() {
  local pg pid strays=0
  for pg in $(cat "$work/pgids" 2>/dev/null); do
    kill -KILL -- "-$pg" 2>/dev/null
  done
  for pid in $(grep -lsFxz "TMPDIR=$work/tmp" /proc/[0-9]*/environ | cut -d/ -f3); do
    kill -KILL "$pid" 2>/dev/null && strays=$((strays + 1))
  done
  [ "$strays" -gt 0 ] && echo "go-api: killed $strays stray process(es) of this run" >&2
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$work/bin" "$work/tmp" "$work/logs"
: >"$work/pgids"
ln -s "$bin" "$work/bin/consul"

cd "$here" || exit 1
echo "==> go test -c github.com/hashicorp/consul/api (module cache: $(go env GOMODCACHE))"
go test -c -o "$work/api.test" github.com/hashicorp/consul/api || summary_broken "go test -c failed"
pkg_dir="$(go list -f '{{.Dir}}' github.com/hashicorp/consul/api)" || summary_broken "go list failed"
echo "==> consul = $bin ($(PATH="$work/bin:$PATH" consul version 2>/dev/null | head -1))"

# Every top-level test of the package, in source order.
all_tests=$(cd "$pkg_dir" && "$work/api.test" -test.list '.*' | grep -E '^Test') ||
  summary_broken "listing the tests failed"
selected="$all_tests"
if [ "$short" = 1 ]; then
  short_files="kv txn catalog health session agent status event lock semaphore debug"
  short_tests=$(for f in $short_files; do
    sed -nE 's/^func (Test[A-Za-z0-9_]+)\(t \*testing\.T\).*/\1/p' "$pkg_dir/${f}_test.go"
  done | sort -u)
  selected=$(grep -Fxf <(echo "$short_tests") <<<"$all_tests")
  echo "==> short mode: the tests of ${short_files// /, } ($(wc -l <<<"$selected") of $(wc -l <<<"$all_tests"))"
fi
if [ -n "${GO_API_RUN:-}" ]; then
  selected=$(grep -E -- "$GO_API_RUN" <<<"$selected")
fi
[ -n "$selected" ] || summary_broken "no test selected"

# skip.txt: `TestName  reason`; blank lines and # comments ignored.
declare -A skip_reason=()
while read -r name reason; do
  case "$name" in ''|'#'*) continue ;; esac
  skip_reason[$name]="$reason"
  grep -qFx -- "$name" <<<"$all_tests" || echo "go-api: skip.txt names $name, which the suite does not have" >&2
done <"$here/skip.txt"

to_run=()
skipped=0
while read -r name; do
  if [ -n "${skip_reason[$name]:-}" ]; then
    echo "SKIP $name (skip.txt: ${skip_reason[$name]})"
    skipped=$((skipped + 1))
  else
    to_run+=("$name")
  fi
done <<<"$selected"

# The tests read CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN and the like: none of the caller's reach them.
unset_consul_env=()
for v in $(compgen -e | grep -E '^CONSUL_'); do unset_consul_env+=(-u "$v"); done

echo "==> running ${#to_run[@]} tests, $jobs at a time, ${per_test}s each at most"
start=$(date +%s)

# Runs one test in its own process group (timeout(1) makes one and kills all of it when the
# time is up); afterwards kills whatever of that group is still alive (agents a test left).
run_one() {
  local name="$1" log="$work/logs/$1.log" rc pg
  (
    cd "$pkg_dir" || exit 1
    # Go's own -test.timeout fires first (its panic names where the test hung); timeout(1) is
    # the backstop that also takes the agents down.
    exec env "${unset_consul_env[@]}" PATH="$work/bin:$PATH" TMPDIR="$work/tmp" \
      timeout -k 10 "$((per_test + 15))" "$work/api.test" -test.run "^${name}\$" -test.count=1 -test.v \
      -test.timeout "${per_test}s"
  ) >"$log" 2>&1 &
  pg=$!
  echo "$pg" >>"$work/pgids"
  wait "$pg"
  rc=$?
  kill -KILL -- "-$pg" 2>/dev/null
  echo "$rc" >"$work/logs/$name.rc"
}

# Prints a finished test's line (and, when it failed, why), then records its result.
report_one() {
  local name="$1" log="$work/logs/$1.log" rc result secs
  rc=$(cat "$work/logs/$name.rc")
  secs=$(sed -nE "s/^--- (PASS|FAIL|SKIP): ${name} \(([0-9.]+)s\)$/\2/p" "$log" | tail -1)
  if grep -qE "^--- PASS: ${name} " "$log" && [ "$rc" = 0 ]; then
    result=PASS
  elif grep -qE "^--- SKIP: ${name} " "$log" && [ "$rc" = 0 ]; then
    result=SKIP
  else
    result=FAIL
  fi
  if [ "$rc" = 124 ] || [ "$rc" = 137 ] || grep -q '^panic: test timed out after' "$log"; then
    secs="timed out after ${per_test}s"
  else
    secs="${secs:-?}s"
  fi
  echo "$result $name ($secs)"
  echo "$result" >"$work/logs/$name.result"
  if [ "$result" = FAIL ]; then
    if [ "${GO_API_VERBOSE:-}" = 1 ]; then
      sed 's/^/    | /' "$log"
    else
      # What the test itself said (Go's t.Log/t.Error lines and testify's blocks are indented)
      # and any panic, not the agents' logs and banners or the harness's config dump.
      grep -E '^(    |\t|panic:|fatal error:)' "$log" |
        grep -vE 'CONFIG JSON:|server stop failed|^\s*$|^ +[A-Z][A-Za-z /-]*: ' | head -40 | sed 's/^/    | /'
    fi
  fi
  if [ -n "${GO_API_LOG_DIR:-}" ]; then
    mkdir -p "$GO_API_LOG_DIR" && cp "$log" "$GO_API_LOG_DIR/$name.log"
  fi
}

# A small job pool: at most $jobs tests at once, reported as they finish, in finishing order.
declare -A running=()
next=0
while [ "$next" -lt "${#to_run[@]}" ] || [ "${#running[@]}" -gt 0 ]; do
  while [ "$next" -lt "${#to_run[@]}" ] && [ "${#running[@]}" -lt "$jobs" ]; do
    name="${to_run[$next]}"
    run_one "$name" &
    running[$name]=$!
    next=$((next + 1))
  done
  wait -n 2>/dev/null
  for name in "${!running[@]}"; do
    if ! kill -0 "${running[$name]}" 2>/dev/null; then
      wait "${running[$name]}" 2>/dev/null
      unset "running[$name]"
      report_one "$name"
    fi
  done
done

# known-failures.txt: `TestName  reason` — tests that run but fail for a gap named there (a
# missing endpoint or field). They are reported as XFAIL and not counted as failures; one that
# passes is reported as XPASS (counted as passed) so its line can be removed.
declare -A known=()
while read -r name reason; do
  case "$name" in ''|'#'*) continue ;; esac
  known[$name]="$reason"
  grep -qFx -- "$name" <<<"$all_tests" || echo "go-api: known-failures.txt names $name, which the suite does not have" >&2
done <"$here/known-failures.txt"

passed=0
failed=0
xfailed=0
agent_backed=0
for name in "${to_run[@]}"; do
  case "$(cat "$work/logs/$name.result" 2>/dev/null)" in
    PASS) passed=$((passed + 1))
      if [ -n "${known[$name]:-}" ]; then
        echo "XPASS $name: passes now; remove it from tests/go-api/known-failures.txt"
      fi
      grep -q 'CONFIG JSON:' "$work/logs/$name.log" && agent_backed=$((agent_backed + 1)) ;;
    SKIP) skipped=$((skipped + 1)) ;;
    *)
      if [ -n "${known[$name]:-}" ]; then
        echo "XFAIL $name (known-failures.txt: ${known[$name]})"
        xfailed=$((xfailed + 1))
      else
        failed=$((failed + 1))
      fi ;;
  esac
done
[ "$xfailed" -gt 0 ] && echo "go-api: $xfailed known failures (tests/go-api/known-failures.txt), not counted below"
echo "==> $(($(date +%s) - start))s; of the $passed passed, $agent_backed started an agent (the rest test the client alone)"
# The floor (min-passed): the pass count of a whole run (no GO_API_RUN) must not fall below it.
mode=long
[ "$short" = 1 ] && mode=short
floor=$(sed -nE "s/^$mode[[:space:]]+([0-9]+).*/\1/p" "$here/min-passed" | head -1)
below=0
if [ -z "${GO_API_RUN:-}" ] && [ -n "$floor" ] && [ "$passed" -lt "$floor" ]; then
  echo "go-api: $passed passed is below the floor of $floor for the $mode mode (tests/go-api/min-passed)"
  below=1
elif [ -z "${GO_API_RUN:-}" ] && [ -n "$floor" ] && [ "$passed" -gt "$floor" ]; then
  echo "go-api: $passed passed is above the floor of $floor for the $mode mode: raise it in tests/go-api/min-passed"
fi
echo "go-api: $passed passed, $failed failed, $skipped skipped"
[ "$below" -eq 0 ] || exit 1
if [ "${GO_API_GATE:-failures}" = floor ]; then
  exit 0 # the failures are counted and printed, only a fall below the floor fails the run
fi
[ "$failed" -eq 0 ]
}

main "$@"
exit
