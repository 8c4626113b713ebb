#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/) and runs each for a bounded time; fails on any crash, panic,
# failed assertion, hang (an input taking over 10 s) or memory blow-up (over 2 GiB).
#
#   scripts/fuzz.sh                      every target, FUZZ_SECONDS (default 6) each
#   FUZZ_SECONDS=600 scripts/fuzz.sh nul_scanner fhir_payload
#   FUZZ_JOBS=2 FUZZ_SECONDS=3600 scripts/fuzz.sh bearer_token   two workers on one target
#
# Stable Rust only: libFuzzer's coverage instrumentation is added with stable rustc options
# (-C passes=sancov-module and -C llvm-args, what `cargo fuzz --sanitizer none` passes), only to the
# carerecord crates (fuzz/sancov-rustc.sh), so the dependencies the tests compiled are reused from
# target/. libFuzzer itself is built apart (fuzz/runtime, into target/fuzz-runtime).
#
# Each target starts from its seed corpus in fuzz/corpus/<target>/ (kept in the repository) and
# writes what it finds to fuzz/runs/<target>/ (not kept; delete it to start afresh). A crashing
# input is saved as fuzz/artifacts/<target>/crash-*; replay it with
#   target/debug/<target> fuzz/artifacts/<target>/crash-<hash>
# then add it to fuzz/corpus/<target>/ with the fix, so every later run replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

seconds="${FUZZ_SECONDS:-6}"
jobs="${FUZZ_JOBS:-1}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
all_targets=(nhs_number fhir_payload page_token bearer_token fhir_search cedar_policy directive
    records_import contribution_payload nul_scanner)
if (($# > 0)); then targets=("$@"); else targets=("${all_targets[@]}"); fi

# The workspace's lock file, so the fuzz targets build against the very versions the tests use.
cp Cargo.lock fuzz/Cargo.lock

echo "fuzz: building libFuzzer"
CARGO_TARGET_DIR="$target_dir/fuzz-runtime" cargo build --quiet --manifest-path fuzz/runtime/Cargo.toml
libfuzzer="$(ls -t "$target_dir"/fuzz-runtime/debug/build/libfuzzer-sys-*/out/libfuzzer.a | head -n 1)"

echo "fuzz: building the targets (the carerecord crates instrumented)"
CARGO_TARGET_DIR="$target_dir" RUSTC_WRAPPER="$root/fuzz/sancov-rustc.sh" \
    CARERECORD_FUZZ_LIBFUZZER="$libfuzzer" \
    cargo build --quiet --manifest-path fuzz/Cargo.toml --bins

failed=()
printf '%-22s %12s %10s %8s %8s\n' target executions exec/s corpus edges
for target in "${targets[@]}"; do
    binary="$target_dir/debug/$target"
    if [[ ! -x $binary ]]; then
        echo "fuzz: no target named $target (targets: ${all_targets[*]})" >&2
        exit 2
    fi
    mkdir -p "fuzz/runs/$target" "fuzz/artifacts/$target" "fuzz/corpus/$target"
    log="fuzz/artifacts/$target/last-run.log"
    options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="fuzz/artifacts/$target/")
    if ((jobs > 1)); then options+=(-fork="$jobs"); fi
    if "$binary" "${options[@]}" "fuzz/runs/$target" "fuzz/corpus/$target" >"$log" 2>&1; then
        runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
        speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
        # The last status line: "#N DONE cov: C ft: F corp: K/size ...".
        status="$(grep -E '^#[0-9]+' "$log" | tail -n 1)"
        edges="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")"
        corpus="$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$status")"
        printf '%-22s %12s %10s %8s %8s\n' "$target" "${runs:-?}" "${speed:-?}" "${corpus:-?}" "${edges:-?}"
    else
        printf '%-22s FAILED (log: %s)\n' "$target" "$log"
        grep -vE '^(#[0-9]+|INFO:|MS:|\s*$)' "$log" | tail -n 40 >&2 || true
        ls fuzz/artifacts/"$target"/crash-* fuzz/artifacts/"$target"/timeout-* \
            fuzz/artifacts/"$target"/oom-* 2>/dev/null >&2 || true
        failed+=("$target")
    fi
done

passed=$((${#targets[@]} - ${#failed[@]}))
if ((${#failed[@]} > 0)); then
    echo "fuzz: failed: ${failed[*]}" >&2
fi
# One line in the form test runners close with: each target is a test that passed or failed.
echo "fuzz: ${passed} passed, ${#failed[@]} failed"
((${#failed[@]} == 0))
