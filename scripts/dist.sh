#!/usr/bin/env bash
# The shippable agent binary: a release build with its symbols and debug info split out.
#
#   scripts/dist.sh            # builds, then writes dist/consul-rs and dist/consul-rs.debug
#   SKIP_BUILD=1 scripts/dist.sh   # packages the release binary already built
#
# dist/consul-rs is stripped of everything a running agent never reads (symbol table, DWARF
# skeletons); dist/consul-rs.debug keeps them and the binary names it in `.gnu_debuglink`, so gdb,
# perf and addr2line find it when it sits beside the binary or under /usr/lib/debug. The line
# tables themselves are in target/release/consul-rs.dwp (`split-debuginfo = "packed"`), copied
# beside them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-target}"
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release --locked -p consul-rs --bin consul-rs
built="$TARGET/release/consul-rs"
[ -x "$built" ] || { echo "dist.sh: $built not found: build it first (cargo build --release -p consul-rs)" >&2; exit 1; }
mkdir -p dist
cp "$built" dist/consul-rs.tmp
objcopy --only-keep-debug dist/consul-rs.tmp dist/consul-rs.debug
objcopy --strip-all dist/consul-rs.tmp
# The debug link must be added in the directory the debug file is in (it records the base name).
(cd dist && objcopy --add-gnu-debuglink=consul-rs.debug consul-rs.tmp && mv consul-rs.tmp consul-rs)
if [ -f "$built.dwp" ]; then cp "$built.dwp" dist/consul-rs.dwp; fi
dist/consul-rs version >/dev/null
ls -l dist/consul-rs*
