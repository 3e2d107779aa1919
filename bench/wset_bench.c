/*
 * wset_bench — a working set that repeats: each transaction increments a
 * counter and rewrites one random 64-byte record of 10,000.
 *
 *   tmfalloc  the counter and the record array in the root, TMF_SYNC=none;
 *             stores whose arena is SIZE MiB (sparse, every page read once,
 *             so the whole arena is mapped), one per size on the command
 *             line: a tracker that scans the arena pays for its size;
 *   LMDB      MDB_NOSYNC; the counter under one key and the records under
 *             10,000 others; one write transaction gets the counter, puts
 *             it back incremented and puts the record;
 *   memory    the same stores into malloc'ed memory: the floor.
 * Each system first runs N/10 transactions untimed (the working set's pages
 * are then hot), then N timed.  Rounds alternate the order of the systems
 * and run on one CPU each (they take turns: bench_util.h, pin_round);
 * every figure is a median.  Minor page faults per tmfalloc transaction
 * (getrusage) are printed beside its time.
 *
 *   wset_bench [--trackers=protect,uffd] DIR N ROUNDS MIB...
 */
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_lmdb.h"
#include "bench_tx.h"
#include "tmfalloc.h"

#define NREC 10000
#define MAX_SIZES 4
#define MAX_ROUNDS 32

struct data {
    uint64_t counter;
    char rec[NREC][64];
};

static char dir[4096];
static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint64_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

/* Empties DIR/wset; removes it when last. */
static void clean(int last)
{
    char cmd[8300];
    if (last)
        snprintf(cmd, sizeof cmd, "rm -rf '%s/wset'", dir);
    else
        snprintf(cmd, sizeof cmd, "rm -rf '%s/wset'; mkdir -p '%s/wset'", dir, dir);
    if (system(cmd) != 0)
        die("clean", dir);
}

struct result {
    double us, faults;
};

static struct result tmf_run(size_t mib, long n)
{
    char path[4200];
    tm_options o;
    tm_store *st;
    int r;
    snprintf(path, sizeof path, "%s/wset/wset.tmf", dir);
    if ((r = tm_options_from_env(&o)) != 0)
        die("TMF_* environment", tm_strerror(r));
    o.sync = TM_SYNC_NONE;
    o.initial_size = mib << 20;
    o.max_size = 2 * o.initial_size + ((size_t)64 << 20);
    if ((r = tm_open(path, &o, &st)) != 0)
        die("tm_open", tm_strerror(r));
    struct data *d = tm_store_root(st, sizeof *d);
    if (!d)
        die("tm_store_root", "failed");
    tm_stats_t s;
    tm_store_stats(st, &s);
    long sum = 0;
    for (uint64_t off = 0; off < s.arena_size; off += 4096) /* map the arena */
        sum += *((volatile char *)tm_store_base(st) + off);
    (void)sum;
    char val[64];
    long warm = n / 10, f0 = 0;
    double t = 0;
    for (long i = 0; i < warm + n; i++) {
        if (i == warm)
            f0 = minor_faults(), t = now();
        memset(val, (int)i, sizeof val);
        if ((r = tm_store_begin(st)) != 0)
            die("tm_store_begin", tm_strerror(r));
        d->counter++;
        memcpy(d->rec[next() % NREC], val, sizeof val);
        if ((r = tm_store_commit(st)) != 0)
            die("tm_store_commit", tm_strerror(r));
    }
    struct result res = {(now() - t) * 1e6 / n, (double)(minor_faults() - f0) / n};
    tm_close(st);
    remove_store(path);
    return res;
}

static struct result lmdb_run(long n)
{
    char path[4200], val[64];
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn;
    MDB_val k, v;
    uint64_t key, counter_key = UINT64_MAX, c;
    snprintf(path, sizeof path, "%s/wset", dir);
    env = lmdb_open(path, (size_t)1 << 30, MDB_NOSYNC, 0, &txn, &dbi);
    lmdb_fill(txn, dbi, NREC, sizeof val);
    c = 0;
    k.mv_size = sizeof counter_key, k.mv_data = &counter_key;
    v.mv_size = sizeof c, v.mv_data = &c;
    CHECK(mdb_put(txn, dbi, &k, &v, 0));
    CHECK(mdb_txn_commit(txn));
    long warm = n / 10;
    double t = 0;
    for (long i = 0; i < warm + n; i++) {
        if (i == warm)
            t = now();
        memset(val, (int)i, sizeof val);
        CHECK(mdb_txn_begin(env, NULL, 0, &txn));
        k.mv_size = sizeof counter_key, k.mv_data = &counter_key;
        CHECK(mdb_get(txn, dbi, &k, &v));
        memcpy(&c, v.mv_data, sizeof c);
        c++;
        v.mv_size = sizeof c, v.mv_data = &c;
        CHECK(mdb_put(txn, dbi, &k, &v, 0));
        key = next() % NREC;
        k.mv_size = sizeof key, k.mv_data = &key;
        v.mv_size = sizeof val, v.mv_data = val;
        CHECK(mdb_put(txn, dbi, &k, &v, 0));
        CHECK(mdb_txn_commit(txn));
    }
    struct result res = {(now() - t) * 1e6 / n, 0};
    mdb_env_close(env);
    return res;
}

static struct result mem_run(long n)
{
    struct data *d = calloc(1, sizeof *d);
    char val[64];
    long warm = n / 10;
    double t = 0;
    if (!d)
        die("calloc", "failed");
    for (long i = 0; i < warm + n; i++) {
        if (i == warm)
            t = now();
        memset(val, (int)i, sizeof val);
        ((volatile struct data *)d)->counter++;
        memcpy(d->rec[next() % NREC], val, sizeof val);
        __asm__ volatile("" ::: "memory"); /* the stores happen, as in a transaction */
    }
    struct result res = {(now() - t) * 1e6 / n, 0};
    free(d);
    return res;
}

int main(int argc, char **argv)
{
    char *trackers = tracker_option(&argc, argv);
    if (argc < 5) {
        fprintf(stderr, "usage: wset_bench [--trackers=A,B] DIR N ROUNDS MIB...\n");
        return 2;
    }
    if (trackers)
        return tracker_run_all(trackers, argv);
    snprintf(dir, sizeof dir, "%s", argv[1]);
    long n = atol(argv[2]);
    int rounds = atoi(argv[3]), nsizes = 0;
    size_t mib[MAX_SIZES];
    for (int i = 4; i < argc && nsizes < MAX_SIZES; i++)
        mib[nsizes++] = (size_t)atol(argv[i]);
    if (rounds > MAX_ROUNDS)
        rounds = MAX_ROUNDS;
    if (n < 10 || rounds < 1 || mib[0] < 4)
        die("arguments", "N >= 10, ROUNDS >= 1, sizes of 4 MiB or more");
    const char *trk = tracker();
    print_tracker();

    /* systems: 0..nsizes-1 tmfalloc per size, then LMDB, then memory */
    int nsys = nsizes + 2;
    static double us[MAX_SIZES + 2][MAX_ROUNDS], flt[MAX_SIZES][MAX_ROUNDS];
    for (int k = 0; k < rounds; k++) {
        pin_round(k);
        for (int j = 0; j < nsys; j++) {
            int s = k % 2 ? nsys - 1 - j : j;
            struct result r;
            clean(0);
            if (s < nsizes)
                r = tmf_run(mib[s], n), flt[s][k] = r.faults;
            else if (s == nsizes)
                r = lmdb_run(n);
            else
                r = mem_run(n);
            us[s][k] = r.us;
        }
    }
    clean(1);

    double lm = median_of(us[nsizes], rounds), mem = median_of(us[nsizes + 1], rounds);
    printf("counter + one random 64-byte record of %d per transaction, %ld per round (after %ld untimed), "
           "median of %d rounds\n",
           NREC, n, n / 10, rounds);
    printf("%-32s %12s %14s %16s\n", "system", "µs per tx", "faults per tx", "tx/s vs LMDB");
    for (int s = 0; s < nsizes; s++) {
        double ratio[MAX_ROUNDS], u = median_of(us[s], rounds);
        for (int k = 0; k < rounds; k++)
            ratio[k] = us[nsizes][k] / us[s][k];
        char name[64];
        snprintf(name, sizeof name, "tmfalloc, %zu MiB arena", mib[s]);
        printf("%-32s %12.3f %14.2f %16.3f\n", name, u, median_of(flt[s], rounds), median_of(ratio, rounds));
        printf("RESULT wset_%s_%zum_us=%.4f\nRESULT wset_%s_%zum_faults=%.3f\nRESULT wset_%s_%zum_lmdb_ratio=%.4f\n",
               trk, mib[s], u, trk, mib[s], median_of(flt[s], rounds), trk, mib[s], median_of(ratio, rounds));
    }
    printf("%-32s %12.3f %14s %16.3f\n", "LMDB MDB_NOSYNC", lm, "", 1.0);
    printf("%-32s %12.3f %14s %16.1f\n", "plain memory (the floor)", mem, "", lm / mem);
    printf("(tx/s vs LMDB is LMDB's µs per tx over the system's, per round; no target)\n");
    printf("RESULT wset_%s_lmdb_us=%.4f\nRESULT wset_%s_mem_us=%.5f\n", trk, lm, trk, mem);
    printf("RESULT wset_%s_rounds=%d\nRESULT wset_%s_n=%ld\nRESULT wset_%s_small_mib=%zu\nRESULT wset_%s_large_mib=%zu\n",
           trk, rounds, trk, n, trk, mib[0], trk, mib[nsizes - 1]);
    return 0;
}
