#!/usr/bin/env bash
# The JVM binding beside the C library and the Python package, against THE SAME consul-rs dev agent
# in the same run (issue #24; BENCHMARKS.md "JVM binding"): starts one `consul-rs agent -dev`
# ($CONSUL_RS_BIN, else target/release or target/debug), then, $REPEATS times (default 3),
# bench/c_bench.sh against it (the C rows, and the Python rows if $PYTHON imports consul_rs) and
# jvm/bench/KvBench.java (the same KV loops from Java through the Kotlin API's blocking calls).
# The JVM package is built with the dev profile, like the C and Python bindings in the test
# scripts ($JVM_PROFILE=release for the user build).
#
#   bench/jvm_bench.sh [seconds-per-row] [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
threads=${2:-16}
repeats=${REPEATS:-3}
profile=${JVM_PROFILE:-dev}
work=$(mktemp -d)
agent=
cleanup() {
  [ -n "$agent" ] && { kill "$agent" 2>/dev/null; wait "$agent" 2>/dev/null; }
  rm -rf "$work"
}
trap cleanup EXIT
(cd jvm && mvn -q -B package -DskipTests -Dcargo.profile="$profile" \
  && mvn -q -B dependency:build-classpath -Dmdep.outputFile="$work/cp.txt" -Dmdep.includeScope=runtime >/dev/null)
cp="$PWD/jvm/target/classes:$(cat "$work/cp.txt")"
javac -d "$work" -cp "$cp" jvm/bench/KvBench.java
. bench/dev-agent.sh
start_dev_agent
for r in $(seq "$repeats"); do
  echo "== repeat $r of $repeats"
  BENCH_ADDR="127.0.0.1:$http" bench/c_bench.sh "$secs" "$threads"
  java -cp "$work:$cp" KvBench "127.0.0.1:$http" "$secs" "$threads"
done
