#!/usr/bin/env bash
# Runs the libFuzzer targets built by `make fuzz-build` (Fuzz/.build/release), each for
# FUZZ_SECONDS seconds (default 60), and prints executions per target. Arguments name the
# targets to run (default: all). Exit status 1 when any target crashed, broke an invariant,
# hung past FUZZ_TIMEOUT seconds on one input, or could not start.
#
# Each target starts from its seed corpus (Fuzz/Corpus/<target>, in the repository, read
# only) and keeps what it finds in Fuzz/.build/fuzz/corpus/<target>, so a local rerun goes
# on from there. A failing input is saved as Fuzz/.build/fuzz/artifacts/<target>/crash-*:
# replay it with `Fuzz/.build/release/<target> <file>`; once fixed, it goes into
# Fuzz/Corpus/<target>/ and becomes a regression unit test named after the bug.
set -uo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-60}
timeout=${FUZZ_TIMEOUT:-10}
bin=.build/release
work=.build/fuzz
all=(fuzz-session fuzz-sasl fuzz-proxy fuzz-passwd fuzz-maildir-name fuzz-size-cache
     fuzz-login-index fuzz-dovecot-uidlist fuzz-courier-sizelist fuzz-imported-uidls)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi

failed=()
printf '%-24s %8s %14s %10s %8s  %s\n' target seconds executions 'execs/s' corpus result
for t in "${targets[@]}"; do
    corpus="$work/corpus/$t"
    artifacts="$work/artifacts/$t"
    log="$work/$t.log"
    mkdir -p "$corpus" "$artifacts"
    if [ ! -x "$bin/$t" ]; then
        printf '%-24s %8s %14s %10s %8s  %s\n' "$t" - - - - "not built (make fuzz-build)"
        failed+=("$t")
        continue
    fi
    dict=()
    if [ -f "Dictionaries/$t.dict" ]; then dict=(-dict="Dictionaries/$t.dict"); fi
    # -timeout: one input may take at most FUZZ_TIMEOUT s (a hang is a bug here: "never a
    # hang"); -rss_limit_mb: a decoder that buffers without bound is one too.
    # SWIFT_BACKTRACE: Swift's crash handler reads memory AddressSanitizer then reports as a
    # second, spurious error; libFuzzer's and ASan's reports say what matters.
    SWIFT_BACKTRACE=enable=no "$bin/$t" -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "${dict[@]}" \
        "$corpus" "Corpus/$t" >"$log" 2>&1
    status=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    elapsed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    files=$(find "$corpus" -type f | wc -l)
    if [ "$status" -eq 0 ]; then
        result=ok
    else
        result="FAILED (exit $status; log $PWD/$log)"
        failed+=("$t")
    fi
    printf '%-24s %8s %14s %10s %8s  %s\n' "$t" "$seconds" "${execs:--}" "${elapsed:--}" "$files" "$result"
    if [ "$status" -ne 0 ]; then
        grep -E 'fuzz invariant broken|ERROR: (libFuzzer|AddressSanitizer)|Fatal error|SUMMARY' "$log" | head -5 | sed 's/^/    /'
        ls -t "$artifacts" | head -3 | sed "s|^|    input: $PWD/$artifacts/|"
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing failed: ${failed[*]}"
    exit 1
fi
