#!/usr/bin/env bash
# The consul-rs JVM package (jvm/, over bindings/jvm): `mvn verify` builds libconsul_rs_jvm.so with
# cargo, generates the uniffi Kotlin bindings, compiles the Kotlin API and runs the JUnit 5 suite
# (embedded 3-node cluster, KV and watches, a second JVM registering, locks and elections, the shared
# validation table, JVM exit with live handles, the Java example). Ends with one line
# `jvm: N passed, M failed` from Surefire's reports (test-all.sh sums it).
#
# -Dcargo.profile=dev, explicitly: the package builds release for users, but the test command
# compiles the core once, in the dev profile and one target dir ($CARGO_TARGET_DIR), for every binding.
set -uo pipefail
cd "$(dirname "$0")/.."
fail() {
  echo "$1" >&2
  echo "jvm: 0 passed, 1 failed"
  exit 1
}
command -v mvn >/dev/null || fail "mvn not found: the JVM package needs Maven 3.8+"
command -v javac >/dev/null || fail "javac not found: the JVM package needs a JDK 17+"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

echo "==> mvn verify (jvm/, cargo profile dev, target $CARGO_TARGET_DIR)"
rm -rf jvm/target/surefire-reports
(cd jvm && mvn -q -B -Dstyle.color=never verify -Dcargo.profile=dev)
status=$?

passed=0
failed=0
shopt -s nullglob
reports=(jvm/target/surefire-reports/TEST-*.xml)
for r in "${reports[@]}"; do
  # The <testsuite> element's counts: tests, failures, errors, skipped.
  head=$(grep -m1 -o '<testsuite [^>]*>' "$r")
  attr() { echo "$head" | grep -oE " $1=\"[0-9]+\"" | grep -oE '[0-9]+' || echo 0; }
  t=$(attr tests)
  f=$(attr failures)
  e=$(attr errors)
  s=$(attr skipped)
  passed=$((passed + t - f - e - s))
  failed=$((failed + f + e))
done
if [ "${#reports[@]}" -eq 0 ] || { [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; }; then
  failed=$((failed + 1)) # the build or the runner failed without a countable test failure
fi
[ "$failed" -gt 0 ] && [ "$status" -eq 0 ] && status=1
# On a line of its own: Maven's quiet mode can leave an unterminated colour reset on the last
# line, and test-all.sh reads this line from its start.
echo
echo "jvm: $passed passed, $failed failed"
exit "$status"
