#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, -fsanitize=fuzzer,
# address,undefined) and runs each one for a bounded time from the committed
# seed corpus.  Exits non-zero when a target crashes, hangs, leaks or fails
# its checks (an input that makes tm_open or tm_store_check return anything
# but 0 or an error code).
#
#   TMF_FUZZ_SECONDS  seconds per target (default 60; CI uses the default)
#   TMF_FUZZ_TARGETS  targets to run (default: store_header log_replay heap_check)
#   TMF_FUZZ_JOBS     parallel fuzzing processes per target (default 1)
#   FUZZ_BUILD_DIR    build directory (default: build-fuzz)
#   TMF_FUZZ_REGEN=1  rewrite tests/fuzz/corpus from tests/fuzz/gen_corpus.c
#                     (the committed seeds; deterministic) before fuzzing
#
# Findings (crash-*, timeout-*, leak-* files) are written to
# $FUZZ_BUILD_DIR/findings/<target>/; reproduce one with
#   $FUZZ_BUILD_DIR/tests/fuzz/fuzz_<target> <file>
# New corpus entries go to $FUZZ_BUILD_DIR/corpus/<target>/, not into the
# repository; merge good ones by hand with -merge=1 if wanted.
#
# A longer run (e.g. before a release, or overnight on a bigger machine):
#   TMF_FUZZ_SECONDS=3600 TMF_FUZZ_JOBS=4 scripts/fuzz.sh
# and for one target:
#   TMF_FUZZ_SECONDS=14400 TMF_FUZZ_TARGETS=log_replay scripts/fuzz.sh
#
# Notes: every iteration maps a store at the fixed base (TMF_ADDR or the
# default, valid application memory under ASan) and closes it again; tm_open
# installs a SIGSEGV handler that handles faults in the arena and passes every
# other fault on to the one it replaced (ASan's, which then reports it), so
# ASan must let the program install it (allow_user_segv_handler=1).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${TMF_FUZZ_SECONDS:-60}
targets=${TMF_FUZZ_TARGETS:-store_header log_replay heap_check}
jobs=${TMF_FUZZ_JOBS:-1}
build=${FUZZ_BUILD_DIR:-build-fuzz}
cc=${FUZZ_CC:-clang-14}
command -v "$cc" >/dev/null || cc=clang

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$cc" \
  -DTMF_FUZZ=ON -DTMF_TESTS=OFF -DTMF_BENCH=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target fuzz_gen_corpus \
  $(for t in $targets; do echo fuzz_$t; done)

export ASAN_OPTIONS=${ASAN_OPTIONS:-allow_user_segv_handler=1:handle_segv=1:detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

if [ "${TMF_FUZZ_REGEN:-0}" = 1 ]; then
  rm -rf tests/fuzz/corpus
  "$build/tests/fuzz/fuzz_gen_corpus" tests/fuzz/corpus
fi

status=0
for t in $targets; do
  work="$build/corpus/$t" found="$build/findings/$t"
  mkdir -p "$work" "$found"
  log="$build/fuzz_$t.log"
  echo "== fuzz_$t: ${secs}s"
  set +e
  par=()
  [ "$jobs" -gt 1 ] && par=(-jobs="$jobs" -workers="$jobs")
  "$build/tests/fuzz/fuzz_$t" "$work" "tests/fuzz/corpus/$t" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -max_len=$((1 << 20)) \
    "${par[@]}" -artifact_prefix="$found/" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  [ "$jobs" -gt 1 ] && cat fuzz-*.log >>"$log" 2>/dev/null && rm -f fuzz-*.log
  grep -E "^stat::number_of_executed_units|^stat::new_units_added|^Done [0-9]+ runs|^tmf-fuzz:" "$log" || true
  if [ $rc -ne 0 ]; then
    echo "fuzz_$t FAILED (exit $rc); last lines of $log:"
    tail -40 "$log"
    status=1
  fi
done
exit $status
