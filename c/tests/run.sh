#!/usr/bin/env bash
# The C test suite of libconsul_rs (run by `make -C c test`, after the library is built):
#
#   1. the committed header equals a fresh cbindgen generation, and compiles as C99 and C++;
#   2. every tests/test_*.c, built with -Wall -Wextra -Werror -fsanitize=address,undefined
#      against the (unsanitised) library, and run: ASan, LeakSanitizer and UBSan watch the C side
#      and every allocation the library makes through malloc;
#   3. the same tests built without sanitisers and run under valgrind with leak checking
#      (--errors-for-leak-kinds=definite: each binary calls consul_rs_shutdown() at the end);
#   4. examples/ built with -std=c99 -pedantic (C++17 for the C++ one) and run;
#   5. every code block of c/README.md as written: the C ones compiled and run, the shell ones
#      run from a scratch directory (HOME there, so the README's `PREFIX="$HOME/.local"` install
#      lands in it);
#   6. `make install` into a clean prefix and a DESTDIR, then a program that includes only
#      <consul_rs.h> and links with `pkg-config --libs consul-rs` (nothing else: the .pc carries
#      the rpath) embeds a node, registers a service, gets a watch callback and shuts down clean —
#      run plainly and under valgrind, linked against the shared library and (pkg-config
#      --static) the static one.
#
# PROFILE (set by `make test`, default release) is handed to every `make` run here, so nothing is
# built in a second profile.
# Every step counts as passed or failed; the test binaries add their own counts. The last line
# is "c: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
C_DIR=$PWD
BUILD=${BUILD:-$C_DIR/build}
PROFILE=${PROFILE:-release}
export PROFILE
CC=${CC:-cc}
CXX=${CXX:-c++}
export RUST_BACKTRACE=0 # the panic self-test prints the panic message; no backtrace noise
passed=0
failed=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }
# check NAME CMD...: one counted step, output shown only on failure.
check() {
  local name=$1
  shift
  if "$@" >"$work/step.log" 2>&1; then ok "$name"; else bad "$name"; sed 's/^/    /' "$work/step.log" | tail -40; fi
}
# run_counted NAME CMD...: a test binary; adds its "N passed, N failed" line to the totals.
run_counted() {
  local name=$1
  shift
  echo "== $name"
  "$@" 2>&1 | tee "$work/run.log"
  local rc=${PIPESTATUS[0]}
  local line
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$work/run.log" | tail -1)
  if [ -n "$line" ]; then
    passed=$((passed + $(echo "$line" | cut -d' ' -f1)))
    failed=$((failed + $(echo "$line" | cut -d' ' -f3)))
  fi
  if [ "$rc" -ne 0 ] && { [ -z "$line" ] || [ "$(echo "$line" | cut -d' ' -f3)" = 0 ]; }; then
    bad "$name exited with status $rc" # a crash, a sanitizer or valgrind report
  fi
}

WARN=(-Wall -Wextra -Werror)
LIBS=(-L"$BUILD" -lconsul_rs -Wl,-rpath,"$BUILD" -lpthread)
# valgrind.supp: ring's AES-GCM assembly, which valgrind misreads (see the file).
VALGRIND=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
  --show-leak-kinds=definite --track-fds=no --suppressions="$C_DIR/tests/valgrind.supp")

echo "== build defaults"
# `make -C c` is for users: the release profile unless PROFILE says otherwise (the test command
# passes PROFILE=dev). Dry runs, as a user's shell would start them (no PROFILE, nor the
# MAKEFLAGS through which `make test PROFILE=dev` hands its variables down): nothing is built.
fresh_make() { env -u PROFILE -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES make "$@"; }
# The dry run's output is captured before it is searched: `make … | grep -q` under pipefail fails
# whenever grep exits at its match while make is still writing (SIGPIPE), which made this flaky.
default_release() {
  local plan
  plan=$(fresh_make -n -C "$C_DIR" cargo) && grep -q -- '--profile release' <<<"$plan"
}
check "make -C c builds the release profile by default" default_release
dev_on_request() {
  local plan
  plan=$(fresh_make -n -C "$C_DIR" cargo PROFILE=dev) && grep -q -- '--profile dev' <<<"$plan"
}
check "make -C c PROFILE=dev builds the dev profile" dev_on_request

echo "== header"
check "header is a fresh cbindgen generation" make -s -C "$C_DIR" check-header PROFILE="$PROFILE"
echo '#include <consul_rs.h>
int main(void) { return consul_rs_abi_version() == CONSUL_RS_ABI_VERSION ? 0 : 1; }' >"$work/h.c"
cp "$work/h.c" "$work/h.cpp"
check "header compiles as C99 (-pedantic)" "$CC" -std=c99 -pedantic "${WARN[@]}" -I"$C_DIR/include" -c "$work/h.c" -o "$work/h.o"
check "header compiles as C++11 (-pedantic, extern \"C\")" "$CXX" -std=c++11 -pedantic "${WARN[@]}" -I"$C_DIR/include" \
  "$work/h.cpp" -o "$work/hpp" -L"$BUILD" -lconsul_rs -Wl,-rpath,"$BUILD"
check "C++ program links and runs" "$work/hpp"

# The shared validation table (bindings/sdk/tests/validation_cases.json, also replayed by the
# Rust SDK, pytest and node:test suites) as C string literals for test_validation.c.
python3 - "$C_DIR/../bindings/sdk/tests/validation_cases.json" >"$work/validation_cases.h" <<'PY'
import json, sys
table = json.load(open(sys.argv[1]))
lit = lambda s: "NULL" if s is None else json.dumps(s, ensure_ascii=False)  # a valid C literal here
print("/* generated from validation_cases.json by c/tests/run.sh */")
print("static const struct reg_case REG_CASES[] = {")
for c in table["registrations"]:
    print(f"  {{{lit(c['case'])}, {lit(json.dumps(c['input'], ensure_ascii=False))}, {lit(c['error'])}}},")
print("};")
print("static const struct opt_case OPT_CASES[] = {")
for c in table["options"]:
    print(f"  {{{lit(c['case'])}, {lit(c['kind'])}, {lit(c['input'])}, {lit(c['error'])}}},")
print("};")
print("static const struct call_case CALL_CASES[] = {")
for c in table["calls"]:
    a = c["args"]
    key = next((a[k] for k in ("key", "service", "state", "address", "name") if k in a), None)
    spec = json.dumps(a, ensure_ascii=False) if c["call"] == "register" else None
    print(f"  {{{lit(c['case'])}, {lit(c['call'])}, {lit(key)}, {lit(a.get('value'))}, {int(a.get('ttl_ms', 0))},"
          f" {lit(spec)}, {lit(c['error'])}}},")
print("};")
PY
tests=()
for src in "$C_DIR"/tests/test_*.c; do tests+=("$(basename "$src" .c)"); done

echo "== build (ASan + UBSan, and plain for valgrind)"
for t in "${tests[@]}"; do
  check "build $t (asan,ubsan)" "$CC" -std=gnu11 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
    -fno-sanitize-recover=all "${WARN[@]}" -I"$C_DIR/include" -I"$work" "$C_DIR/tests/$t.c" -o "$BUILD/$t.asan" "${LIBS[@]}"
  check "build $t (plain)" "$CC" -std=gnu11 -g "${WARN[@]}" -I"$C_DIR/include" -I"$work" "$C_DIR/tests/$t.c" -o "$BUILD/$t" "${LIBS[@]}"
done

for t in "${tests[@]}"; do
  [ -x "$BUILD/$t.asan" ] && run_counted "$t (asan,ubsan)" env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    UBSAN_OPTIONS=print_stacktrace=1 "$BUILD/$t.asan"
done

if command -v valgrind >/dev/null; then
  for t in "${tests[@]}"; do
    [ -x "$BUILD/$t" ] && run_counted "$t (valgrind)" "${VALGRIND[@]}" "$BUILD/$t"
  done
else
  bad "valgrind is not installed (.ci/run installs it)"
fi

echo "== examples"
for src in "$C_DIR"/examples/*.c; do
  ex=$(basename "$src" .c)
  check "example $ex builds (c99 -pedantic)" "$CC" -std=c99 -pedantic "${WARN[@]}" -I"$C_DIR/include" "$src" \
    -o "$BUILD/example_$ex" "${LIBS[@]}"
  [ -x "$BUILD/example_$ex" ] && check "example $ex runs" timeout 120 "$BUILD/example_$ex"
done
for src in "$C_DIR"/examples/*.cpp; do
  ex=$(basename "$src" .cpp)
  check "example $ex builds (c++17)" "$CXX" -std=c++17 -pedantic "${WARN[@]}" -I"$C_DIR/include" "$src" \
    -o "$BUILD/example_$ex" "${LIBS[@]}"
  [ -x "$BUILD/example_$ex" ] && check "example $ex runs" timeout 120 "$BUILD/example_$ex"
done

echo "== README code blocks, as written"
# Each fenced block of c/README.md becomes readme_<n>.<lang>; run.sh knows only c and sh.
python3 - "$C_DIR/README.md" "$work/readme" <<'PY'
import pathlib, re, sys
blocks = re.findall(r"^```(\w*)\n(.*?)^```", pathlib.Path(sys.argv[1]).read_text(), re.S | re.M)
out = pathlib.Path(sys.argv[2]); out.mkdir()
for i, (lang, code) in enumerate(blocks):
    (out / f"readme_{i}.{lang or 'txt'}").write_text(code)
PY
readme_blocks=("$work"/readme/readme_*)
readme_known() { for f in "${readme_blocks[@]}"; do case "$f" in *.c | *.sh) ;; *) echo "$f"; return 1 ;; esac; done; }
check "README has only C and shell blocks" readme_known
c_blocks=("$work"/readme/readme_*.c)
for src in "${c_blocks[@]}"; do
  [ -e "$src" ] || continue
  n=$(basename "$src" .c)
  check "README $n builds (c99 -pedantic)" "$CC" -std=c99 -pedantic "${WARN[@]}" -I"$C_DIR/include" "$src" \
    -o "$BUILD/example_$n" "${LIBS[@]}"
  [ -x "$BUILD/example_$n" ] && check "README $n runs" timeout 120 "$BUILD/example_$n"
done
# The shell blocks run from the repository root as the README says (a scratch directory with
# c/ linked in, so nothing is written to the checkout but c/build), with app.c = the README's
# first C program. PROFILE is in the environment, so their `make -C c` reuses this build.
readme_sh() {
  local dir="$work/readme-run"
  mkdir -p "$dir/home" && ln -sfn "$C_DIR" "$dir/c" && cp "${c_blocks[0]}" "$dir/app.c" &&
    (cd "$dir" && env -u PKG_CONFIG_PATH -u LD_LIBRARY_PATH HOME="$dir/home" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" \
      CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" timeout 300 bash -euo pipefail "$1")
}
for src in "$work"/readme/readme_*.sh; do
  [ -e "$src" ] || continue
  check "README $(basename "$src" .sh) runs as written" readme_sh "$src"
done

echo "== install + pkg-config from a clean prefix"
prefix="$work/prefix"
stage="$work/stage"
check "make install PREFIX=<clean prefix>" make -s -C "$C_DIR" install PREFIX="$prefix" PROFILE="$PROFILE"
check "make install PREFIX=/usr DESTDIR=<stage>" make -s -C "$C_DIR" install PREFIX=/usr DESTDIR="$stage" PROFILE="$PROFILE"
staged() {
  for f in lib/libconsul_rs.so lib/libconsul_rs.so.0 lib/libconsul_rs.a include/consul_rs.h lib/pkgconfig/consul-rs.pc; do
    [ -e "$stage/usr/$f" ] || { echo "missing $stage/usr/$f"; return 1; }
  done
  [ "$(readlink "$stage/usr/lib/libconsul_rs.so")" = libconsul_rs.so.0 ] || return 1
  grep -q '^prefix=/usr$' "$stage/usr/lib/pkgconfig/consul-rs.pc" || return 1
  # PREFIX=/usr: the loader's own directory, so no rpath (distributions refuse them).
  ! grep -q 'rpath' "$stage/usr/lib/pkgconfig/consul-rs.pc" || return 1
  local dyn
  dyn=$(readelf -d "$stage/usr/lib/libconsul_rs.so.0") && grep -q 'SONAME.*libconsul_rs.so.0' <<<"$dyn"
}
check "DESTDIR layout: libs, soname symlinks, header, .pc" staged
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
pc_version() { [ "$(pkg-config --modversion consul-rs)" = "$(sed -n 's/^#define CONSUL_RS_VERSION_STRING "\(.*\)"/\1/p' "$prefix/include/consul_rs.h")" ]; }
check "pkg-config --modversion consul-rs matches the header" pc_version
consumer="$work/consumer"
mkdir -p "$consumer"
cp "$C_DIR/examples/embed_agent.c" "$consumer/app.c" # includes only <consul_rs.h> and libc headers
# Nothing but pkg-config's flags: its Libs carry the rpath, so the program finds the library in
# this non-system prefix with no LD_LIBRARY_PATH.
build_shared() (
  cd "$consumer" &&
    $CC -std=c99 "${WARN[@]}" $(pkg-config --cflags consul-rs) app.c -o app $(pkg-config --libs consul-rs) &&
    deps=$(env -u LD_LIBRARY_PATH ldd ./app) && grep -q "libconsul_rs.so.0 => $prefix/lib/" <<<"$deps"
)
check "consumer builds with only pkg-config --cflags --libs consul-rs and finds the library (rpath)" build_shared
build_static() (
  cd "$consumer" &&
    $CC -std=c99 "${WARN[@]}" $(pkg-config --cflags consul-rs) app.c -o app_static \
      $(pkg-config --static --libs consul-rs | sed 's/-lconsul_rs/-l:libconsul_rs.a/') &&
    dyn=$(readelf -d ./app_static) && ! grep -q libconsul_rs <<<"$dyn"
)
check "consumer builds with pkg-config --static --libs consul-rs (static)" build_static
[ -x "$consumer/app" ] && check "consumer (shared) embeds a node, registers, gets a watch callback, shuts down" \
  timeout 120 "$consumer/app"
[ -x "$consumer/app_static" ] && check "consumer (static) runs" timeout 120 "$consumer/app_static"
if command -v valgrind >/dev/null && [ -x "$consumer/app" ]; then
  check "consumer under valgrind: no errors, no definite leaks" timeout 300 "${VALGRIND[@]}" "$consumer/app"
fi

echo
echo "c: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
