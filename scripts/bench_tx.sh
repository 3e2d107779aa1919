#!/usr/bin/env bash
# The transaction benchmarks, each run once per tracker (TMF_TRACK=protect,
# then TMF_TRACK=uffd, in child processes): tx_bench (small transactions
# against LMDB and the disk), scatter_bench (one random page of a store of
# 4 MiB to 4 GiB per commit), wset_bench (a repeating working set),
# read_bench (read transactions against LMDB) and lib_bench (SQLite kept in
# the arena under the preload).
#
# Sourced by scripts/bench.sh, which calls tx_run after its own benchmarks,
# tx_section inside bench/results.md and tx_summary in README.md's
# Measurements.  Run alone, it builds and runs only these and writes
# BUILD_DIR/results-tx[-quick].md:
#   BUILD_DIR   build directory (default: build-bench)
#   BENCH_DIR   where the benchmarks put their files: a real disk, not tmpfs
#   QUICK=1     small sizes, a smoke run
#   TX_TRACKERS the trackers, comma-separated (default: protect,uffd)

tx_trackers=${TX_TRACKERS:-protect,uffd}
tx_names=(tx_trackers scatter_bench wset_bench read_bench lib_bench)

tx_log() { echo "bench_tx.sh: $*" >&2; }

# Builds and runs the programs; their RESULT lines land in R (run of bench.sh).
tx_run() {
    local targets=(tmfpreload tx_bench scatter_bench wset_bench read_bench lib_bench) t
    need_packages liblmdb-dev libsqlite3-dev
    # Configure again: SQLite may have been installed just now.
    cmake -S "$root" -B "$build" >/dev/null
    cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" >/dev/null
    for t in "${targets[@]:1}"; do
        [ -x "$build/bench/$t" ] || { tx_log "$build/bench/$t was not built"; exit 1; }
    done
    local b=$build/bench tr="--trackers=$tx_trackers"
    local tx_a scatter_a wset_a read_a lib_a
    if [ "$quick" = 1 ]; then
        tx_a=(100 3); scatter_a=(1000 50 3 4 16 64); wset_a=(2000 3 4 64); read_a=(20000 3); lib_a=(100 3)
    else
        tx_a=(1000 5); scatter_a=(10000 500 5 4 256 4096); wset_a=(10000 5 4 1024); read_a=(200000 5); lib_a=(500 5)
    fi
    run tx_trackers "$b/tx_bench" "$tr" "$data" "${tx_a[@]}"
    run scatter_bench "$b/scatter_bench" "$tr" "$data" "${scatter_a[@]}"
    run wset_bench "$b/wset_bench" "$tr" "$data" "${wset_a[@]}"
    run read_bench "$b/read_bench" "$tr" "$data" "${read_a[@]}"
    run lib_bench "$b/lib_bench" "$tr" "$data" "$preload" "${lib_a[@]}"
}

# ---- the report ----

tx_fmt() { # value [decimals] -> the value, or n/a when missing
    [ -n "$1" ] || { echo "n/a"; return; }
    awk -v x="$1" -v d="${2:-2}" 'BEGIN { printf "%.*f", d, x }'
}
tx_verdict() { # value op target -> met / **missed** (+x%)
    [ -n "$1" ] || { echo "n/a"; return; }
    awk -v x="$1" -v op="$2" -v t="$3" 'BEGIN {
        ok = op == "<=" ? x <= t : x >= t
        printf "%s (%+.0f%%)", ok ? "met" : "**missed**", (x - t) / t * 100 }'
}
tx_list() { echo "${tx_trackers//,/ }"; }

# The targets: result name with TRK for the tracker | description | op | target.
tx_targets() {
    local big small wbig
    big=${R[scatter_${1}_large_mib]:-?}
    small=${R[scatter_${1}_small_mib]:-?}
    cat <<EOF
tx_TRK_target_update_nosync_lmdb|(T1) TMF_SYNC=none tx/s / LMDB MDB_NOSYNC, update|>=|0.5
tx_TRK_target_insert_nosync_lmdb|(T1) TMF_SYNC=none tx/s / LMDB MDB_NOSYNC, insert|>=|0.4
tx_TRK_target_update_durable_limit|(T1) durable tx/s / pwrite+fdatasync loop, update|>=|0.9
tx_TRK_target_insert_durable_limit|(T1) durable tx/s / pwrite+fdatasync loop, insert|>=|0.9
tx_TRK_target_update_durable_lmdb|(T1) durable tx/s / LMDB defaults, update|>=|2
tx_TRK_target_insert_durable_lmdb|(T1) durable tx/s / LMDB defaults, insert|>=|2
scatter_TRK_none_target_mean|(T2) scattered one-page tx, mean, $big MiB / $small MiB store, TMF_SYNC=none|<=|1.2
scatter_TRK_none_target_p99|(T2) scattered one-page tx, p99, $big MiB / $small MiB store, TMF_SYNC=none|<=|1.2
scatter_TRK_full_target_mean|(T2) scattered one-page tx, mean, $big MiB / $small MiB store, TMF_SYNC=full|<=|1.2
scatter_TRK_full_target_p99|(T2) scattered one-page tx, p99, $big MiB / $small MiB store, TMF_SYNC=full|<=|1.2
scatter_TRK_none_target_maxp50|(T2) slowest tx / median tx, $big MiB store, TMF_SYNC=none (checkpoints included)|<=|10
read_TRK_target_1t_lmdb|(T4) read tx / LMDB begin+get+abort, ns, 1 thread|<=|2
read_TRK_target_mt_lmdb|(T4) read tx / LMDB begin+get+abort, ns per thread, one thread per core|<=|2
read_TRK_target_1t_renew|(T4) read tx / LMDB renew+get+reset, ns, 1 thread|<=|2
read_TRK_target_mt_renew|(T4) read tx / LMDB renew+get+reset, ns per thread, one thread per core|<=|2
lib_TRK_target_insert|(T5) SQLite in the arena / ordinary memory, INSERT (prepared)|<=|10
lib_TRK_target_update|(T5) SQLite in the arena / ordinary memory, UPDATE by key (prepared)|<=|10
lib_TRK_target_insert_exec|(T5) SQLite in the arena / ordinary memory, INSERT (SQL text)|<=|10
lib_TRK_target_update_exec|(T5) SQLite in the arena / ordinary memory, UPDATE by key (SQL text)|<=|10
EOF
}

# The targets table, one column per tracker, and a count line before it.
tx_summary() {
    local t first line name desc op goal v nmet=0 nall=0 head="| workload | target |" sep="|---|---|"
    first=$(tx_list | cut -d' ' -f1)
    for t in $(tx_list); do
        head+=" TMF_TRACK=$t |"
        sep+="---|"
    done
    local rows=()
    while IFS='|' read -r name desc op goal; do
        line="| $desc | $op $goal |"
        for t in $(tx_list); do
            v=${R[${name//TRK/$t}]:-}
            line+=" $(tx_fmt "$v") $(tx_verdict "$v" "$op" "$goal") |"
            if [ -n "$v" ]; then
                nall=$((nall + 1))
                awk -v x="$v" -v op="$op" -v g="$goal" 'BEGIN { exit !(op == "<=" ? x <= g : x >= g) }' &&
                    nmet=$((nmet + 1))
            fi
        done
        rows+=("$line")
    done < <(tx_targets "$first")
    echo "Transactions, measured once per tracker by \`scripts/bench_tx.sh\` (each column runs with \`TMF_TRACK\`"
    echo "set as named; a library without that variable runs its one tracker in both): **$nmet of $nall"
    echo "targets met**. The workloads (T1)–(T5) are described in bench/results.md."
    echo
    echo "$head"
    echo "$sep"
    printf '%s\n' "${rows[@]}"
}

tx_section() {
    local t s y k
    echo "## Transactions, once per tracker — \`scripts/bench_tx.sh\`"
    echo
    echo "Each program below runs its whole measurement once per tracker, in a child process with"
    echo "\`TMF_TRACK\` set ($(tx_list | sed 's/ /, /g')); each prints the tracker it was given. A library that does"
    echo "not know \`TMF_TRACK\` ignores it, and then every column measures the same tracker."
    echo "Every figure is a median of ${R[tx_$(tx_list | cut -d' ' -f1)_rounds]:-5} or more rounds; within a round the systems"
    echo "compared run side by side, in an order that alternates between rounds, and ratios are taken per round."
    echo
    tx_summary
    echo
    echo "### (T1) small transactions — \`tx_bench --trackers=...\`"
    echo
    echo "As (2) and (3) above: update one random 64-byte record of 10,000; insert one new key with a 64-byte"
    echo "value. ${R[tx_$(tx_list | cut -d' ' -f1)_durable_n]:-?} durable / ${R[tx_$(tx_list | cut -d' ' -f1)_nondurable_n]:-?} non-durable transactions per round. tx/s:"
    echo
    local head="| system |" sep="|---|"
    for t in $(tx_list); do head+=" update, $t | insert, $t |"; sep+="---|---|"; done
    echo "$head"
    echo "$sep"
    for s in tmf_full:"tmfalloc TMF_SYNC=full" lmdb:"LMDB, default (durable)" raw:"pwrite 4 KiB + fdatasync" \
        tmf_none:"tmfalloc TMF_SYNC=none" lmdb_nosync:"LMDB MDB_NOSYNC"; do
        k=${s%%:*}
        local line="| ${s#*:} |"
        for t in $(tx_list); do
            line+=" $(tx_fmt "${R[tx_${t}_update_${k}_tps]:-}" 0) | $(tx_fmt "${R[tx_${t}_insert_${k}_tps]:-}" 0) |"
        done
        echo "$line"
    done
    echo
    echo "### (T2) scattered commits — \`scatter_bench\`"
    echo
    echo "Stores whose root reaches S bytes of data written for real (blocks of 16 MiB filled in"
    echo "transactions, file synced before timing; a size is skipped, with the reason in the raw output, when"
    echo "the disk or the memory lacks S + 1 GiB). Each transaction writes 8 bytes at a random page of the"
    echo "whole data; every page is read first, so page tables map it all. Runs continue past N (up to 4 N)"
    echo "until the handle made a checkpoint. µs; \"tx\" is tm_begin to the return of tm_commit,"
    echo "\"commit\" the tm_commit alone; max/p50 is per run."
    for t in $(tx_list); do
        echo
        echo "TMF_TRACK=$t:"
        echo
        echo "| store | sync | tx/run | checkpoints | tx mean | tx p50 | tx p99 | tx max | max/p50 | commit mean | commit p99 | commit max |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
        local key sizes
        sizes=$(printf '%s\n' "${!R[@]}" | sed -n "s/^scatter_${t}_\([0-9]*\)m_none_n\$/\1/p" | sort -n)
        for s in $sizes; do
            for y in none full; do
                key=scatter_${t}_${s}m_${y}
                echo "| $s MiB | $y | $(tx_fmt "${R[${key}_n]:-}" 0) | $(tx_fmt "${R[${key}_checkpoints]:-}" 0) |" \
                    "$(tx_fmt "${R[${key}_tx_mean_us]:-}") | $(tx_fmt "${R[${key}_tx_p50_us]:-}") |" \
                    "$(tx_fmt "${R[${key}_tx_p99_us]:-}") | $(tx_fmt "${R[${key}_tx_max_us]:-}" 0) |" \
                    "$(tx_fmt "${R[${key}_tx_maxp50]:-}" 1) | $(tx_fmt "${R[${key}_commit_mean_us]:-}") |" \
                    "$(tx_fmt "${R[${key}_commit_p99_us]:-}") | $(tx_fmt "${R[${key}_commit_max_us]:-}" 0) |"
            done
        done
    done
    echo
    echo "### (T3) a repeating working set — \`wset_bench\`"
    echo
    echo "Each transaction increments a counter and rewrites one random 64-byte record of 10,000 (tmfalloc:"
    echo "both in the root, TMF_SYNC=none, arenas of the sizes shown, every page mapped; LMDB MDB_NOSYNC: a"
    echo "counter key and 10,000 record keys, get + 2 puts per transaction; memory: the same stores into"
    echo "malloc'ed memory). µs per transaction after N/10 untimed; faults are minor page faults per"
    echo "transaction. No target: it shows where a tracker's cost goes when pages stay hot."
    echo
    echo "| tracker | tmfalloc, ${R[wset_$(tx_list | cut -d' ' -f1)_small_mib]:-?} MiB arena | faults | tmfalloc, ${R[wset_$(tx_list | cut -d' ' -f1)_large_mib]:-?} MiB arena | faults | LMDB MDB_NOSYNC | memory | tmfalloc (small) tx/s / LMDB |"
    echo "|---|---|---|---|---|---|---|---|"
    for t in $(tx_list); do
        local sm=${R[wset_${t}_small_mib]:-} lg=${R[wset_${t}_large_mib]:-}
        echo "| $t | $(tx_fmt "${R[wset_${t}_${sm}m_us]:-}") | $(tx_fmt "${R[wset_${t}_${sm}m_faults]:-}") |" \
            "$(tx_fmt "${R[wset_${t}_${lg}m_us]:-}") | $(tx_fmt "${R[wset_${t}_${lg}m_faults]:-}") |" \
            "$(tx_fmt "${R[wset_${t}_lmdb_us]:-}") | $(tx_fmt "${R[wset_${t}_mem_us]:-}" 3) |" \
            "$(tx_fmt "${R[wset_${t}_${sm}m_lmdb_ratio]:-}" 3) |"
    done
    echo
    echo "### (T4) read transactions — \`read_bench\`"
    echo
    echo "One read transaction that reads one word: tmfalloc \`tm_read_begin\` + the word + \`tm_read_end\`;"
    echo "LMDB \`mdb_txn_begin(MDB_RDONLY)\` + \`mdb_get\` + \`mdb_txn_abort\`, and its fast way, a per-thread"
    echo "transaction \`mdb_txn_renew\` + \`mdb_get\` + \`mdb_txn_reset\`. ${R[read_$(tx_list | cut -d' ' -f1)_n]:-?} per thread per round, by 1 thread, then"
    echo "by ${R[read_$(tx_list | cut -d' ' -f1)_threads]:-?} threads at once (per thread: a thread's time over its count; aggregate: wall time over all). ns:"
    echo
    echo "| tracker | system | 1 thread | per thread, in parallel | aggregate | per thread in parallel / 1 thread |"
    echo "|---|---|---|---|---|---|"
    for t in $(tx_list); do
        for s in tmf:"tmfalloc" lmdb:"LMDB begin/abort" lmdb_renew:"LMDB renew/reset"; do
            k=${s%%:*}
            echo "| $t | ${s#*:} | $(tx_fmt "${R[read_${t}_${k}_1t_ns]:-}" 0) | $(tx_fmt "${R[read_${t}_${k}_per_thread_ns]:-}" 0) |" \
                "$(tx_fmt "${R[read_${t}_${k}_aggregate_ns]:-}" 0) | $(tx_fmt "${R[read_${t}_${k}_scaling]:-}") |"
        done
    done
    echo
    echo "### (T5) a real library in the arena — \`lib_bench\`"
    echo
    echo "SQLite \`:memory:\` database created inside a transaction under \`LD_PRELOAD=libtmfpreload.so\`"
    echo "(\`sqlite3_initialize()\` before it), its \`sqlite3 *\` and two prepared statements kept in the root,"
    echo "10,000 rows of 64 bytes; then one statement per transaction, TMF_SYNC=none, against the same"
    echo "statements on a plain \`:memory:\` database in a process without the preload. ${R[lib_$(tx_list | cut -d' ' -f1)_n]:-?} statements per"
    echo "round after N/10 untimed; faults are minor page faults (getrusage) per statement."
    echo
    echo "| tracker | statement | arena µs/tx | arena faults/tx | ordinary µs | ordinary faults | arena / ordinary |"
    echo "|---|---|---|---|---|---|---|"
    for t in $(tx_list); do
        for s in insert:"INSERT, prepared" update:"UPDATE by key, prepared" insert_exec:"INSERT, SQL text" \
            update_exec:"UPDATE by key, SQL text"; do
            k=lib_${t}_${s%%:*}
            echo "| $t | ${s#*:} | $(tx_fmt "${R[${k}_arena_us]:-}") | $(tx_fmt "${R[${k}_arena_faults]:-}" 1) |" \
                "$(tx_fmt "${R[${k}_plain_us]:-}") | $(tx_fmt "${R[${k}_plain_faults]:-}" 2) | $(tx_fmt "${R[${k}_ratio]:-}" 1) |"
        done
    done
    echo
    echo "### Raw output of the transaction benchmarks"
    local f
    for f in "${tx_names[@]}"; do
        [ -s "$raw/$f.txt" ] || continue
        echo
        echo "#### $f"
        echo
        echo '```'
        grep -v '^RESULT ' "$raw/$f.txt" | sed "s|$root/||g"
        echo '```'
    done
}

# ---- run alone ----
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    cd "$(dirname "$0")/.."
    root=$PWD
    . scripts/deps.sh
    need_packages cmake make gcc liblmdb-dev libsqlite3-dev
    build=${BUILD_DIR:-build-bench}
    quick=${QUICK:-0}
    [ "$quick" = 0 ] || quick=1
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTMF_TESTS=OFF -DTMF_BENCH=ON >/dev/null
    build=$(cd "$build" && pwd)
    preload=$build/libtmfpreload.so
    if [ -n "${BENCH_DIR:-}" ]; then
        mkdir -p "$BENCH_DIR"
        data=$(cd "$BENCH_DIR" && pwd)/bench-data.$$
        mkdir -p "$data"
    else
        data=$(mktemp -d "$build/bench-data.XXXXXX")
    fi
    trap 'rm -rf "$data"' EXIT
    case "$(df -T "$data" | awk 'NR == 2 {print $2}')" in
    tmpfs | ramfs) tx_log "$data is on tmpfs: set BENCH_DIR to a directory on a real disk"; exit 1 ;;
    esac
    suffix=-tx
    [ "$quick" = 1 ] && suffix=-tx-quick
    raw=$build/bench-output$suffix
    rm -rf "$raw"
    mkdir -p "$raw"
    declare -A R
    run() { # name command...
        local name=$1 t0=$SECONDS
        shift
        tx_log "running $name: $*"
        "$@" >"$raw/$name.txt"
        tx_log "  $name took $((SECONDS - t0)) s"
        while IFS='=' read -r k v; do
            R[$k]=$v
        done < <(sed -n 's/^RESULT //p' "$raw/$name.txt")
    }
    t_start=$SECONDS
    tx_run
    md=$build/results$suffix.md
    {
        echo "# tmfalloc transaction benchmarks"
        echo
        [ "$quick" = 1 ] && echo "**QUICK=1 smoke run: small sizes, not the figures to quote.**" && echo
        echo "\`scripts/bench_tx.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') in $((SECONDS - t_start)) s: $(nproc) cores, kernel $(uname -r)."
        echo
        tx_section
    } >"$md"
    tx_log "wrote $md"
fi
