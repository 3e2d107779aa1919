#!/usr/bin/env bash
# Builds the interposer and the examples, then runs the key-value example
# (plain malloc, strdup, free; no tmfalloc calls but tm_root/tm_begin/
# tm_commit) several times under LD_PRELOAD: each run is a new process, and
# the data survives because it lives in the store file.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/deps.sh
need_packages cmake make gcc g++ uthash-dev

build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTMF_TESTS=OFF -DTMF_BENCH=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target tmfpreload kv counter >/dev/null

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export TMF_PATH="$dir/kv.tmf"
kv() {
    echo "\$ LD_PRELOAD=libtmfpreload.so kv $*"
    LD_PRELOAD="$PWD/$build/libtmfpreload.so" "$build/examples/kv" "$@"
}
kv put apple red
kv put banana yellow
kv put cherry "dark red"
kv list
kv del banana
kv put apple green
echo "(each line above was a separate process; a new one finds the data:)"
kv list
kv get cherry
echo "store file: $(stat -c %s "$TMF_PATH") bytes, log: $(stat -c %s "$TMF_PATH.log") bytes"
