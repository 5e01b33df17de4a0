#!/usr/bin/env bash
# The C library's suite: builds libconsul_rs (bindings/c, workspace dev profile) with
# `make -C c`, then runs c/tests/run.sh (header check, ASan/UBSan and valgrind runs of the C
# tests, examples, install + pkg-config consumer). Ends with "c: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
exec make -s -C c test
