/*
 * fallback_bench — what the preload costs a program that never calls tm_*.
 *
 * Three workloads that never call tm_*, each run in child processes
 * without LD_PRELOAD, with LD_PRELOAD=libtmfpreload.so, again with the
 * preload once the program has opened a store (tm_root of a scratch store,
 * then the same work outside any transaction: what a program that uses
 * tmfalloc pays on its other allocations) and, when it is given, with
 * FORWARD_SO (forward_preload.so: an interposer that only jumps to glibc,
 * the floor of any LD_PRELOAD interposer), in an order that
 * rotates from round to round, all of a round's runs pinned to one CPU
 * (bench_util.h, round_cpu); prints the median CPU times of the timed loops
 * and the medians of the rounds' ratios for each.  Target: preload / glibc
 * at most 1.02.
 *   mix    malloc/free/realloc, sizes 8 B – 4 KiB, random lifetimes
 *   tight  p = malloc(size); free(p); sizes 16 – 256 B: nothing but the
 *          two calls, so the preload's own tests are the whole difference
 *   live   25 blocks of 16 – 256 B allocated, then freed, over and over
 *          (as glibc's bench-malloc-simple, mimalloc-bench's glibc-simple)
 *
 *   fallback_bench PRELOAD_SO [ROUNDS] [MILLIONS_OF_OPS] [FORWARD_SO]
 *
 * Ends with RESULT lines for scripts/bench.sh (fallback_<workload>_ratio,
 * _open_ratio, preload with a store open / glibc, and with FORWARD_SO
 * _forward_ratio, forwarder / glibc, and _over_forward, preload /
 * forwarder).
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

void *volatile sink; /* where a block escapes, so that no call is folded away */

/* mix: 8192 slots, each op frees or reallocs one and allocates. */
static void mix(long ops)
{
    enum { SLOTS = 8192 };
    static void *slot[SLOTS];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (long i = 0; i < ops; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t k = x % SLOTS, size = 8 + (x >> 20) % ((x >> 40) % 8 == 0 ? 4096 : 256);
        if ((x >> 50) % 4 == 0 && slot[k]) {
            slot[k] = realloc(slot[k], size);
        } else {
            free(slot[k]);
            slot[k] = malloc(size);
        }
        memset(slot[k], (int)i, 8);
    }
    for (int k = 0; k < SLOTS; k++) {
        free(slot[k]);
        slot[k] = NULL;
    }
}

/* tight: one malloc and its free per op. */
static void tight(long ops)
{
    for (long i = 0; i < ops; i++) {
        void *p = malloc(16 + (size_t)(i * 7 % 241));
        sink = p;
        free(p);
    }
}

/* live: a malloc and a free per op, 25 blocks live at the peak. */
static void live(long ops)
{
    enum { LIVE = 25 };
    void *blocks[LIVE];
    for (long i = 0; i < ops; i += LIVE) {
        for (int j = 0; j < LIVE; j++)
            blocks[j] = malloc(16 + (size_t)((i + j) * 7 % 241));
        sink = blocks[LIVE - 1];
        for (int j = 0; j < LIVE; j++)
            free(blocks[j]);
    }
}

static const struct {
    const char *key, *title;
    void (*fn)(long);
} works[] = {
    {"mix", "malloc/free/realloc mix, 8 B - 4 KiB", mix},
    {"tight", "tight loop p = malloc(16-256 B); free(p)", tight},
    {"live", "25 live blocks of 16-256 B, allocated then freed", live},
};
#define NWORKS (int)(sizeof works / sizeof *works)

/* The process's CPU time: what other processes on a shared machine take
 * does not count. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A tenth of the ops untimed first, then the timed ops (CPU seconds). */
static double work(int w, long ops)
{
    works[w].fn(ops / 10);
    double t = cpu_now();
    works[w].fn(ops);
    return cpu_now() - t;
}

/* store: the path of a store the child opens first, or NULL. */
static double child(const char *preload, const char *store, int w, long ops, int cpu)
{
    int fds[2];
    double t = 0;
    char warg[16], arg[32];
    snprintf(warg, sizeof warg, "%d", w);
    snprintf(arg, sizeof arg, "%ld", ops);
    char *args[] = {"/proc/self/exe", "--work", warg, arg, (char *)store, NULL};
    pid_t pid = spawn_on(fds, preload, args, cpu);
    if (read(fds[0], &t, sizeof t) != sizeof t)
        die(preload ? preload : "glibc alone", "a run failed");
    close(fds[0]);
    waitpid(pid, NULL, 0);
    return t;
}

int main(int argc, char **argv)
{
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "--work") == 0) {
        int w = atoi(argv[2]);
        preload_loaded_or_die();
        if (w < 0 || w >= NWORKS)
            return 2;
        if (argc == 5) { /* open the store through the preload's own tm_root */
            void *(*root)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "tm_root");
            setenv("TMF_PATH", argv[4], 1);
            if (!root || !root(64))
                die(argv[4], "tm_root failed under the preload");
        }
        double t = work(w, atol(argv[3]));
        return write(1, &t, sizeof t) == sizeof t ? 0 : 1;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: fallback_bench PRELOAD_SO [ROUNDS] [MILLIONS_OF_OPS] [FORWARD_SO]\n");
        return 2;
    }
    enum { GLIBC, PRELOAD, OPEN, FORWARD };
    const char *so[4] = {NULL, argv[1], argv[1], argc > 4 ? argv[4] : NULL};
    int rounds = argc > 2 ? atoi(argv[2]) : 9, arms = so[FORWARD] ? 4 : 3;
    long ops = (argc > 3 ? atol(argv[3]) : 20) * 1000000L;
    static double t[NWORKS][4][64];
    double m[4], ratio, open_ratio, fwd_ratio = 0, over_fwd = 0;
    char store[256], side[300];
    const char *tmp = getenv("TMPDIR");
    snprintf(store, sizeof store, "%s/fallback_bench.%d.tmf", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    if (rounds > 64)
        rounds = 64;
    if (rounds < 1)
        rounds = 1;
    for (int i = 0; i < rounds; i++) /* rotate the order: drift hits every arm */
        for (int w = 0; w < NWORKS; w++)
            for (int k = 0; k < arms; k++) {
                int a = (i + k) % arms;
                t[w][a][i] = child(so[a], a == OPEN ? store : NULL, w, ops, round_cpu(i));
            }
    for (int k = 0; k < 3; k++) { /* the scratch store, its log and its lock file */
        snprintf(side, sizeof side, "%s%s", store, (const char *[]){"", ".log", ".lock"}[k]);
        unlink(side);
    }
    printf("%ld M ops per run, median of %d runs (ratios: the median of each round's, its runs on one CPU)\n",
           ops / 1000000, rounds);
    printf("RESULT fallback_rounds=%d\nRESULT fallback_mops=%ld\n", rounds, ops / 1000000);
    for (int w = 0; w < NWORKS; w++) {
        const char *k = works[w].key;
        ratio = median_ratio(t[w][PRELOAD], t[w][GLIBC], rounds);
        open_ratio = median_ratio(t[w][OPEN], t[w][GLIBC], rounds);
        if (arms == 4) {
            fwd_ratio = median_ratio(t[w][FORWARD], t[w][GLIBC], rounds);
            over_fwd = median_ratio(t[w][PRELOAD], t[w][FORWARD], rounds);
        }
        for (int a = 0; a < arms; a++)
            m[a] = median(t[w][a], rounds);
        printf("%s\n", works[w].title);
        printf("  glibc alone:             %.3f s\n", m[GLIBC]);
        printf("  glibc under the preload: %.3f s\n", m[PRELOAD]);
        printf("  ratio preload/glibc: %.3f (target <= 1.02)\n", ratio);
        printf("RESULT fallback_%s_glibc_s=%.4f\nRESULT fallback_%s_preload_s=%.4f\n", k, m[GLIBC], k, m[PRELOAD]);
        printf("RESULT fallback_%s_ratio=%.4f\n", k, ratio);
        printf("  glibc under the preload, a store open: %.3f s (ratio %.3f)\n", m[OPEN], open_ratio);
        printf("RESULT fallback_%s_open_s=%.4f\nRESULT fallback_%s_open_ratio=%.4f\n", k, m[OPEN], k, open_ratio);
        if (arms == 4) {
            printf("  glibc under the bare forwarder: %.3f s (forwarder/glibc %.3f, preload/forwarder %.3f)\n",
                   m[FORWARD], fwd_ratio, over_fwd);
            printf("RESULT fallback_%s_forward_s=%.4f\nRESULT fallback_%s_forward_ratio=%.4f\n", k, m[FORWARD], k,
                   fwd_ratio);
            printf("RESULT fallback_%s_over_forward=%.4f\n", k, over_fwd);
        }
    }
    return 0;
}
