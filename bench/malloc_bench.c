/*
 * malloc_bench — a malloc/free/realloc mix on four allocators, 1 and 2 threads.
 *
 * The workload (the one of fallback_bench): per thread 8192 slots; each
 * operation picks a random slot and either reallocs it (1 in 4) or frees it
 * and allocates a new block; sizes 8 B – 4 KiB, mostly below 264 B; random
 * lifetimes.  Every run happens in a fresh child process that runs the
 * workload once to warm up and then once timed:
 *
 *   glibc       the binary as it is;
 *   jemalloc    LD_PRELOAD=libjemalloc.so.2;
 *   fallback    LD_PRELOAD=libtmfpreload.so, no transaction ever opened: every
 *               call takes the preload's path to glibc;
 *   heap        tm_store_malloc/realloc/free of the persistent heap inside one
 *               write transaction (TMF_SYNC=none, the store on DIR).  The timed
 *               run reuses the pages the warm-up dirtied; the warm-up's own
 *               figure (first-write faults included) is reported beside it.
 *               The heap is single-writer, so "2 threads" runs two processes
 *               on two stores (at two base addresses) at the same time.
 *
 * Rounds alternate the order of the systems, and a round's one-thread runs are
 * pinned to one CPU (the rounds take turns: bench_util.h, round_cpu); every
 * figure is a median, a ratio the median of the rounds' ratios.
 *
 *   malloc_bench DIR PRELOAD_SO JEMALLOC_SO [ROUNDS] [MILLIONS_OF_OPS_PER_THREAD]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "tmfalloc.h"

/* ---- the workload ---- */

enum { SLOTS = 8192 };
static tm_store *g_st;

/* heap = 0: malloc/realloc/free (whatever they are); 1: the store's heap. */
static void work(void **slot, long ops, uint64_t seed, int heap)
{
    uint64_t x = seed;
    for (long i = 0; i < ops; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t k = x % SLOTS, size = 8 + (x >> 20) % ((x >> 40) % 8 == 0 ? 4096 : 256);
        if ((x >> 50) % 4 == 0 && slot[k]) {
            slot[k] = heap ? tm_store_realloc(g_st, slot[k], size) : realloc(slot[k], size);
        } else {
            if (heap)
                tm_store_free(g_st, slot[k]);
            else
                free(slot[k]);
            slot[k] = heap ? tm_store_malloc(g_st, size) : malloc(size);
        }
        memset(slot[k], (int)i, 8);
    }
}

static void release(void **slot, int heap)
{
    for (int k = 0; k < SLOTS; k++) {
        if (heap)
            tm_store_free(g_st, slot[k]);
        else
            free(slot[k]);
        slot[k] = NULL;
    }
}

struct thr {
    long ops;
    uint64_t seed;
    double t;
};

static void *thread_main(void *arg)
{
    struct thr *a = arg;
    void **slot = calloc(SLOTS, sizeof *slot);
    work(slot, a->ops, a->seed, 0); /* warm up */
    release(slot, 0);
    double t = now();
    work(slot, a->ops, a->seed * 3 + 1, 0);
    release(slot, 0);
    a->t = now() - t;
    free(slot);
    return NULL;
}

/* Child: --malloc THREADS OPS.  Writes the wall time of the timed run. */
static double child_malloc(int threads, long ops)
{
    pthread_t th[2];
    struct thr a[2];
    double t = now();
    (void)t;
    for (int i = 0; i < threads; i++) {
        a[i].ops = ops, a[i].seed = 0x9E3779B97F4A7C15ull + (uint64_t)i * 0x1234567ull;
        pthread_create(&th[i], NULL, thread_main, &a[i]);
    }
    double worst = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        if (a[i].t > worst)
            worst = a[i].t;
    }
    return worst;
}

/* Child: --heap PATH BASE OPS.  Writes cold (warm-up) and warm times. */
static void child_heap(const char *path, uintptr_t base, long ops, double out[2])
{
    char log[4200];
    tm_options o;
    int r;
    unlink(path);
    snprintf(log, sizeof log, "%s.log", path);
    unlink(log);
    tm_options_init(&o);
    o.sync = TM_SYNC_NONE;
    o.base = base;
    o.max_size = (size_t)4 << 30;
    if ((r = tm_open(path, &o, &g_st)) != 0) {
        fprintf(stderr, "malloc_bench: tm_open(%s): %s\n", path, tm_strerror(r));
        exit(1);
    }
    void **slot = calloc(SLOTS, sizeof *slot); /* glibc memory: the slot table */
    tm_store_begin(g_st);
    double t = now();
    work(slot, ops, 0x9E3779B97F4A7C15ull, 1);
    release(slot, 1);
    out[0] = now() - t;
    t = now();
    work(slot, ops, 0x9E3779B97F4A7C15ull * 3 + 1, 1);
    release(slot, 1);
    out[1] = now() - t;
    tm_store_commit(g_st);
    tm_close(g_st);
    unlink(path);
    unlink(log);
    free(slot);
}

/* ---- the driver ---- */

static const char *g_self;

static void collect(pid_t pid, int fd, double *v, int n)
{
    if (read(fd, v, sizeof *v * (size_t)n) != (ssize_t)(sizeof *v * (size_t)n)) {
        fprintf(stderr, "malloc_bench: a child failed\n");
        exit(1);
    }
    close(fd);
    waitpid(pid, NULL, 0);
}

static double run_malloc(const char *preload, int threads, long ops, int cpu)
{
    char a1[16], a2[32];
    int fds[2];
    double t;
    snprintf(a1, sizeof a1, "%d", threads);
    snprintf(a2, sizeof a2, "%ld", ops);
    char *args[] = {(char *)g_self, "--malloc", a1, a2, NULL};
    pid_t pid = spawn_on(fds, preload, args, cpu);
    collect(pid, fds[0], &t, 1);
    return t;
}

/* procs processes, each on its own store; cold and warm wall times of the
 * slowest. */
static void run_heap(const char *dir, int procs, long ops, double out[2], int cpu)
{
    char path[2][4200], base[2][32], a3[32];
    int fds[2][2];
    pid_t pid[2];
    double v[2];
    snprintf(a3, sizeof a3, "%ld", ops);
    for (int i = 0; i < procs; i++) {
        snprintf(path[i], sizeof path[i], "%s/malloc_bench-%d.tmf", dir, i);
        snprintf(base[i], sizeof base[i], "%#lx", 0x200000000000ul + (unsigned long)i * 0x10000000000ul);
        char *args[] = {(char *)g_self, "--heap", path[i], base[i], a3, NULL};
        pid[i] = spawn_on(fds[i], NULL, args, procs == 1 ? cpu : -1);
    }
    out[0] = out[1] = 0;
    for (int i = 0; i < procs; i++) {
        collect(pid[i], fds[i][0], v, 2);
        if (v[0] > out[0])
            out[0] = v[0];
        if (v[1] > out[1])
            out[1] = v[1];
    }
}

enum { GLIBC, JEMALLOC, FALLBACK, HEAP, HEAP_COLD, NSYS };
static const char *names[NSYS] = {"glibc", "jemalloc (LD_PRELOAD)", "tmfalloc preload, no tx (fallback)",
                                  "persistent heap, warm tx", "persistent heap, first pass"};
static const char *keys[NSYS] = {"glibc", "jemalloc", "fallback", "heap", "heap_cold"};

int main(int argc, char **argv)
{
    if (argc > 1 && strncmp(argv[1], "--", 2) == 0)
        preload_loaded_or_die();
    if (argc == 4 && strcmp(argv[1], "--malloc") == 0) {
        double t = child_malloc(atoi(argv[2]), atol(argv[3]));
        return write(1, &t, sizeof t) == sizeof t ? 0 : 1;
    }
    if (argc == 5 && strcmp(argv[1], "--heap") == 0) {
        double t[2];
        child_heap(argv[2], (uintptr_t)strtoull(argv[3], NULL, 16), atol(argv[4]), t);
        return write(1, t, sizeof t) == sizeof t ? 0 : 1;
    }
    if (argc < 4) {
        fprintf(stderr, "usage: malloc_bench DIR PRELOAD_SO JEMALLOC_SO [ROUNDS] [MILLIONS_OF_OPS]\n");
        return 2;
    }
    const char *dir = argv[1], *preload = argv[2], *jemalloc = argv[3];
    int rounds = argc > 4 ? atoi(argv[4]) : 7;
    long ops = (long)((argc > 5 ? atof(argv[5]) : 5) * 1e6);
    static double t[3][NSYS][64];
    g_self = "/proc/self/exe";
    if (rounds > 64)
        rounds = 64;
    for (int k = 0; k < rounds; k++) {
        for (int th = 1; th <= 2; th++) {
            double h[2];
            int cpu = th == 1 ? round_cpu(k) : -1; /* one thread: the round's CPU */
            int order[4] = {GLIBC, FALLBACK, JEMALLOC, HEAP};
            if (k % 2) /* alternate: drift hits both sides of each ratio */
                order[0] = HEAP, order[1] = JEMALLOC, order[2] = FALLBACK, order[3] = GLIBC;
            for (int i = 0; i < 4; i++) {
                switch (order[i]) {
                case GLIBC:
                    t[th][GLIBC][k] = run_malloc(NULL, th, ops, cpu);
                    break;
                case JEMALLOC:
                    t[th][JEMALLOC][k] = run_malloc(jemalloc, th, ops, cpu);
                    break;
                case FALLBACK:
                    t[th][FALLBACK][k] = run_malloc(preload, th, ops, cpu);
                    break;
                default:
                    run_heap(dir, th, ops, h, cpu);
                    t[th][HEAP_COLD][k] = h[0], t[th][HEAP][k] = h[1];
                }
            }
        }
    }
    printf("malloc/free/realloc mix, %.1f M ops per thread, sizes 8 B - 4 KiB, median of %d rounds\n",
           ops / 1e6, rounds);
    printf("(heap, 2 threads: two processes on two stores, since the persistent heap is single-writer)\n");
    printf("%-38s %12s %12s %12s %12s\n", "allocator", "1T s", "1T Mops/s", "2T s", "2T Mops/s");
    double m[3][NSYS], fb[3], heap[3], cold[3];
    for (int th = 1; th <= 2; th++) { /* before median() sorts the times */
        fb[th] = median_ratio(t[th][FALLBACK], t[th][GLIBC], rounds);
        heap[th] = median_ratio(t[th][JEMALLOC], t[th][HEAP], rounds);
        cold[th] = median_ratio(t[th][JEMALLOC], t[th][HEAP_COLD], rounds);
    }
    for (int s = 0; s < NSYS; s++) {
        for (int th = 1; th <= 2; th++)
            m[th][s] = median(t[th][s], rounds);
        printf("%-38s %12.3f %12.2f %12.3f %12.2f\n", names[s], m[1][s], ops / m[1][s] / 1e6, m[2][s],
               2 * ops / m[2][s] / 1e6);
    }
    for (int th = 1; th <= 2; th++) {
        printf("%dT: fallback / glibc time = %.3f (target <= 1.02); heap / jemalloc ops/s = %.2f "
               "(target >= 1.0); first pass %.2f\n",
               th, fb[th], heap[th], cold[th]);
    }
    printf("RESULT malloc_rounds=%d\n", rounds);
    printf("RESULT malloc_mops_per_thread=%.2f\n", ops / 1e6);
    for (int th = 1; th <= 2; th++) {
        for (int s = 0; s < NSYS; s++)
            printf("RESULT malloc_%dt_%s_mops=%.3f\n", th, keys[s], th * ops / m[th][s] / 1e6);
        printf("RESULT malloc_%dt_fallback_ratio=%.4f\n", th, fb[th]);
        printf("RESULT malloc_%dt_heap_ratio=%.4f\n", th, heap[th]);
        printf("RESULT malloc_%dt_heap_cold_ratio=%.4f\n", th, cold[th]);
    }
    return 0;
}
