#!/bin/sh
# Run every fuzz target for a bounded time each (default 60 s), starting from the
# seeds in fuzz/seeds/<target>/ plus whatever fuzz/corpus/<target>/ already holds.
# Fails on the first crash, leak or timeout; the reproducer is in
# fuzz/artifacts/<target>/. Prints one "FUZZ <target> ..." summary line per target.
#
#   fuzz/run-ci.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (cargo install cargo-fuzz --locked) and a nightly compiler or, on
# stable, RUSTC_BOOTSTRAP=1 (set here unless FUZZ_TOOLCHAIN names a toolchain, e.g.
# FUZZ_TOOLCHAIN=+nightly).
set -eu
cd "$(dirname "$0")"
secs=${1:-60}
[ $# -gt 0 ] && shift
toolchain=${FUZZ_TOOLCHAIN:-}
if [ -z "$toolchain" ]; then
    RUSTC_BOOTSTRAP=1
    export RUSTC_BOOTSTRAP
fi
# Fuzz builds have their own flags: keep them out of the main target directory.
unset CARGO_TARGET_DIR
targets=${*:-$(cargo $toolchain fuzz list)}
cargo $toolchain fuzz build
for t in $targets; do
    mkdir -p "corpus/$t" "seeds/$t"
    log="artifacts/$t.log"
    mkdir -p artifacts
    if ! cargo $toolchain fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "FUZZ $t FAILED (log: fuzz/$log)"
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*/cov \1 ft \2 corpus \3/p')
    echo "FUZZ $t ok: ${secs} s, $runs executions, $cov"
done
