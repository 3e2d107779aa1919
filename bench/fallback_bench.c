/*
 * fallback_bench — what the preload costs a program that never calls tm_*.
 *
 * Three workloads that never call tm_*, each run in child processes,
 * alternately without and with LD_PRELOAD=libtmfpreload.so; prints the
 * median CPU times of the timed loops and their ratio for each.  Target:
 * at most 1.02.
 *   mix    malloc/free/realloc, sizes 8 B – 4 KiB, random lifetimes
 *   tight  p = malloc(size); free(p); sizes 16 – 256 B: nothing but the
 *          two calls, so the preload's own tests are the whole difference
 *   live   25 blocks of 16 – 256 B allocated, then freed, over and over
 *          (as glibc's bench-malloc-simple, mimalloc-bench's glibc-simple)
 *
 *   fallback_bench PRELOAD_SO [ROUNDS] [MILLIONS_OF_OPS]
 *
 * Ends with RESULT lines for scripts/bench.sh (fallback_<workload>_ratio).
 */
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

static double child(const char *preload, int w, long ops)
{
    int fds[2];
    double t = 0;
    char warg[16], arg[32];
    snprintf(warg, sizeof warg, "%d", w);
    snprintf(arg, sizeof arg, "%ld", ops);
    char *args[] = {"/proc/self/exe", "--work", warg, arg, NULL};
    pid_t pid = spawn(fds, preload, args);
    if (read(fds[0], &t, sizeof t) != sizeof t)
        die(works[w].key, preload ? "the run under the preload failed" : "the run on glibc failed");
    close(fds[0]);
    waitpid(pid, NULL, 0);
    return t;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--work") == 0) {
        int w = atoi(argv[2]);
        preload_loaded_or_die();
        if (w < 0 || w >= NWORKS)
            return 2;
        double t = work(w, atol(argv[3]));
        return write(1, &t, sizeof t) == sizeof t ? 0 : 1;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: fallback_bench PRELOAD_SO [ROUNDS] [MILLIONS_OF_OPS]\n");
        return 2;
    }
    int rounds = argc > 2 ? atoi(argv[2]) : 9;
    long ops = (argc > 3 ? atol(argv[3]) : 20) * 1000000L;
    double plain[NWORKS][64], pre[NWORKS][64];
    if (rounds > 64)
        rounds = 64;
    if (rounds < 1)
        rounds = 1;
    for (int i = 0; i < rounds; i++) /* alternate the order: drift hits both */
        for (int w = 0; w < NWORKS; w++) {
            if (i % 2) {
                pre[w][i] = child(argv[1], w, ops);
                plain[w][i] = child(NULL, w, ops);
            } else {
                plain[w][i] = child(NULL, w, ops);
                pre[w][i] = child(argv[1], w, ops);
            }
        }
    printf("%ld M ops per run, median of %d runs\n", ops / 1000000, rounds);
    printf("RESULT fallback_rounds=%d\nRESULT fallback_mops=%ld\n", rounds, ops / 1000000);
    for (int w = 0; w < NWORKS; w++) {
        double mp = median(plain[w], rounds), mq = median(pre[w], rounds);
        printf("%s\n", works[w].title);
        printf("  glibc alone:             %.3f s\n", mp);
        printf("  glibc under the preload: %.3f s\n", mq);
        printf("  ratio preload/glibc: %.3f (target <= 1.02)\n", mq / mp);
        printf("RESULT fallback_%s_glibc_s=%.4f\nRESULT fallback_%s_preload_s=%.4f\n", works[w].key, mp,
               works[w].key, mq);
        printf("RESULT fallback_%s_ratio=%.4f\n", works[w].key, mq / mp);
    }
    return 0;
}
