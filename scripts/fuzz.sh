#!/usr/bin/env bash
# Coverage-guided fuzzing of consul_core::fuzzing's targets with libFuzzer (`cargo +nightly fuzz`).
#
#   scripts/fuzz.sh                    every target, 60 s each
#   scripts/fuzz.sh dns 600            one target for 10 minutes
#   scripts/fuzz.sh dns,http_txn 600   several
#   scripts/fuzz.sh all 300            every target, 5 minutes each
#   scripts/fuzz.sh --list             the target names
#   scripts/fuzz.sh --build            build the fuzz binary only (and say how long it took)
#   scripts/fuzz.sh --merge [target]   fold the inputs a run found that add coverage into the
#                                      committed corpus (fuzz/corpus/<target>/), minimised
#
# One binary (fuzz/fuzz_targets/dispatch.rs) serves every target, picked by CONSUL_FUZZ_TARGET,
# so the build happens once. New inputs go to fuzz/corpus-new/<target>/ (not committed), crashes
# to fuzz/artifacts/<target>/. A crash is fixed in core, then its input is committed under
# fuzz/regressions/<target>/ so `cargo test` replays it for ever. See fuzz/README.md.
#
# Environment: CARGO_TARGET_DIR (default fuzz/target), FUZZ_SANITIZER (address; `none` builds
# and runs faster), FUZZ_JOBS (targets run at once, default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

targets() {
    # The committed corpus directories are the targets (the replay test keeps the two in step).
    find fuzz/corpus -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort
}

sanitizer=${FUZZ_SANITIZER:-address}
fuzz_args=(--sanitizer "$sanitizer" --fuzz-dir fuzz)

build() {
    local start=$SECONDS
    cargo +nightly fuzz build "${fuzz_args[@]}" dispatch
    echo "fuzz.sh: built in $((SECONDS - start)) s" >&2
}

# The libFuzzer options every run uses: no single input may take 10 s, allocate 256 MiB at
# once, or grow the process past 2 GiB ("never allocates absurdly"); inputs up to 16 KiB.
libfuzzer_opts=(-timeout=10 -malloc_limit_mb=256 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1)

run_one() {
    local t=$1 secs=$2
    mkdir -p "fuzz/corpus-new/$t" "fuzz/artifacts/$t" "fuzz/regressions/$t"
    echo "fuzz.sh: $t for $secs s" >&2
    CONSUL_FUZZ_TARGET=$t cargo +nightly fuzz run "${fuzz_args[@]}" dispatch \
        "fuzz/corpus-new/$t" "fuzz/corpus/$t" "fuzz/regressions/$t" -- \
        "${libfuzzer_opts[@]}" -max_total_time="$secs" -artifact_prefix="$root/fuzz/artifacts/$t/" \
        >"fuzz/artifacts/$t/last-run.log" 2>&1
}

merge_one() {
    local t=$1
    [ -d "fuzz/corpus-new/$t" ] || return 0
    local before
    before=$(find "fuzz/corpus/$t" -type f | wc -l)
    CONSUL_FUZZ_TARGET=$t cargo +nightly fuzz run "${fuzz_args[@]}" dispatch \
        "fuzz/corpus/$t" "fuzz/corpus-new/$t" -- -merge=1 "${libfuzzer_opts[@]}" >/dev/null 2>&1
    echo "fuzz.sh: $t: corpus $before -> $(find "fuzz/corpus/$t" -type f | wc -l) files" >&2
}

case "${1:-all}" in
--list)
    targets
    exit 0
    ;;
--build)
    build
    exit 0
    ;;
--merge)
    build
    for t in ${2:-$(targets)}; do merge_one "$t"; done
    exit 0
    ;;
esac

what=${1:-all}
secs=${2:-60}
if [ "$what" = all ]; then
    list=$(targets)
else
    list=${what//,/ }
    for t in $list; do
        if [ ! -d "fuzz/corpus/$t" ]; then
            echo "fuzz.sh: unknown target $t; one of:" $(targets) >&2
            exit 2
        fi
    done
fi

build
jobs=${FUZZ_JOBS:-1}
failed=()
running=0
declare -A pids=()
for t in $list; do
    run_one "$t" "$secs" &
    pids[$t]=$!
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
for t in "${!pids[@]}"; do
    if ! wait "${pids[$t]}" 2>/dev/null; then :; fi
done
# A run's outcome is in its log: libFuzzer prints "Done N runs" when time ran out cleanly.
for t in $list; do
    log="fuzz/artifacts/$t/last-run.log"
    stats=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
    if grep -q '^Done [0-9]* runs' "$log"; then
        echo "fuzz.sh: $t: ok (${stats:-?} inputs)"
    else
        echo "fuzz.sh: $t: FAILED, see $log and fuzz/artifacts/$t/"
        failed+=("$t")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
