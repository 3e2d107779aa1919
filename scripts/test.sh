#!/usr/bin/env bash
# Installs what is missing (Debian/Ubuntu, as root), configures, builds and
# runs the whole suite through ctest, then the same suites under the
# sanitizers and a bounded fuzzing run.  Exits non-zero on any failure.
#
# Passes (each in its own build directory):
#   1. normal      BUILD_DIR: every test (ctest), once with each tracker
#                  (TMF_TRACK=protect, TMF_TRACK=uffd), then the suites
#                  that touch userfaultfd, permissions and file modes again
#                  as an unprivileged user (setpriv, when run as root).
#   2. ASan+UBSan  $BUILD_DIR-asan (clang, -DTMF_SANITIZE=address): every
#                  Criterion suite but test_preload (see below).
#   3. TSan        $BUILD_DIR-tsan (clang, -DTMF_SANITIZE=thread): the tests
#                  labelled "threads" (torture_threads).
#   4. fuzzing     $BUILD_DIR-fuzz: scripts/fuzz.sh, TMF_FUZZ_SECONDS (default
#                  60) per libFuzzer target.
#
#   BUILD_DIR        build directory (default: build)
#   BUILD_TYPE       CMake build type (default: RelWithDebInfo)
#   TMF_SANITIZERS   0: skip passes 2 and 3
#   TMF_FUZZ_SECONDS 0: skip pass 4
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/deps.sh
need_packages cmake make gcc g++ pkg-config libcriterion-dev libjemalloc-dev liblmdb-dev uthash-dev \
  liblua5.4-dev libsqlite3-dev
if [ "${TMF_SANITIZERS:-1}" != 0 ] || [ "${TMF_FUZZ_SECONDS:-60}" != 0 ]; then
  need_packages clang-14 libclang-rt-14-dev
fi

build=${BUILD_DIR:-build}
type=${BUILD_TYPE:-RelWithDebInfo}
jobs=$(nproc)
stamp() { echo "== $(date +%T) $*"; }

stamp "normal build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE="$type"
cmake --build "$build" -j"$jobs"
for track in protect uffd; do
  stamp "normal tests, TMF_TRACK=$track"
  TMF_TRACK=$track ctest --test-dir "$build" --output-on-failure -j2 --timeout 900
done
if [ "$(id -u)" -eq 0 ]; then
  stamp "unprivileged tests (nobody), TMF_TRACK=uffd"
  nobody_dir=$(mktemp -d /tmp/tmf-nobody.XXXXXX) # the checkout may be out of nobody's reach
  chmod 755 "$nobody_dir"
  # Criterion binds /tmp/criterion_<pid>.sock; one left by a run that was
  # killed, root's, makes nobody's run that gets the same pid abort.
  for s in /tmp/criterion_*.sock; do
    p=${s#/tmp/criterion_}; p=${p%.sock}
    if [ -S "$s" ] && ! kill -0 "$p" 2>/dev/null; then rm -f "$s"; fi
  done
  for t in test_basic test_tx test_store test_seam; do
    cp "$build/tests/$t" "$nobody_dir/"
    (cd "$nobody_dir" && setpriv --reuid=nobody --regid=nogroup --clear-groups \
       env TMF_TRACK=uffd HOME="$nobody_dir" "./$t" --jobs=2 --short-filename)
  done
  rm -rf "$nobody_dir"
fi

if [ "${TMF_SANITIZERS:-1}" != 0 ]; then
  san_cmake=(-DCMAKE_BUILD_TYPE="$type" -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14
             -DTMF_BENCH=OFF)

  # ASan + UBSan.  The library's SIGSEGV handler (dirty-page tracking and the
  # misuse diagnostics) passes faults outside the arena on to the previous
  # handler; with handle_segv=0 ASan installs none, so such a fault keeps its
  # default action, which test_tx checks.  The default base 0x200000000000
  # is application memory under ASan.  Criterion keeps one block of its own
  # until exit: tests/sanitizers/lsan.supp.
  # Not run here (the normal pass runs them): test_preload LD_PRELOADs an
  # interposer of malloc, which cannot coexist with ASan's own malloc
  # interposition; install_tree installs the library and builds an outside
  # program against it with the system compiler and no sanitizer flags,
  # which cannot link an instrumented library.
  stamp "ASan+UBSan build"
  cmake -S . -B "$build-asan" "${san_cmake[@]}" -DTMF_SANITIZE=address
  cmake --build "$build-asan" -j"$jobs"
  stamp "ASan+UBSan tests"
  ASAN_OPTIONS=handle_segv=0:allow_user_segv_handler=1:detect_leaks=1:abort_on_error=0 \
  LSAN_OPTIONS=suppressions="$PWD/tests/sanitizers/lsan.supp":print_suppressions=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  TMF_TORTURE_SECONDS=${TMF_TORTURE_SECONDS:-3} \
    ctest --test-dir "$build-asan" --output-on-failure -j2 --timeout 900 -E '^(test_preload|install_tree)$'

  # TSan.  Its application memory on x86-64 is [4 KiB, 512 GiB) (and PIE and
  # heap ranges high up); the default base lies in its shadow, so the stores
  # go to TMF_ADDR=0x7000000000 (448 GiB; tests reserve 1 GiB).  Criterion's
  # runner cannot start under TSan (it maps its arena in that shadow), so the
  # threaded torture runs as the plain program torture_threads (label
  # "threads"), with the same workers as test_torture.
  stamp "TSan build"
  cmake -S . -B "$build-tsan" "${san_cmake[@]}" -DTMF_SANITIZE=thread
  cmake --build "$build-tsan" -j"$jobs" --target torture_threads
  stamp "TSan tests"
  TMF_ADDR=0x7000000000 \
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tests/sanitizers/tsan.supp" \
    ctest --test-dir "$build-tsan" --output-on-failure --timeout 900 -L threads
fi

if [ "${TMF_FUZZ_SECONDS:-60}" != 0 ]; then
  stamp "fuzzing"
  FUZZ_BUILD_DIR="$build-fuzz" bash scripts/fuzz.sh
fi
stamp "all passes done"
