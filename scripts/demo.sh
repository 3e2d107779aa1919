#!/usr/bin/env bash
# Builds the examples and runs the persistent counter three times: the count
# survives each restart because it lives in the store file.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/deps.sh
need_packages cmake make gcc g++

build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTMF_TESTS=OFF -DTMF_BENCH=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target counter >/dev/null

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export TMF_PATH="$dir/counter.tmf"
for run in 1 2 3; do
    "$build/examples/counter"
done
echo "store: $(ls -l "$TMF_PATH" | awk '{print $1, $5}') bytes; log: $(stat -c %s "$TMF_PATH.log") bytes"
