#!/usr/bin/env bash
# The C library's suite: builds libconsul_rs (bindings/c) with `make -C c`, then runs
# c/tests/run.sh (header check, ASan/UBSan and valgrind runs of the C tests, examples, the
# README's code blocks, install + pkg-config consumer). Ends with "c: N passed, N failed".
#
# PROFILE=dev, explicitly: `make -C c` builds release for users, but the test command compiles
# the core once, in the dev profile, for `cargo test` and every binding.
set -uo pipefail
cd "$(dirname "$0")/.."
exec make -s -C c test PROFILE=dev
