/*
 * scatter_bench — commits that each write one random page of a large store.
 *
 * For each store size S (MiB on the command line, e.g. 4 256 4096) a store
 * is built once whose root reaches S bytes of data written for real: the
 * root is an array of pointers to blocks of at most 16 MiB (tm_store_malloc),
 * each filled in its own transaction, so the file holds S bytes on disk and
 * the page cache holds them (the file is fdatasync'ed before timing, so no
 * writeback of the build competes).  A size is skipped, with the reason,
 * when the disk lacks S + 1 GiB or the memory lacks S + 1 GiB available.
 *
 * Each round, on one CPU (the rounds take turns: bench_util.h, pin_round),
 * then opens every store in turn (the order alternates between rounds),
 * reads every page of its data (so page tables map all of it) and
 * runs transactions that each write 8 bytes at a random page of the whole
 * data: N with TMF_SYNC=none, M with TMF_SYNC=full, continuing (up to 4x)
 * until the handle made a checkpoint (the log's, every 64 MiB of log or when
 * its ring fills), so that the slowest commits include one.  Each transaction is timed
 * whole (tm_begin to the return of tm_commit) and its tm_commit alone:
 * mean, p50, p99 and max per run, then the median over rounds.  The 8
 * bytes always differ from those there: the stores are built once for
 * every tracker's run, and the random sequence starts again in each, so
 * each process salts its values with its pid (without the salt, the second
 * tracker rewrote the first one's values, and its commits were empty).  Ratios of
 * the largest store to the smallest are taken per round (both were measured
 * in that round) and their median printed; so is max/p50 of every run.
 *
 *   scatter_bench [--trackers=protect,uffd] DIR N_NONE N_FULL ROUNDS MIB...
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_tx.h"
#include "tmfalloc.h"

#define MAX_SIZES 4
#define MAX_ROUNDS 32
#define BLOCK ((size_t)16 << 20)
#define PAGE 4096

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

struct root {
    uint64_t size, block, nblocks;
    char *blk[]; /* nblocks blocks of block bytes */
};

static char dir[4096];

static void store_path(char *out, size_t len, size_t mib)
{
    snprintf(out, len, "%s/scatter-%zum.tmf", dir, mib);
}

static tm_store *open_store(size_t mib, tm_sync sync)
{
    char path[4200];
    tm_options o;
    tm_store *st;
    int r;
    store_path(path, sizeof path, mib);
    if ((r = tm_options_from_env(&o)) != 0)
        die("TMF_* environment", tm_strerror(r));
    o.sync = sync;
    o.initial_size = (mib << 20) + (mib << 20) / 32 + ((size_t)4 << 20);
    o.max_size = 2 * o.initial_size + ((size_t)64 << 20);
    if ((r = tm_open(path, &o, &st)) != 0)
        die("tm_open", tm_strerror(r));
    return st;
}

/* Builds the store of mib MiB: 0, or -1 (and a printed reason) to skip it. */
static int build(size_t mib)
{
    char path[4200];
    uint64_t size = (uint64_t)mib << 20, need = size + ((uint64_t)1 << 30);
    uint64_t disk = disk_free(dir), mem = mem_available();
    if (disk < need) {
        printf("skipped %zu MiB: %llu MiB free on %s, %llu MiB needed\n", mib,
               (unsigned long long)(disk >> 20), dir, (unsigned long long)(need >> 20));
        return -1;
    }
    if (mem && mem < need) {
        printf("skipped %zu MiB: %llu MiB of memory available, %llu MiB needed to keep it in the page cache\n",
               mib, (unsigned long long)(mem >> 20), (unsigned long long)(need >> 20));
        return -1;
    }
    store_path(path, sizeof path, mib);
    remove_store(path);
    tm_store *st = open_store(mib, TM_SYNC_NONE);
    size_t block = size < BLOCK ? size : BLOCK, nblocks = size / block;
    struct root *root = tm_store_root(st, sizeof *root + nblocks * sizeof(char *));
    if (!root)
        die("tm_store_root", "failed");
    for (size_t b = 0; b < nblocks; b++) {
        if (tm_store_begin(st) != 0)
            die("tm_store_begin", "failed");
        char *p = tm_store_malloc(st, block);
        if (!p)
            die("tm_store_malloc", "failed");
        for (size_t i = 0; i < block; i += 8)
            *(uint64_t *)(p + i) = i ^ b ^ 0x5555555555555555ull;
        root->blk[b] = p;
        if (b == 0)
            root->size = size, root->block = block, root->nblocks = nblocks;
        int r = tm_store_commit(st);
        if (r != 0)
            die("tm_store_commit", tm_strerror(r));
    }
    tm_close(st);
    int fd = open(path, O_RDONLY);
    if (fd < 0 || fdatasync(fd) != 0)
        die("fdatasync", path);
    close(fd);
    return 0;
}

static void remove_stores(int argc, char **argv)
{
    char path[4200];
    for (int i = 5; i < argc; i++)
        if (atol(argv[i]) > 0) {
            store_path(path, sizeof path, (size_t)atol(argv[i]));
            remove_store(path);
        }
}

struct run {
    struct lat_stats tx, commit;
    long n, checkpoints;
};

static double *t_tx, *t_commit;

static struct run run(size_t mib, tm_sync sync, long n)
{
    tm_store *st = open_store(mib, sync);
    struct root *root = tm_store_root(st, sizeof *root);
    struct run res;
    tm_stats_t a, b;
    long sum = 0, cap = 4 * n, i;
    if (!root || root->size != (uint64_t)mib << 20)
        die("scatter store", "the root is not the one built");
    for (uint64_t k = 0; k < root->nblocks; k++) /* map every page */
        for (uint64_t off = 0; off < root->block; off += PAGE)
            sum += *(volatile char *)(root->blk[k] + off);
    (void)sum;
    uint64_t pages = root->size / PAGE, per_block = root->block / PAGE;
    uint64_t salt = (uint64_t)getpid() << 32; /* this process's values (see the top of the file) */
    tm_store_stats(st, &a);
    b = a;
    for (i = 0; i < cap; i++) {
        if (i >= n && (i % 256) == 0) { /* enough commits: and a checkpoint? */
            tm_store_stats(st, &b);
            if (b.checkpoints > a.checkpoints)
                break;
        }
        uint64_t x = next(), pg = x % pages;
        char *p = root->blk[pg / per_block] + (pg % per_block) * PAGE + ((x >> 40) % (PAGE / 8)) * 8;
        double t0 = now();
        tm_store_begin(st);
        *(volatile uint64_t *)p = x ^ salt;
        double t1 = now();
        int r = tm_store_commit(st);
        double t2 = now();
        if (r != 0)
            die("tm_store_commit", tm_strerror(r));
        t_tx[i] = (t2 - t0) * 1e6;
        t_commit[i] = (t2 - t1) * 1e6;
    }
    tm_store_stats(st, &b);
    if (b.tx_commits - a.tx_commits != (uint64_t)i)
        die("scatter_bench", "a transaction changed nothing: its commit was empty");
    res.n = i;
    res.checkpoints = (long)(b.checkpoints - a.checkpoints);
    res.tx = lat_stats(t_tx, i);
    res.commit = lat_stats(t_commit, i);
    tm_close(st);
    return res;
}

/* Every figure of one (size, sync) pair, per round. */
struct series {
    double tx[4][MAX_ROUNDS], commit[4][MAX_ROUNDS], n[MAX_ROUNDS], ckpt[MAX_ROUNDS];
};

static double stat_of(struct lat_stats s, int k)
{
    return k == 0 ? s.mean : k == 1 ? s.p50 : k == 2 ? s.p99 : s.max;
}

int main(int argc, char **argv)
{
    char *trackers = tracker_option(&argc, argv);
    if (argc < 6) {
        fprintf(stderr, "usage: scatter_bench [--trackers=A,B] DIR N_NONE N_FULL ROUNDS MIB...\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    long n_none = atol(argv[2]), n_full = atol(argv[3]), n_of[2];
    n_of[TM_SYNC_NONE] = n_none, n_of[TM_SYNC_FULL] = n_full;
    int rounds = atoi(argv[4]), nsizes = 0;
    size_t mib[MAX_SIZES];
    if (rounds > MAX_ROUNDS)
        rounds = MAX_ROUNDS;
    if (rounds < 1 || n_none < 1 || n_full < 1)
        die("arguments", "N_NONE, N_FULL and ROUNDS must be positive");
    /* The stores are built once, here, and shared by the runs per tracker. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    int built_here = !getenv("SCATTER_BUILT");
    if (built_here) {
        for (int i = 5; i < argc && nsizes < MAX_SIZES; i++) {
            size_t m = (size_t)atol(argv[i]);
            double t = now();
            if (m < 1)
                die("arguments", "a size must be at least 1 MiB");
            if (build(m) == 0)
                printf("built the %zu MiB store in %.1f s\n", m, now() - t);
            else
                argv[i] = "0"; /* skipped: the runs per tracker skip it too */
        }
        setenv("SCATTER_BUILT", "1", 1);
    }
    if (trackers) {
        int r = tracker_run_all(trackers, argv);
        remove_stores(argc, argv);
        return r;
    }
    for (int i = 5; i < argc && nsizes < MAX_SIZES; i++)
        if (atol(argv[i]) > 0)
            mib[nsizes++] = (size_t)atol(argv[i]);
    if (nsizes == 0)
        die("scatter_bench", "every size was skipped");

    const char *trk = tracker();
    print_tracker();
    long cap = 4 * (n_none > n_full ? n_none : n_full);
    t_tx = malloc((size_t)cap * sizeof *t_tx);
    t_commit = malloc((size_t)cap * sizeof *t_commit);
    static struct series ser[MAX_SIZES][2];
    for (int k = 0; k < rounds; k++) {
        pin_round(k);
        for (int j = 0; j < nsizes; j++) {
            int s = k % 2 ? nsizes - 1 - j : j;
            for (int y = 0; y < 2; y++) {
                tm_sync sync = (k + j + y) % 2 ? TM_SYNC_FULL : TM_SYNC_NONE;
                struct run r = run(mib[s], sync, n_of[sync]);
                struct series *e = &ser[s][sync];
                for (int q = 0; q < 4; q++)
                    e->tx[q][k] = stat_of(r.tx, q), e->commit[q][k] = stat_of(r.commit, q);
                e->n[k] = (double)r.n, e->ckpt[k] = (double)r.checkpoints;
            }
        }
    }

    static const char *qn[4] = {"mean", "p50", "p99", "max"};
    static const char *syn[2] = {"full", "none"};
    printf("one 8-byte write at a random page of the whole store per transaction; µs, median of %d rounds\n",
           rounds);
    printf("%-9s %-5s %7s %5s | %8s %8s %8s %9s %7s | %8s %8s %8s %9s\n", "store", "sync", "tx/run", "ckpts",
           "tx mean", "p50", "p99", "max", "max/p50", "commit", "p50", "p99", "max");
    for (int s = 0; s < nsizes; s++)
        for (int y = 1; y >= 0; y--) {
            struct series *e = &ser[s][y];
            double tq[4], cq[4], mm[MAX_ROUNDS];
            for (int q = 0; q < 4; q++)
                tq[q] = median_of(e->tx[q], rounds), cq[q] = median_of(e->commit[q], rounds);
            for (int k = 0; k < rounds; k++)
                mm[k] = e->tx[3][k] / e->tx[1][k];
            double mmed = median_of(mm, rounds), cmm[MAX_ROUNDS];
            for (int k = 0; k < rounds; k++)
                cmm[k] = e->commit[3][k] / e->commit[1][k];
            printf("%6zu MiB %-5s %7.0f %5.0f | %8.2f %8.2f %8.2f %9.1f %7.1f | %8.2f %8.2f %8.2f %9.1f\n", mib[s],
                   syn[y], median_of(e->n, rounds), median_of(e->ckpt, rounds), tq[0], tq[1], tq[2], tq[3], mmed,
                   cq[0], cq[1], cq[2], cq[3]);
            for (int q = 0; q < 4; q++)
                printf("RESULT scatter_%s_%zum_%s_tx_%s_us=%.3f\nRESULT scatter_%s_%zum_%s_commit_%s_us=%.3f\n", trk,
                       mib[s], syn[y], qn[q], tq[q], trk, mib[s], syn[y], qn[q], cq[q]);
            printf("RESULT scatter_%s_%zum_%s_tx_maxp50=%.3f\nRESULT scatter_%s_%zum_%s_commit_maxp50=%.3f\n", trk,
                   mib[s], syn[y], mmed, trk, mib[s], syn[y], median_of(cmm, rounds));
            printf("RESULT scatter_%s_%zum_%s_n=%.0f\nRESULT scatter_%s_%zum_%s_checkpoints=%.0f\n", trk, mib[s],
                   syn[y], median_of(e->n, rounds), trk, mib[s], syn[y], median_of(e->ckpt, rounds));
        }

    /* Largest store / smallest, per round, then the median. */
    int big = nsizes - 1;
    printf("\nlargest (%zu MiB) / smallest (%zu MiB) store, median of the per-round ratios:\n", mib[big], mib[0]);
    printf("%-5s %10s %10s %12s %12s %14s %14s\n", "sync", "tx mean", "tx p99", "commit mean", "commit p99",
           "worst tx max/p50", "worst commit");
    double ratio[2][4];
    for (int y = 1; y >= 0; y--) {
        double v[4][MAX_ROUNDS], worst_tx = 0, worst_c = 0;
        for (int k = 0; k < rounds; k++) {
            v[0][k] = ser[big][y].tx[0][k] / ser[0][y].tx[0][k];
            v[1][k] = ser[big][y].tx[2][k] / ser[0][y].tx[2][k];
            v[2][k] = ser[big][y].commit[0][k] / ser[0][y].commit[0][k];
            v[3][k] = ser[big][y].commit[2][k] / ser[0][y].commit[2][k];
            for (int s = 0; s < nsizes; s++) {
                double a = ser[s][y].tx[3][k] / ser[s][y].tx[1][k];
                double c = ser[s][y].commit[3][k] / ser[s][y].commit[1][k];
                worst_tx = a > worst_tx ? a : worst_tx;
                worst_c = c > worst_c ? c : worst_c;
            }
        }
        for (int q = 0; q < 4; q++)
            ratio[y][q] = median_of(v[q], rounds);
        printf("%-5s %10.3f %10.3f %12.3f %12.3f %14.1f %14.1f\n", syn[y], ratio[y][0], ratio[y][1], ratio[y][2],
               ratio[y][3], worst_tx, worst_c);
        printf("RESULT scatter_%s_%s_tx_mean_ratio=%.4f\nRESULT scatter_%s_%s_tx_p99_ratio=%.4f\n", trk, syn[y],
               ratio[y][0], trk, syn[y], ratio[y][1]);
        printf("RESULT scatter_%s_%s_commit_mean_ratio=%.4f\nRESULT scatter_%s_%s_commit_p99_ratio=%.4f\n", trk,
               syn[y], ratio[y][2], trk, syn[y], ratio[y][3]);
        printf("RESULT scatter_%s_%s_worst_tx_maxp50=%.3f\nRESULT scatter_%s_%s_worst_commit_maxp50=%.3f\n", trk,
               syn[y], worst_tx, trk, syn[y], worst_c);
    }
    printf("\n");
    char name[128], what[128];
    static const char *tq_name[2] = {"mean", "p99"};
    for (int y = 1; y >= 0; y--)
        for (int q = 0; q < 2; q++) {
            snprintf(name, sizeof name, "scatter_%s_%s_target_%s", trk, syn[y], tq_name[q]);
            snprintf(what, sizeof what, "%s: tx %s, %zu MiB / %zu MiB store, TMF_SYNC=%s", trk, tq_name[q],
                     mib[big], mib[0], syn[y]);
            target(name, what, ratio[y][q], "<=", 1.2);
        }
    {
        double mm[MAX_ROUNDS];
        for (int k = 0; k < rounds; k++)
            mm[k] = ser[big][TM_SYNC_NONE].tx[3][k] / ser[big][TM_SYNC_NONE].tx[1][k];
        snprintf(name, sizeof name, "scatter_%s_none_target_maxp50", trk);
        snprintf(what, sizeof what, "%s: max tx / median tx, %zu MiB store, TMF_SYNC=none", trk, mib[big]);
        target(name, what, median_of(mm, rounds), "<=", 10);
    }
    printf("RESULT scatter_%s_rounds=%d\nRESULT scatter_%s_large_mib=%zu\nRESULT scatter_%s_small_mib=%zu\n", trk,
           rounds, trk, mib[big], trk, mib[0]);
    printf("RESULT scatter_%s_n_none=%ld\nRESULT scatter_%s_n_full=%ld\n", trk, n_none, trk, n_full);
    if (built_here)
        remove_stores(argc, argv);
    return 0;
}
