#!/usr/bin/env bash
# RUSTC_WRAPPER used by scripts/fuzz.sh: compiles the carerecord crates (and the fuzz targets'
# library) with libFuzzer's coverage instrumentation (SanitizerCoverage: inline 8-bit counters, PC
# table, comparison tracing), the way `cargo fuzz build --sanitizer none` does, and every other
# crate exactly as the test build does. Dependencies therefore keep their test-build hashes and are
# reused from target/ instead of being compiled a second time; the carerecord crates get artifacts
# of their own anyway, because this is a workspace of its own.
# Only stable rustc options are used: -C passes and -C llvm-args.
set -euo pipefail
rustc="$1"
shift
name=""
previous=""
for arg in "$@"; do
    if [[ $previous == --crate-name ]]; then
        name="$arg"
        break
    fi
    previous="$arg"
done
if [[ $name == carerecord_* ]]; then
    exec "$rustc" "$@" \
        -Cpasses=sancov-module \
        -Cllvm-args=-sanitizer-coverage-level=4 \
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
        -Cllvm-args=-sanitizer-coverage-pc-table \
        -Cllvm-args=-sanitizer-coverage-trace-compares \
        --cfg fuzzing
fi
exec "$rustc" "$@"
