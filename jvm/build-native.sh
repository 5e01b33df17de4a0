#!/usr/bin/env bash
# Run by Maven (exec-maven-plugin, generate-sources): builds libconsul_rs_jvm.so with cargo, writes
# the uniffi Kotlin bindings for exactly that library, and puts the library where JNA looks for
# it on the classpath (linux-x86-64/), so the jar is self-contained.
#
#   build-native.sh <cargo profile: release|dev> <maven build dir>
#
# The cargo target dir is $CARGO_TARGET_DIR, else the workspace's target/ (the test scripts pass
# the dev profile and their target dir, so the core is compiled once for every binding).
set -euo pipefail
profile="${1:-release}"
build_dir="$2"
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$profile" in
  dev) out="$target/debug" ;;
  *) out="$target/$profile" ;;
esac
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) jna_dir=linux-x86-64 ;;
  *) echo "build-native.sh: only linux-x86_64 is packaged so far ($(uname -s)-$(uname -m))" >&2; exit 1 ;;
esac
cd "$root"
CARGO_TARGET_DIR="$target" cargo build --locked --quiet -p consul-rs-jvm --profile "$profile"
lib="$out/libconsul_rs_jvm.so"
gen="$build_dir/generated-sources/uniffi"
rm -rf "$gen"
mkdir -p "$gen" "$build_dir/classes/$jna_dir"
# Library mode: the bindings are read from the library's own metadata; uniffi.toml (package
# name, library name) comes from the crate, found through cargo metadata.
CARGO_TARGET_DIR="$target" "$out/uniffi-bindgen" generate --library "$lib" --language kotlin \
  --out-dir "$gen" --no-format >/dev/null
cp "$lib" "$build_dir/classes/$jna_dir/libconsul_rs_jvm.so"
# The release jar ships the library without its DWARF line tables (69 MB -> 31 MB); symbol names
# stay, and the unstripped library stays in the cargo target dir for debuggers.
if [ "$profile" = release ] && command -v strip >/dev/null; then
  strip --strip-debug "$build_dir/classes/$jna_dir/libconsul_rs_jvm.so"
fi
