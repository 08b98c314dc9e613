#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target in fuzz/ for a bounded time each, one after the other, on the committed corpus.
#
#   scripts/fuzz.sh [seconds-per-target]      # default 60
#
# New inputs the fuzzer finds go to a scratch directory, so a run never changes the repository; a crash, a
# timeout or an out-of-memory input is written to fuzz/artifacts/<target>/ (ignored by git). Every target runs
# even after one fails; the script then exits 1 and names each failing input. Per target it prints one line:
# executions per second, and the coverage reached (libFuzzer's `cov`: instrumented edges; `ft`: features, i.e.
# edges with hit counts and comparisons).
#
# Works on a stable toolchain: cargo fuzz needs nightly-only rustc flags, which RUSTC_BOOTSTRAP=1 allows.
# To keep new inputs (e.g. before `cargo fuzz cmin`), run `cargo fuzz run` by hand (see fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: scripts/fuzz.sh [seconds-per-target]  (a whole number of seconds, default 60)" >&2
    exit 2
fi

export RUSTC_BOOTSTRAP=1
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# The same flags for the build and every run, so that `cargo fuzz run` finds the build and does not redo it.
# Debug assertions (and overflow checks) are on: an overflow on outside input is a finding. AddressSanitizer is
# off: every crate of ours forbids unsafe code, and ASan would halve the executions per second.
flags=(--sanitizer none --debug-assertions)

cd fuzz
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

mapfile -t targets < <(cargo fuzz list)
echo "== building ${#targets[@]} fuzz targets: ${targets[*]}"
build_started=$SECONDS
if ! cargo fuzz build "${flags[@]}" >"$scratch/build.log" 2>&1; then
    cat "$scratch/build.log" >&2
    echo "error: the fuzz targets do not build" >&2
    exit 1
fi
echo "built in $((SECONDS - build_started))s"

failed=()
for target in "${targets[@]}"; do
    echo "== fuzz $target for ${seconds}s"
    new_inputs="$scratch/corpus/$target"
    mkdir -p "$new_inputs" "artifacts/$target" "corpus/$target"
    log="$scratch/$target.log"
    # libFuzzer adds new inputs to the first corpus directory only: the committed corpus is read, never written.
    # -timeout: one input running for 10 s is a hang, and a finding. -rss_limit_mb: past 2 GiB is one too.
    status=0
    cargo fuzz run "${flags[@]}" "$target" "$new_inputs" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?

    # The last status line ("#N DONE cov: ... ft: ... corp: ...") and the final stats.
    last="$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1 || true)"
    cov="$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")"
    ft="$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")"
    corpus="$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$last")"
    runs="$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log")"
    rate="$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$log")"
    echo "fuzz $target: ${rate:-?} exec/s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corpus:-?}, ${runs:-?} runs in ${seconds}s"

    if [[ $status -ne 0 ]]; then
        echo "error: fuzz target $target failed (exit status $status); its log ends:" >&2
        tail -n 40 "$log" >&2
        artifacts="$(sed -nE 's/.*Test unit written to (\S+).*/\1/p' "$log" | sort -u)"
        if [[ -n "$artifacts" ]]; then
            while read -r artifact; do
                echo "error: failing input: $artifact" >&2
                echo "hint: reproduce with: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run ${flags[*]} $target $artifact" >&2
            done <<<"$artifacts"
        fi
        failed+=("$target")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "error: ${#failed[@]} fuzz target(s) failed: ${failed[*]}; turn each failing input into a unit test (fuzz/README.md)" >&2
    exit 1
fi
echo "== all ${#targets[@]} fuzz targets ran ${seconds}s each without a failure"
