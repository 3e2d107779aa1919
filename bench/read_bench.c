/*
 * read_bench — the cost of a read transaction that reads one word.
 *
 *   tmfalloc      tm_read_begin(); one word of the root; tm_read_end() (the
 *                 default store, TMF_PATH=DIR/read.tmf, TMF_SYNC=none);
 *   LMDB begin    mdb_txn_begin(MDB_RDONLY); one mdb_get; mdb_txn_abort;
 *   LMDB renew    LMDB's fast way: a read transaction made once per thread,
 *                 then mdb_txn_renew; one mdb_get; mdb_txn_reset.
 * Each is run by one thread, then by THREADS threads at once (default: one
 * per core), each doing N read transactions after a barrier.  Per-thread ns
 * is a thread's own time over its N; aggregate ns is the wall time over all
 * transactions of all threads.  Rounds alternate the order of the systems;
 * every figure is a median over rounds (of the mean over threads).
 *
 *   read_bench [--trackers=protect,uffd] DIR N ROUNDS [THREADS]
 */
#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_lmdb.h"
#include "bench_tx.h"
#include "tmfalloc.h"

#define MAX_ROUNDS 32
#define MAX_THREADS 64

enum { TMF, LMDB_BEGIN, LMDB_RENEW, NSYS };
static const char *sys_name[NSYS] = {"tmfalloc read tx", "LMDB begin/get/abort", "LMDB renew/get/reset"};
static const char *sys_key[NSYS] = {"tmf", "lmdb", "lmdb_renew"};

static volatile uint64_t *word; /* the root's word */
static MDB_env *env;
static MDB_dbi dbi;
static long n_reads;
static pthread_barrier_t barrier;

struct thr {
    int sys;
    double t; /* seconds for this thread's n_reads */
    uint64_t sum;
};

static void reads(struct thr *th)
{
    uint64_t key = 1, sum = 0;
    MDB_val k = {sizeof key, &key}, v;
    MDB_txn *txn = NULL;
    int r;
    if (th->sys == LMDB_RENEW) {
        CHECK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
        mdb_txn_reset(txn);
    }
    double t = now();
    for (long i = 0; i < n_reads; i++) {
        switch (th->sys) {
        case TMF:
            if ((r = tm_read_begin()) != 0)
                die("tm_read_begin", tm_strerror(r));
            sum += *word;
            if ((r = tm_read_end()) != 0)
                die("tm_read_end", tm_strerror(r));
            break;
        case LMDB_BEGIN:
            CHECK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
            CHECK(mdb_get(txn, dbi, &k, &v));
            sum += *(const uint64_t *)v.mv_data;
            mdb_txn_abort(txn);
            break;
        default:
            CHECK(mdb_txn_renew(txn));
            CHECK(mdb_get(txn, dbi, &k, &v));
            sum += *(const uint64_t *)v.mv_data;
            mdb_txn_reset(txn);
        }
    }
    th->t = now() - t;
    th->sum = sum;
    if (txn && th->sys == LMDB_RENEW)
        mdb_txn_abort(txn);
}

static void *thread_main(void *arg)
{
    pthread_barrier_wait(&barrier);
    reads(arg);
    return NULL;
}

/* ns per read transaction: *per_thread (mean over threads), and the
 * aggregate (wall time over every transaction). */
static void run(int sys, int threads, double *per_thread, double *aggregate)
{
    struct thr th[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    if (threads == 1) {
        th[0].sys = sys;
        reads(&th[0]);
        *per_thread = *aggregate = th[0].t * 1e9 / n_reads;
        return;
    }
    pthread_barrier_init(&barrier, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) {
        th[i].sys = sys;
        if (pthread_create(&tid[i], NULL, thread_main, &th[i]) != 0)
            die("pthread_create", "failed");
    }
    pthread_barrier_wait(&barrier);
    double t = now(), sum = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tid[i], NULL);
        sum += th[i].t;
    }
    t = now() - t;
    pthread_barrier_destroy(&barrier);
    *per_thread = sum / threads * 1e9 / n_reads;
    *aggregate = t * 1e9 / ((double)n_reads * threads);
}

static void setup(const char *dir)
{
    char path[4200];
    uint64_t key = 1, val = 42;
    MDB_txn *txn;
    MDB_val k = {sizeof key, &key}, v = {sizeof val, &val};
    int r;
    snprintf(path, sizeof path, "rm -rf '%s/read'; mkdir -p '%s/read'", dir, dir);
    if (system(path) != 0)
        die("mkdir", dir);
    snprintf(path, sizeof path, "%s/read/read.tmf", dir);
    setenv("TMF_PATH", path, 1);
    setenv("TMF_SYNC", "none", 1);
    if ((r = tm_begin()) != 0)
        die("tm_begin", tm_strerror(r));
    word = tm_root(sizeof(uint64_t));
    if (!word)
        die("tm_root", "failed");
    *word = val;
    if ((r = tm_commit()) != 0)
        die("tm_commit", tm_strerror(r));
    snprintf(path, sizeof path, "%s/read", dir);
    env = lmdb_open(path, (size_t)64 << 20, MDB_NOSYNC, 2 * MAX_THREADS + 2, &txn, &dbi);
    CHECK(mdb_put(txn, dbi, &k, &v, 0));
    CHECK(mdb_txn_commit(txn));
}

int main(int argc, char **argv)
{
    char *trackers = tracker_option(&argc, argv);
    if (argc < 4) {
        fprintf(stderr, "usage: read_bench [--trackers=A,B] DIR N ROUNDS [THREADS]\n");
        return 2;
    }
    if (trackers)
        return tracker_run_all(trackers, argv);
    const char *dir = argv[1];
    n_reads = atol(argv[2]);
    int rounds = atoi(argv[3]), threads = argc > 4 ? atoi(argv[4]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (rounds > MAX_ROUNDS)
        rounds = MAX_ROUNDS;
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if (n_reads < 1 || rounds < 1 || threads < 1)
        die("arguments", "N, ROUNDS and THREADS must be positive");
    const char *trk = tracker();
    print_tracker();
    setup(dir);

    static double one[NSYS][MAX_ROUNDS], per[NSYS][MAX_ROUNDS], agg[NSYS][MAX_ROUNDS];
    for (int k = 0; k < rounds; k++)
        for (int j = 0; j < NSYS; j++) {
            int s = (j + k) % NSYS; /* each system leads in turn */
            double dummy;
            run(s, 1, &one[s][k], &dummy);
            run(s, threads, &per[s][k], &agg[s][k]);
        }

    printf("one read transaction reading one word; %ld per thread per round, %d threads in parallel, median of %d "
           "rounds; ns\n",
           n_reads, threads, rounds);
    printf("%-24s %12s %20s %20s\n", "system", "1 thread", "per thread, N threads", "aggregate");
    for (int s = 0; s < NSYS; s++) {
        double o = median_of(one[s], rounds), p = median_of(per[s], rounds), a = median_of(agg[s], rounds);
        printf("%-24s %12.1f %20.1f %20.1f\n", sys_name[s], o, p, a);
        printf("RESULT read_%s_%s_1t_ns=%.2f\nRESULT read_%s_%s_per_thread_ns=%.2f\nRESULT read_%s_%s_aggregate_ns=%.2f\n",
               trk, sys_key[s], o, trk, sys_key[s], p, trk, sys_key[s], a);
    }
    /* Ratios per round (both sides ran in that round), then the median. */
    double r[4][MAX_ROUNDS], scale[NSYS][MAX_ROUNDS];
    for (int k = 0; k < rounds; k++) {
        r[0][k] = one[TMF][k] / one[LMDB_BEGIN][k];
        r[1][k] = one[TMF][k] / one[LMDB_RENEW][k];
        r[2][k] = per[TMF][k] / per[LMDB_BEGIN][k];
        r[3][k] = per[TMF][k] / per[LMDB_RENEW][k];
        for (int s = 0; s < NSYS; s++)
            scale[s][k] = per[s][k] / one[s][k];
    }
    printf("per-thread ns with %d threads / ns with 1 thread:", threads);
    for (int s = 0; s < NSYS; s++)
        printf("  %s %.2f", sys_key[s], median_of(scale[s], rounds));
    printf("\n");
    for (int s = 0; s < NSYS; s++)
        printf("RESULT read_%s_%s_scaling=%.4f\n", trk, sys_key[s], median_of(scale[s], rounds));
    char name[96], what[128];
    static const char *rk[4] = {"1t_lmdb", "1t_renew", "mt_lmdb", "mt_renew"};
    static const char *rw[4] = {"1 thread, / LMDB begin+abort", "1 thread, / LMDB renew+reset",
                                "threads in parallel, / LMDB begin+abort", "threads in parallel, / LMDB renew+reset"};
    printf("\n");
    for (int q = 0; q < 4; q++) {
        snprintf(name, sizeof name, "read_%s_target_%s", trk, rk[q]);
        snprintf(what, sizeof what, "%s: read tx ns, %s", trk, rw[q]);
        target(name, what, median_of(r[q], rounds), "<=", 2);
    }
    printf("RESULT read_%s_rounds=%d\nRESULT read_%s_n=%ld\nRESULT read_%s_threads=%d\n", trk, rounds, trk, n_reads,
           trk, threads);
    mdb_env_close(env);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/read'", dir);
    return system(cmd) != 0;
}
