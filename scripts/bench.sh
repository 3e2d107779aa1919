#!/usr/bin/env bash
# The benchmark suite: builds the benchmarks (RelWithDebInfo), runs every
# workload, writes bench/results.md and bench/results.png (a gnuplot chart of
# the key ratios against their targets) and the "## Measurements" section of
# README.md.  Installs what is missing (Debian/Ubuntu, as root).
#   BUILD_DIR  build directory (default: build-bench)
#   BENCH_DIR  where the benchmarks put their files; must be a real disk, not
#              tmpfs (default: a new temporary directory under BUILD_DIR)
#   REPORT_ONLY=1  run nothing: rewrite the report from the last run's output
#   QUICK=1    small sizes, a smoke run of a minute or so; its report goes to
#              BUILD_DIR/results-quick.{md,png} and README.md is left alone
# A full run takes about 10-15 minutes, more on a busy machine; scripts/bench_tx.sh
# (the transaction benchmarks, once per tracker) runs alone too.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
t_start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

. scripts/deps.sh
need_packages cmake make gcc g++ libjemalloc-dev libmimalloc-dev liblmdb-dev gnuplot-nox

build=${BUILD_DIR:-build-bench}
quick=${QUICK:-0}
[ "$quick" = 0 ] || quick=1
log() { echo "bench.sh: $*" >&2; }

# ---- build ----
log "building into $build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTMF_TESTS=OFF -DTMF_BENCH=ON >/dev/null
targets=(tmfpreload forward_preload alloc_bench heap_bench malloc_bench fallback_bench tx_bench commit_bench bigtx_bench replay_bench fault_bench)
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" >/dev/null
build=$(cd "$build" && pwd)
bin=$build/bench
preload=$build/libtmfpreload.so
forward=$bin/forward_preload.so
[ -f "$forward" ] || { log "$forward was not built"; exit 1; }
for t in "${targets[@]:2}"; do
    [ -x "$bin/$t" ] || { log "$bin/$t was not built"; exit 1; }
done
jemalloc=$(ldconfig -p 2>/dev/null | awk '/libjemalloc\.so\.2 .*x86-64/ && !f {print $NF; f = 1}') # awk reads on: an early exit would SIGPIPE ldconfig
[ -n "$jemalloc" ] || jemalloc=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
[ -e "$jemalloc" ] || { log "libjemalloc.so.2 not found"; exit 1; }
mimalloc=$(ldconfig -p 2>/dev/null | awk '/libmimalloc\.so\.2 .*x86-64/ && !f {print $NF; f = 1}')
[ -n "$mimalloc" ] || mimalloc=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2
[ -e "$mimalloc" ] || { log "libmimalloc.so.2 not found"; exit 1; }

# ---- the data directory: a real disk ----
if [ -n "${BENCH_DIR:-}" ]; then
    mkdir -p "$BENCH_DIR"
    data=$(cd "$BENCH_DIR" && pwd)/bench-data.$$
    mkdir -p "$data"
else
    data=$(mktemp -d "$build/bench-data.XXXXXX")
fi
trap 'rm -rf "$data"' EXIT
fstype=$(df -T "$data" | awk 'NR == 2 {print $2}')
fsdev=$(df -T "$data" | awk 'NR == 2 {print $1}')
case "$fstype" in
tmpfs | ramfs) log "$data is on $fstype: set BENCH_DIR to a directory on a real disk"; exit 1 ;;
esac
avail=$(df -B1 --output=avail "$data" | tail -1 | tr -d ' ')

# ---- sizes ----
if [ "$quick" = 1 ]; then
    alloc_args=(5 2); heap_args=(200000)
    malloc_args=(5 1); fallback_args=(5 5); tx_args=(200 5); commit_args=(200 5)
    big_mib=128; big_rounds=5; replay_args=(16 5); fault_args=(2048 5)
else
    alloc_args=(7 10); heap_args=(2000000)
    malloc_args=(7 5); fallback_args=(11 30); tx_args=(1000 5); commit_args=(1000 5)
    big_mib=1024; big_rounds=5; replay_args=(60 5); fault_args=(8192 9)
fi
big_note=""
if [ "$avail" -lt $((8 << 30)) ]; then
    # The big transaction needs 2 x size for the store and its log, then
    # 2 x size for the sequential file: keep it within a quarter of the space.
    scaled=$(( avail / 8 >> 20 >> 6 << 6 ))
    [ "$scaled" -ge 64 ] || scaled=64
    if [ "$scaled" -lt "$big_mib" ]; then
        big_note="scaled down from $big_mib MiB to $scaled MiB: only $((avail >> 20)) MiB free on $data"
        big_mib=$scaled
        log "$big_note"
    fi
fi

# ---- run ----
if [ "$quick" = 1 ]; then out_dir=$build; suffix=-quick; else out_dir=$root/bench; suffix=; fi
raw=$build/bench-output$suffix
report_only=${REPORT_ONLY:-0}
[ "$report_only" = 1 ] || rm -rf "$raw"
mkdir -p "$raw" "$out_dir"
declare -A R
cmds=()
run() { # name command...
    local name=$1
    shift
    log "running $name: $*"
    cmds+=("$*")
    local t0=$SECONDS
    if [ "$report_only" = 1 ]; then
        [ -s "$raw/$name.txt" ] || { log "no output of $name in $raw"; exit 1; }
    else
        "$@" >"$raw/$name.txt"
        log "  $name took $((SECONDS - t0)) s"
    fi
    while IFS='=' read -r k v; do
        R[$k]=$v
    done < <(sed -n 's/^RESULT //p' "$raw/$name.txt")
}
rel() { echo "${1//$root\//}"; } # paths relative to the repository in the report

run alloc_bench "$bin/alloc_bench" "$data" "$preload" "$jemalloc" "$mimalloc" "${alloc_args[@]}"
run heap_bench "$bin/heap_bench" "${heap_args[@]}" "$data/heap_bench.tmf"
run malloc_bench "$bin/malloc_bench" "$data" "$preload" "$jemalloc" "${malloc_args[@]}"
run fallback_bench "$bin/fallback_bench" "$preload" "${fallback_args[@]}" "$forward"
run tx_bench "$bin/tx_bench" "$data" "${tx_args[@]}"
run commit_bench "$bin/commit_bench" "$data" "${commit_args[@]}"
run bigtx_bench "$bin/bigtx_bench" "$data" "$big_mib" "$big_rounds"
run replay_bench "$bin/replay_bench" "$data" "${replay_args[@]}"
run fault_bench "$bin/fault_bench" "$data" "${fault_args[@]}"
# ---- the transaction benchmarks, once per tracker: scripts/bench_tx.sh ----
. scripts/bench_tx.sh
tx_run
t_end=$(date +%s)
runtime=$((t_end - t_start))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report ----
f2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
f3() { awk -v x="$1" 'BEGIN { printf "%.3f", x }'; }
f0() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
met() { # value op target -> met / missed
    awk -v x="$1" -v op="$2" -v t="$3" 'BEGIN { ok = op == "<=" ? x <= t : x >= t; print ok ? "met" : "**missed**" }'
}
by() { # value op target -> how far from the target, in percent of it
    awk -v x="$1" -v op="$2" -v t="$3" 'BEGIN { d = (x - t) / t * 100; printf "%+.0f%%", d }'
}

# Key ratios: key | label (chart) | description | value | op | target
keys=()
key() { keys+=("$1|$2|$3|$4|$5|$6"); }
key fb1 "fallback/glibc 1T" "(1) preload fallback time / glibc time, 1 thread" "${R[malloc_1t_fallback_ratio]}" "<=" 1.02
key fb2 "fallback/glibc 2T" "(1) preload fallback time / glibc time, 2 threads" "${R[malloc_2t_fallback_ratio]}" "<=" 1.02
key fbt "fallback/glibc tight" "(1) preload fallback / glibc, tight malloc/free loop" "${R[fallback_tight_ratio]}" "<=" 1.02
key as "tm_malloc/jemalloc 8-512B" "(0) tight loop 8-512 B: tm_malloc ops/s / jemalloc ops/s" "${R[alloc_small_tm_vs_jemalloc]}" ">=" 1.0
key am "tm_malloc/jemalloc 16-4096B" "(0) tight loop 16-4096 B: tm_malloc ops/s / jemalloc ops/s" "${R[alloc_medium_tm_vs_jemalloc]}" ">=" 1.0
key al "tm_malloc/jemalloc 1-64KiB" "(0) tight loop 1-64 KiB: tm_malloc ops/s / jemalloc ops/s" "${R[alloc_large_tm_vs_jemalloc]}" ">=" 1.0
key ps "preload/jemalloc 8-512B" "(0) tight loop 8-512 B: malloc under the preload in a transaction / jemalloc" "${R[alloc_small_preload_vs_jemalloc]}" ">=" 0.95
key pm "preload/jemalloc 16-4096B" "(0) tight loop 16-4096 B: malloc under the preload in a transaction / jemalloc" "${R[alloc_medium_preload_vs_jemalloc]}" ">=" 0.95
key pl "preload/jemalloc 1-64KiB" "(0) tight loop 1-64 KiB: malloc under the preload in a transaction / jemalloc" "${R[alloc_large_preload_vs_jemalloc]}" ">=" 0.95
key fr "jemalloc/tmf fragmentation" "(0) churn trace: jemalloc peak resident / tmfalloc arena, each over peak live bytes" "${R[frag_ratio]}" ">=" 1.0
key hp1 "heap/jemalloc 1T" "(1) persistent heap ops/s / jemalloc ops/s, 1 thread" "${R[malloc_1t_heap_ratio]}" ">=" 1.0
key hp2 "heap/jemalloc 2T" "(1) persistent heap ops/s / jemalloc ops/s, 2 processes on 2 stores vs 2 threads" "${R[malloc_2t_heap_ratio]}" ">=" 1.0
key txu "durable/LMDB upd" "(2) durable tx/s, tmfalloc / LMDB, update" "${R[tx_update_durable_ratio]}" ">=" 2
key txi "durable/LMDB ins" "(2) durable tx/s, tmfalloc / LMDB, insert" "${R[tx_insert_durable_ratio]}" ">=" 2
key syu "fdatasync/commit upd" "(2) fdatasync per durable commit, update" "${R[tx_update_tmf_full_syncs]}" "<=" 1.05
key syi "fdatasync/commit ins" "(2) fdatasync per durable commit, insert" "${R[tx_insert_tmf_full_syncs]}" "<=" 1.05
key lmu "durable/limit upd" "(2) durable tx/s / pwrite+fdatasync loop, update" "${R[tx_update_limit_ratio]}" ">=" 0.9
key lmi "durable/limit ins" "(2) durable tx/s / pwrite+fdatasync loop, insert" "${R[tx_insert_limit_ratio]}" ">=" 0.9
key ndu "nosync/LMDB upd" "(3) TMF_SYNC=none tx/s / LMDB MDB_NOSYNC, update" "${R[tx_update_nondurable_ratio]}" ">=" 1.0
key ndi "nosync/LMDB ins" "(3) TMF_SYNC=none tx/s / LMDB MDB_NOSYNC, insert" "${R[tx_insert_nondurable_ratio]}" ">=" 1.0
key cms "commit 4GiB/4MiB" "(4) one-page durable commit, 4 GiB store / 4 MiB store" "${R[commit_size_ratio_full]}" "<=" 1.2
key big "big tx/sequential" "(5) ${R[bigtx_mib]} MiB transaction / sequential write of twice that + fdatasync" "${R[bigtx_ratio]}" "<=" 2
key rpf "replay GB/s (full)" "(6) log replay at reopen, GB/s, TMF_SYNC=full (store file synced)" "${R[replay_full_gbs]}" ">=" 1
key rpn "replay GB/s (none)" "(6) log replay at reopen, GB/s, TMF_SYNC=none (replay alone)" "${R[replay_none_gbs]}" ">=" 1
key flt "first write/COW" "(7) first write to a page in a transaction / kernel COW fault" "${R[fault_ratio]}" "<=" 1.5
key flh "hot write/COW" "(7) first write in a transaction to a page every other transaction writes (hot) / kernel COW fault" "${R[fault_hot_ratio]}" "<=" 1.5

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
machine="$(nproc) cores ($cpu), kernel $(uname -r), $fstype on $fsdev"
today=$(date -u '+%Y-%m-%d %H:%M UTC')
nmet=0; nall=0
summary_table() {
    echo "| workload | measured | target | |"
    echo "|---|---|---|---|"
    local k
    for k in "${keys[@]}"; do
        IFS='|' read -r _ _ desc val op tgt <<<"$k"
        local m
        m=$(met "$val" "$op" "$tgt")
        echo "| $desc | $(f2 "$val") | $op $tgt | $m ($(by "$val" "$op" "$tgt")) |"
    done
}
for k in "${keys[@]}"; do
    IFS='|' read -r _ _ _ val op tgt <<<"$k"
    nall=$((nall + 1))
    [ "$(met "$val" "$op" "$tgt")" = met ] && nmet=$((nmet + 1))
done

md=$out_dir/results$suffix.md
png=$out_dir/results$suffix.png
{
    echo "# tmfalloc benchmark results"
    echo
    [ "$quick" = 1 ] && echo "**QUICK=1 smoke run: small sizes, not the figures to quote.**" && echo
    echo "Generated by \`scripts/bench.sh\` on $today in $runtime s."
    echo
    echo "- machine: $(nproc) cores, $cpu"
    echo "- kernel: $(uname -r)"
    echo "- bench directory filesystem (\`df -T\`): $fstype on $fsdev, $((avail >> 30)) GiB free"
    echo "- every figure is a median over several rounds; each round runs both sides of a ratio"
    echo "  side by side, alternating their order. The machine and its virtual disk are shared: expect a"
    echo "  few percent of noise on the CPU-bound ratios and much more on the durable (fdatasync) ones."
    echo "- load average (1, 5, 15 min) at the start: $load_start; at the end: $load_end"
    [ -n "$big_note" ] && echo "- note: the large transaction was $big_note"
    echo
    echo "## Summary: $nmet of $nall targets met"
    echo
    summary_table
    echo
    echo "![results](results$suffix.png)"
    echo
    echo "## (0) the allocator alone — \`alloc_bench\`, \`heap_bench\`"
    echo
    echo "A tight loop and nothing else: 16,384 slots; each operation picks a random slot, frees its block"
    echo "if it has one, or else allocates one of a random size in the range and writes its first byte."
    echo "${R[alloc_mops]} M operations timed after as many to warm up, in a fresh process per run; median of"
    echo "${R[alloc_rounds]} rounds, the systems in rotating order. tmfalloc runs inside one write transaction"
    echo "(TMF_SYNC=none): \`tm_malloc\`/\`tm_free\`, and plain \`malloc\`/\`free\` under"
    echo "\`LD_PRELOAD=libtmfpreload.so\` after \`tm_begin\`. Mops/s:"
    echo
    echo "| allocator | 8-512 B | 16-4096 B | 1-64 KiB |"
    echo "|---|---|---|---|"
    for s in glibc:glibc jemalloc:"jemalloc (LD_PRELOAD)" mimalloc:"mimalloc (LD_PRELOAD)" \
        tm:"tmfalloc tm_malloc, warm transaction" preload:"tmfalloc preload malloc, warm transaction"; do
        k=${s%%:*}
        echo "| ${s#*:} | $(f2 "${R[alloc_small_${k}_mops]}") | $(f2 "${R[alloc_medium_${k}_mops]}") | $(f2 "${R[alloc_large_${k}_mops]}") |"
    done
    echo
    echo "| ratio (ops/s) | 8-512 B | 16-4096 B | 1-64 KiB |"
    echo "|---|---|---|---|"
    for w in tm preload; do
        for o in glibc jemalloc mimalloc; do
            echo "| $w / $o | $(f2 "${R[alloc_small_${w}_vs_${o}]}") | $(f2 "${R[alloc_medium_${w}_vs_${o}]}") | $(f2 "${R[alloc_large_${w}_vs_${o}]}") |"
        done
    done
    echo
    echo "Pages dirtied per transaction of 1,000 alloc/free operations on a churned heap (\`heap_bench\`,"
    echo "superblock included), beside the distinct pages the workload's own writes touch:"
    echo
    echo "| sizes | pages dirtied | payload pages |"
    echo "|---|---|---|"
    echo "| 8-512 B | $(f2 "${R[heap_pages_small]}") | $(f2 "${R[heap_pages_small_min]}") |"
    echo "| 16-4096 B | $(f2 "${R[heap_pages_medium]}") | $(f2 "${R[heap_pages_medium_min]}") |"
    echo "| 1-64 KiB | $(f2 "${R[heap_pages_large]}") | $(f2 "${R[heap_pages_large_min]}") |"
    echo "| one transaction: 1,000 blocks of 8-512 B allocated, then freed | $(f2 "${R[heap_batch_pages]}") | |"
    echo
    echo "Fragmentation on a churn trace whose live set swings between 5% and 95% of its slots: tmfalloc's"
    echo "arena over peak live bytes $(f3 "${R[frag_tmf]}"), jemalloc's peak resident bytes over peak live bytes"
    echo "$(f3 "${R[frag_jemalloc]}") (\`mallctl stats.resident\`); ratio jemalloc / tmfalloc $(f3 "${R[frag_ratio]}")."
    echo
    echo "## (1) malloc/free/realloc mix — \`malloc_bench\`, \`fallback_bench\`"
    echo
    echo "Per thread 8192 slots; each operation frees or reallocs a random slot and allocates"
    echo "(8 B – 4 KiB, mostly < 264 B); ${R[malloc_mops_per_thread]} M operations per thread, a warm-up pass"
    echo "then a timed pass in a fresh process, median of ${R[malloc_rounds]} rounds. The persistent heap"
    echo "runs inside one write transaction (TMF_SYNC=none); \"warm\" reuses the pages the first pass"
    echo "dirtied, \"first pass\" includes every first-write fault. The persistent heap is single-writer,"
    echo "so its 2-thread figure is **two processes on two stores** at once (aggregate ops/s)."
    echo
    echo "| allocator | 1 thread Mops/s | 2 threads Mops/s (total) |"
    echo "|---|---|---|"
    for s in glibc:glibc jemalloc:"jemalloc (LD_PRELOAD)" fallback:"tmfalloc preload, no transaction (fallback)" \
        heap:"persistent heap, warm transaction" heap_cold:"persistent heap, first pass"; do
        echo "| ${s#*:} | $(f2 "${R[malloc_1t_${s%%:*}_mops]}") | $(f2 "${R[malloc_2t_${s%%:*}_mops]}") |"
    done
    echo
    echo "| ratio | 1 thread | 2 threads | target |"
    echo "|---|---|---|---|"
    echo "| fallback time / glibc time | $(f3 "${R[malloc_1t_fallback_ratio]}") | $(f3 "${R[malloc_2t_fallback_ratio]}") | <= 1.02 |"
    echo "| persistent heap (warm) ops/s / jemalloc ops/s | $(f2 "${R[malloc_1t_heap_ratio]}") | $(f2 "${R[malloc_2t_heap_ratio]}") | >= 1.0 |"
    echo "| persistent heap (first pass) ops/s / jemalloc ops/s | $(f2 "${R[malloc_1t_heap_cold_ratio]}") | $(f2 "${R[malloc_2t_heap_cold_ratio]}") | (none) |"
    echo
    echo "The fallback alone (\`fallback_bench\`): workloads outside any transaction, each in fresh processes"
    echo "on glibc alone, under the preload (which, until a store opens, points the program's PLT slots at glibc:"
    echo "\`preload/direct.c\`), under the preload once the program has opened a store (the same work outside any"
    echo "transaction), and under a bare forwarder (\`bench/forward_preload.c\`: malloc,"
    echo "free, calloc and realloc each one jump to glibc, the least any LD_PRELOAD interposer adds), in an"
    echo "order that rotates; ${R[fallback_mops]} M operations timed (process CPU time) after a tenth as many,"
    echo "median of ${R[fallback_rounds]} rounds. \"tight\" is \`p = malloc(16-256 B); free(p)\` and"
    echo "nothing else; \"live\" allocates 25 blocks of 16-256 B, then frees them (as glibc's bench-malloc-simple)."
    echo
    echo "| workload | glibc s | under the preload s | preload / glibc | target | a store open / glibc | bare forwarder / glibc | preload / forwarder |"
    echo "|---|---|---|---|---|---|---|---|"
    for s in mix:"malloc/free/realloc mix, 8 B - 4 KiB" tight:"tight loop: malloc, free" live:"25 live blocks"; do
        k=${s%%:*}
        echo "| ${s#*:} | $(f3 "${R[fallback_${k}_glibc_s]}") | $(f3 "${R[fallback_${k}_preload_s]}") | $(f3 "${R[fallback_${k}_ratio]}") | <= 1.02 | $(f3 "${R[fallback_${k}_open_ratio]}") | $(f3 "${R[fallback_${k}_forward_ratio]}") | $(f3 "${R[fallback_${k}_over_forward]}") |"
    done
    echo
    echo "## (2), (3) small transactions — \`tx_bench\`"
    echo
    echo "update: one random 64-byte record of 10,000 per transaction; insert: one new key with a"
    echo "64-byte value (a hash table built with \`tm_store_malloc\`; \`mdb_put\` of a new key)."
    echo "${R[tx_durable_n]} durable / ${R[tx_nondurable_n]} non-durable transactions per round, median of ${R[tx_rounds]} rounds."
    echo "Syncs are counted by wrapping \`fdatasync\`/\`fsync\`/\`msync\` in the executable."
    echo
    echo "| system | update tx/s | update syncs/commit | insert tx/s | insert syncs/commit |"
    echo "|---|---|---|---|---|"
    for s in tmf_full:"tmfalloc TMF_SYNC=full" lmdb:"LMDB, default (durable)" raw:"pwrite 4 KiB + fdatasync (the limit)" \
        tmf_none:"tmfalloc TMF_SYNC=none" lmdb_nosync:"LMDB MDB_NOSYNC"; do
        k=${s%%:*}
        echo "| ${s#*:} | $(f0 "${R[tx_update_${k}_tps]}") | $(f3 "${R[tx_update_${k}_syncs]}") | $(f0 "${R[tx_insert_${k}_tps]}") | $(f3 "${R[tx_insert_${k}_syncs]}") |"
    done
    echo
    echo "| ratio | update | insert | target |"
    echo "|---|---|---|---|"
    echo "| durable: tmfalloc / LMDB tx/s | $(f2 "${R[tx_update_durable_ratio]}") | $(f2 "${R[tx_insert_durable_ratio]}") | >= 2 |"
    echo "| durable: tmfalloc / pwrite+fdatasync tx/s | $(f2 "${R[tx_update_limit_ratio]}") | $(f2 "${R[tx_insert_limit_ratio]}") | >= 0.9 |"
    echo "| fdatasync per durable tmfalloc commit | $(f3 "${R[tx_update_tmf_full_syncs]}") | $(f3 "${R[tx_insert_tmf_full_syncs]}") | <= 1.05 |"
    echo "| non-durable: TMF_SYNC=none / MDB_NOSYNC tx/s | $(f2 "${R[tx_update_nondurable_ratio]}") | $(f2 "${R[tx_insert_nondurable_ratio]}") | >= 1.0 |"
    echo
    echo "**LMDB's second sync is not counted.** LMDB's 1.000 syncs per commit is the \`fdatasync\` of"
    echo "its data pages only. In liblmdb's \`mdb.c\`, \`mdb_env_open\` opens a second descriptor on"
    echo "\`data.mdb\`, \`me_mfd\`, with \`MDB_O_META = O_WRONLY|MDB_DSYNC|MDB_CLOEXEC\` (\`MDB_DSYNC\` is"
    echo "\`O_DSYNC\`), and \`mdb_env_write_meta\` writes the meta page with"
    echo "\`mfd = (flags & (MDB_NOSYNC|MDB_NOMETASYNC)) ? env->me_fd : env->me_mfd; pwrite(mfd, ...)\`"
    echo "(the comment there: \"writing to it also syncs to disk. Avoids a separate fdatasync() call\")."
    echo "So a durable LMDB commit makes two synchronous disk writes: the counted \`fdatasync\` and the"
    echo "\`O_DSYNC\` meta-page \`pwrite\`, which no wrapper sees. tx_bench checks it at run time from"
    echo "\`/proc/self/fdinfo\`: an \`O_DSYNC\` descriptor on data.mdb was found: $([ "${R[tx_lmdb_dsync_fd]}" = 1 ] && echo yes || echo no)."
    echo
    echo "## (4) commit cost against store size — \`commit_bench\`"
    echo
    echo "Transactions that each change 8 bytes of one random page of 64, on stores of 4 MiB, 256 MiB and"
    echo "4 GiB (every page of the arena read first, so the whole mapping is populated);"
    echo "${R[commit_n]} commits per round, median of ${R[commit_rounds]} rounds."
    echo
    echo "| store | TMF_SYNC=full µs/commit | fdatasync/commit | TMF_SYNC=none µs/commit |"
    echo "|---|---|---|---|"
    for s in 4m:"4 MiB" 256m:"256 MiB" 4g:"4 GiB"; do
        k=${s%%:*}
        echo "| ${s#*:} | $(f2 "${R[commit_${k}_full_us]}") | $(f3 "${R[commit_${k}_syncs]}") | $(f2 "${R[commit_${k}_none_us]}") |"
    done
    echo
    echo "pwrite 4 KiB + fdatasync: $(f2 "${R[commit_limit_us]}") µs. 4 GiB / 4 MiB: full **$(f2 "${R[commit_size_ratio_full]}")** (target <= 1.2), none $(f2 "${R[commit_size_ratio_none]}")."
    echo
    echo "## (5) a large transaction — \`bigtx_bench\`"
    echo
    echo "${R[bigtx_mib]} MiB dirtied in one transaction (memset of the root) and committed with TMF_SYNC=full,"
    echo "against a sequential write of $(( ${R[bigtx_mib]} * 2 )) MiB (1 MiB \`pwrite\`s into a new file) plus \`fdatasync\`;"
    echo "median of ${R[bigtx_rounds]} rounds.${big_note:+ Note: $big_note.}"
    echo
    echo "| | seconds |"
    echo "|---|---|"
    echo "| tmfalloc begin + memset + commit | $(f3 "${R[bigtx_tmf_s]}") |"
    echo "| of which memset (first-write faults) | $(f3 "${R[bigtx_fill_s]}") |"
    echo "| of which commit (log, fdatasync, store writes, checkpoint) | $(f3 "${R[bigtx_commit_s]}") |"
    echo "| sequential write of twice the size + fdatasync | $(f3 "${R[bigtx_seq_s]}") |"
    echo
    echo "Ratio tmfalloc / sequential: **$(f2 "${R[bigtx_ratio]}")** (target <= 2)."
    echo
    echo "## (6) recovery: log replay — \`replay_bench\`"
    echo
    echo "A child commits transactions of 64 pages until the log holds ${R[replay_log_mib]} MiB (below the 64 MiB"
    echo "checkpoint threshold) and \`_exit()\`s without \`tm_close\`; the files are synced (warm, clean page"
    echo "cache); then \`tm_open\` is timed: as the first opener it replays every record. The data are checked"
    echo "to be the child's last commit. Median of ${R[replay_rounds]} rounds."
    echo
    echo "| reopen | ms | GB/s of log | target |"
    echo "|---|---|---|---|"
    echo "| TMF_SYNC=full (replay, fdatasync of the store, checkpoint) | $(f2 "${R[replay_full_ms]}") | $(f2 "${R[replay_full_gbs]}") | >= 1 |"
    echo "| TMF_SYNC=none (replay alone) | $(f2 "${R[replay_none_ms]}") | $(f2 "${R[replay_none_gbs]}") | >= 1 |"
    echo
    echo "## (7) first write to a page — \`fault_bench\`"
    echo
    echo "One 8-byte write into each of ${R[fault_pages]} pages (per-page mode: fewer than 16384 dirty pages), every"
    echo "page read first; median of ${R[fault_rounds]} rounds."
    echo
    echo "| | µs per page |"
    echo "|---|---|"
    echo "| tmfalloc, inside a write transaction (SIGSEGV + mprotect + COW) | $(f2 "${R[fault_tmf_us]}") |"
    echo "| plain MAP_PRIVATE file mapping (kernel COW fault) | $(f2 "${R[fault_plain_us]}") |"
    echo
    echo "Ratio: **$(f2 "${R[fault_ratio]}")** (target <= 1.5)."
    echo
    tx_section
    echo
    echo "## Commands"
    echo
    echo '```sh'
    echo "${QUICK:+QUICK=$QUICK }scripts/bench.sh   # BUILD_DIR=$(rel "$build"), BENCH_DIR=$(rel "$data")"
    for c in "${cmds[@]}"; do
        rel "$c"
    done
    echo '```'
    echo
    echo "## Raw output"
    for f in alloc_bench heap_bench malloc_bench fallback_bench tx_bench commit_bench bigtx_bench replay_bench fault_bench; do
        echo
        echo "### $f"
        echo
        echo '```'
        grep -v '^RESULT ' "$raw/$f.txt" | sed "s|$root/||g"
        echo '```'
    done
} >"$md"
log "wrote $(rel "$md")"

# ---- chart ----
dat=$build/results.dat
: >"$dat"
i=0
for k in "${keys[@]}"; do
    IFS='|' read -r _ label _ val op tgt <<<"$k"
    ok=$(awk -v x="$val" -v op="$op" -v t="$tgt" 'BEGIN { print (op == "<=" ? x <= t : x >= t) ? 1 : 0 }')
    printf '%d "%s (%s %s)" %s %s %s\n' "$i" "$label" "$op" "$tgt" "$val" "$tgt" "$ok" >>"$dat"
    i=$((i + 1))
done
term=pngcairo
gnuplot -e 'set terminal' 2>&1 | grep -q pngcairo || term=png
gnuplot <<EOF
set terminal $term size 1300,760 font ",10"
set output "$png"
set title "tmfalloc: key figures against their targets ($nmet of $nall met) — $(nproc) cores, kernel $(uname -r), $fstype${QUICK:+, QUICK run}"
set style fill solid 0.8 border -1
set boxwidth 0.7
set logscale y
set yrange [0.03:20]
set ylabel "measured (log scale); black bar = target"
set grid ytics
set xtics rotate by -40 left nomirror
set xrange [-0.6:$((i - 1)).6]
set key top left
set bmargin 10
set rmargin 14
plot "$dat" using 1:3:(\$5 > 0.5 ? 0x2e9e44 : 0xd62728):xtic(2) with boxes lc rgb variable title "measured (green: target met, red: missed)", \
     "" using 1:4:(0.42) with xerrorbars lc rgb "black" lw 3 pt -1 title "target", \
     "" using 1:(\$3 > \$4 ? \$3 : \$4):(sprintf("%.2f", \$3)) with labels offset 0,0.9 font ",10" notitle
EOF
log "wrote $(rel "$png")"

# ---- README ----
if [ "$quick" = 0 ]; then
    sec=$build/measurements.md
    {
        echo "## Measurements"
        echo
        echo "From \`scripts/bench.sh\` on $today: $machine."
        echo "Each figure is a median of 5 or more rounds, and each round measures both sides of a ratio"
        echo "side by side. The machine and its virtual disk are shared (load average $load_start at the"
        echo "start, $load_end at the end): the CPU-bound ratios carry a few percent of noise, the durable"
        echo "ones (fdatasync latency) much more. **$nmet of $nall targets met**; a miss is shown as"
        echo "measured. Details, raw output and the exact commands: [bench/results.md](bench/results.md)."
        echo
        summary_table
        echo
        echo "LMDB's durable commit also writes its meta page through an \`O_DSYNC\` descriptor, a second"
        echo "sync per commit that the fdatasync counter does not see (see bench/results.md)."
        echo
        echo "The heap alone (\`alloc_bench\`: a tight malloc/free loop, random lifetimes, inside one write"
        echo "transaction), ops/s against jemalloc and mimalloc in the same run:"
        echo
        echo "| | 8-512 B | 16-4096 B | 1-64 KiB |"
        echo "|---|---|---|---|"
        for w in tm:"tm_malloc" preload:"malloc under the preload"; do
            for o in jemalloc mimalloc; do
                k=${w%%:*}
                echo "| ${w#*:} / $o | $(f2 "${R[alloc_small_${k}_vs_${o}]}") | $(f2 "${R[alloc_medium_${k}_vs_${o}]}") | $(f2 "${R[alloc_large_${k}_vs_${o}]}") |"
            done
        done
        echo
        echo "Pages dirtied per transaction of 1,000 operations (\`heap_bench\`): $(f0 "${R[heap_pages_small]}") for 8-512 B"
        echo "($(f0 "${R[heap_pages_small_min]}") payload pages), $(f0 "${R[heap_pages_medium]}") for 16-4096 B ($(f0 "${R[heap_pages_medium_min]}")), $(f0 "${R[heap_pages_large]}") for 1-64 KiB ($(f0 "${R[heap_pages_large_min]}"));"
        echo "$(f0 "${R[heap_batch_pages]}") for one transaction that allocates 1,000 blocks of 8-512 B and frees them."
        echo "Arena over peak live bytes on a churn trace $(f3 "${R[frag_tmf]}"), jemalloc's peak resident over the same"
        echo "$(f3 "${R[frag_jemalloc]}")."
        echo
        echo "![results](bench/results.png)"
        echo
        tx_summary
        echo
    } >"$sec"
    awk -v sec="$sec" '
        /^## Measurements[[:space:]]*$/ { while ((getline l < sec) > 0) print l; skip = 1; next }
        skip && /^## / { skip = 0 }
        !skip { print }
    ' README.md >"$build/README.new"
    grep -q '^## Measurements' "$build/README.new" || { log "README.md has no Measurements section"; exit 1; }
    cat "$build/README.new" >README.md
    log "updated the Measurements section of README.md"
fi
log "$nmet of $nall targets met; total $(( $(date +%s) - t_start )) s"
