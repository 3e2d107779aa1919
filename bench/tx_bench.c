/*
 * tx_bench — small transactions: tmfalloc against LMDB and the disk's limit.
 *
 * Two workloads, each transaction changing one thing:
 *   update  one random 64-byte record of 10,000 (an array in the root; an
 *           LMDB database of 10,000 keys);
 *   insert  one new key with a 64-byte value (a chained hash table built
 *           with tm_store_malloc; mdb_put of a new key).
 * Durable: TMF_SYNC=full against LMDB's defaults, beside a bare loop of one
 * 4 KiB pwrite + fdatasync (the physical limit).  Non-durable: TMF_SYNC=none
 * against LMDB with MDB_NOSYNC.  fdatasync/fsync/msync calls are counted by
 * wrapping them in this executable (linked with --export-dynamic, so LMDB's
 * calls come here too).  Every figure is a median over ROUNDS rounds that
 * each run every system once, side by side (odd rounds in reverse order),
 * on one CPU (the rounds take turns: bench_util.h, pin_round); each ratio
 * is the median of the rounds' ratios.
 *
 * With --trackers=A,B the whole run is repeated once per tracker, in a child
 * with TMF_TRACK set, and the results are named tx_A_..., tx_B_...; without
 * it, the results are named tx_... whatever TMF_TRACK says.
 *
 *   tx_bench [--trackers=protect,uffd] DIR [TRANSACTIONS] [ROUNDS]
 */
#include <dirent.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bench_lmdb.h"
#include "bench_tx.h"
#include "tmfalloc.h"

/* ---- counting the syncs of everyone in this process ---- */

static long n_syncs;

int fdatasync(int fd)
{
    n_syncs++;
    return (int)syscall(SYS_fdatasync, fd);
}

int fsync(int fd)
{
    n_syncs++;
    return (int)syscall(SYS_fsync, fd);
}

int msync(void *addr, size_t len, int flags)
{
    n_syncs++;
    return (int)syscall(SYS_msync, addr, len, flags);
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint64_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

static char dir[4096];

static void clean(void)
{
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/run'; mkdir -p '%s/run'", dir, dir);
    if (system(cmd) != 0)
        die("clean", dir);
}

struct result {
    double tps, syncs;
};

#define NREC 10000

/* ---- tmfalloc ---- */

struct node {
    struct node *next;
    uint64_t key;
    char value[64];
};

struct root {
    char rec[NREC][64];
    struct node *bucket[16384];
};

static struct result tmf_run(int insert, tm_sync sync, int n)
{
    char path[4200];
    tm_options o;
    tm_store *st;
    struct result res;
    int r;
    snprintf(path, sizeof path, "%s/run/bench.tmf", dir);
    if ((r = tm_options_from_env(&o)) != 0) /* TMF_TRACK and the like reach the store */
        die("TMF_* environment", tm_strerror(r));
    o.sync = sync;
    o.max_size = (size_t)4 << 30;
    if ((r = tm_open(path, &o, &st)) != 0)
        die("tm_open", tm_strerror(r));
    struct root *root = tm_store_root(st, sizeof *root);
    if (!root)
        die("tm_store_root", "failed");
    long s0 = n_syncs;
    double t = now();
    for (int i = 0; i < n; i++) {
        tm_store_begin(st);
        if (insert) {
            uint64_t key = next();
            struct node *nd = tm_store_malloc(st, sizeof *nd);
            nd->key = key;
            memset(nd->value, (int)key, sizeof nd->value);
            nd->next = root->bucket[key % 16384];
            root->bucket[key % 16384] = nd;
        } else {
            memset(root->rec[next() % NREC], i, 64);
        }
        if ((r = tm_store_commit(st)) != 0)
            die("tm_store_commit", tm_strerror(r));
    }
    t = now() - t;
    res.tps = n / t;
    res.syncs = (double)(n_syncs - s0) / n;
    tm_close(st);
    return res;
}

/* ---- LMDB ---- */

/* Nonzero when this process has a descriptor on path open with O_DSYNC:
 * LMDB's meta-page descriptor (me_mfd), whose writes are synchronous and
 * therefore a second sync per commit that the wrappers above cannot count. */
static int dsync_fd_on(const char *path)
{
    char link[300], target[4200], info[300], line[256];
    struct dirent *e;
    DIR *d = opendir("/proc/self/fd");
    int found = 0;
    while (d && (e = readdir(d)) != NULL) {
        ssize_t len;
        FILE *f;
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        if ((len = readlink(link, target, sizeof target - 1)) < 0)
            continue;
        target[len] = 0;
        if (strcmp(target, path) != 0)
            continue;
        snprintf(info, sizeof info, "/proc/self/fdinfo/%s", e->d_name);
        if ((f = fopen(info, "r")) == NULL)
            continue;
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "flags:", 6) == 0 && (strtoul(line + 6, NULL, 8) & O_DSYNC))
                found = 1;
        fclose(f);
    }
    if (d)
        closedir(d);
    return found;
}

static int lmdb_dsync = -1; /* seen an O_DSYNC descriptor on data.mdb? */

static struct result lmdb_run(int insert, int nosync, int n)
{
    char path[4200];
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn;
    MDB_val k, v;
    char val[64];
    uint64_t key;
    struct result res;
    snprintf(path, sizeof path, "%s/run", dir);
    env = lmdb_open(path, (size_t)4 << 30, nosync ? MDB_NOSYNC : 0, 0, &txn, &dbi);
    if (!nosync && lmdb_dsync < 0) {
        char data[4300], real[PATH_MAX];
        snprintf(data, sizeof data, "%s/data.mdb", path);
        lmdb_dsync = realpath(data, real) ? dsync_fd_on(real) : 0;
    }
    if (!insert) /* the 10,000 records, in the first transaction */
        lmdb_fill(txn, dbi, NREC, sizeof val);
    CHECK(mdb_txn_commit(txn));
    long s0 = n_syncs;
    double t = now();
    for (int i = 0; i < n; i++) {
        key = insert ? next() : next() % NREC;
        memset(val, i, sizeof val);
        k.mv_size = sizeof key, k.mv_data = &key;
        v.mv_size = sizeof val, v.mv_data = val;
        CHECK(mdb_txn_begin(env, NULL, 0, &txn));
        CHECK(mdb_put(txn, dbi, &k, &v, 0));
        CHECK(mdb_txn_commit(txn));
    }
    t = now() - t;
    res.tps = n / t;
    res.syncs = (double)(n_syncs - s0) / n;
    mdb_env_close(env);
    return res;
}

/* ---- the limit: one 4 KiB block rewritten and synced ---- */

static struct result raw_run(int n)
{
    char path[4200], buf[4096];
    struct result res;
    int fd;
    snprintf(path, sizeof path, "%s/run/raw.bin", dir);
    if ((fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)) < 0)
        die("open", path);
    memset(buf, 1, sizeof buf);
    for (int i = 0; i < 256; i++)
        if (pwrite(fd, buf, sizeof buf, (off_t)i * 4096) != (ssize_t)sizeof buf)
            die("pwrite", path);
    fdatasync(fd);
    long s0 = n_syncs;
    double t = now();
    for (int i = 0; i < n; i++) {
        buf[0] = (char)i;
        if (pwrite(fd, buf, sizeof buf, (off_t)(i % 256) * 4096) != (ssize_t)sizeof buf)
            die("pwrite", path);
        fdatasync(fd);
    }
    t = now() - t;
    close(fd);
    res.tps = n / t;
    res.syncs = (double)(n_syncs - s0) / n;
    return res;
}

enum { TMF_FULL, LMDB_SYNC, RAW, TMF_NONE, LMDB_NOSYNC, NSYS };
static const char *names[NSYS] = {"tmfalloc TMF_SYNC=full", "LMDB (default, durable)",
                                  "pwrite 4 KiB + fdatasync", "tmfalloc TMF_SYNC=none",
                                  "LMDB MDB_NOSYNC"};

static struct result run_system(int s, int w, int n)
{
    clean();
    switch (s) {
    case TMF_FULL: return tmf_run(w, TM_SYNC_FULL, n);
    case LMDB_SYNC: return lmdb_run(w, 0, n);
    case RAW: return raw_run(n);
    case TMF_NONE: return tmf_run(w, TM_SYNC_NONE, n * 10);
    default: return lmdb_run(w, 1, n * 10);
    }
}

int main(int argc, char **argv)
{
    char *trackers = tracker_option(&argc, argv);
    if (trackers)
        return tracker_run_all(trackers, argv);
    int n = argc > 2 ? atoi(argv[2]) : 1000, rounds = argc > 3 ? atoi(argv[3]) : 5;
    double tps[2][NSYS][32], syncs[2][NSYS][32];
    char rp[64]; /* the results' prefix */
    snprintf(dir, sizeof dir, "%s", argc > 1 ? argv[1] : ".");
    if (getenv("TMF_TRACK"))
        snprintf(rp, sizeof rp, "tx_%s", tracker());
    else
        snprintf(rp, sizeof rp, "tx");
    if (rounds > 32)
        rounds = 32;
    print_tracker();
    for (int k = 0; k < rounds; k++) {
        pin_round(k);
        for (int w = 0; w < 2; w++) {
            for (int j = 0; j < NSYS; j++) {
                int s = k % 2 ? NSYS - 1 - j : j;
                struct result r = run_system(s, w, n);
                tps[w][s][k] = r.tps, syncs[w][s][k] = r.syncs;
            }
        }
    }
    clean();
    printf("small transactions, %d durable / %d non-durable per round, median of %d rounds\n", n, n * 10,
           rounds);
    double ratio[2][3];
    for (int w = 0; w < 2; w++) {
        double m[NSYS], y[NSYS];
        ratio[w][0] = median_ratio(tps[w][TMF_NONE], tps[w][LMDB_NOSYNC], rounds); /* before median() sorts */
        ratio[w][1] = median_ratio(tps[w][TMF_FULL], tps[w][RAW], rounds);
        ratio[w][2] = median_ratio(tps[w][TMF_FULL], tps[w][LMDB_SYNC], rounds);
        for (int s = 0; s < NSYS; s++)
            m[s] = median(tps[w][s], rounds), y[s] = median(syncs[w][s], rounds);
        printf("\n%s one %s per transaction:\n", w ? "insert" : "update", w ? "new key" : "record");
        printf("  %-28s %12s %16s\n", "system", "tx/s", "syncs per commit");
        for (int s = 0; s < NSYS; s++)
            printf("  %-28s %12.0f %16.3f\n", names[s], m[s], y[s]);
        printf("  durable: tmfalloc / LMDB = %.2f, tmfalloc / limit = %.2f\n", ratio[w][2], ratio[w][1]);
        printf("  non-durable: tmfalloc / LMDB NOSYNC = %.2f\n", ratio[w][0]);
        const char *wn = w ? "insert" : "update";
        static const char *key[NSYS] = {"tmf_full", "lmdb", "raw", "tmf_none", "lmdb_nosync"};
        for (int s = 0; s < NSYS; s++)
            printf("RESULT %s_%s_%s_tps=%.1f\nRESULT %s_%s_%s_syncs=%.4f\n", rp, wn, key[s], m[s], rp, wn, key[s],
                   y[s]);
        printf("RESULT %s_%s_durable_ratio=%.4f\n", rp, wn, ratio[w][2]);
        printf("RESULT %s_%s_limit_ratio=%.4f\n", rp, wn, ratio[w][1]);
        printf("RESULT %s_%s_nondurable_ratio=%.4f\n", rp, wn, ratio[w][0]);
    }
    /* The targets of the transaction mechanism, each with its verdict. */
    printf("\n");
    char name[96], what[128];
    static const char *tk[3] = {"nosync_lmdb", "durable_limit", "durable_lmdb"};
    static const char *tw[3] = {"TMF_SYNC=none tx/s / LMDB MDB_NOSYNC", "durable tx/s / pwrite+fdatasync",
                                "durable tx/s / LMDB defaults"};
    static const double goal[2][3] = {{0.5, 0.9, 2}, {0.4, 0.9, 2}};
    for (int w = 0; w < 2; w++)
        for (int q = 0; q < 3; q++) {
            snprintf(name, sizeof name, "%s_target_%s_%s", rp, w ? "insert" : "update", tk[q]);
            snprintf(what, sizeof what, "%s: %s, %s", tracker(), tw[q], w ? "insert" : "update");
            target(name, what, ratio[w][q], ">=", goal[w][q]);
        }
    printf("\nLMDB's data.mdb has an O_DSYNC descriptor open (its meta-page writes sync, uncounted): %s\n",
           lmdb_dsync > 0 ? "yes" : "no");
    printf("RESULT %s_rounds=%d\nRESULT %s_durable_n=%d\nRESULT %s_nondurable_n=%d\n", rp, rounds, rp, n, rp,
           n * 10);
    printf("RESULT %s_lmdb_dsync_fd=%d\n", rp, lmdb_dsync > 0);
    return 0;
}
