#!/usr/bin/env bash
# Installs what is missing (Debian/Ubuntu, as root), configures, builds and
# runs the whole suite through ctest.  Exits non-zero on any failure.
#   BUILD_DIR   build directory (default: build)
#   BUILD_TYPE  CMake build type (default: RelWithDebInfo)
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/deps.sh
need_packages cmake make gcc g++ pkg-config libcriterion-dev libjemalloc-dev liblmdb-dev uthash-dev

build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}"
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure -j2 --timeout 900
