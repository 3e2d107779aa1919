/*
 * alloc_bench — the allocator alone: a tight malloc/free loop, nothing else.
 *
 * The loop: 16,384 slots; each operation picks a random slot and frees its
 * block if it has one, or else allocates a block of a random size in the
 * range and writes its first byte (random lifetimes, half the slots full in
 * the steady state).  Three ranges: 8-512 B, 16-4096 B, 1-64 KiB.  Every run
 * is a fresh child process that runs the loop once to warm up and then once
 * timed, from the state the warm-up left:
 *
 *   glibc      the binary as it is;
 *   jemalloc   LD_PRELOAD=libjemalloc.so.2;
 *   mimalloc   LD_PRELOAD=libmimalloc.so.2;
 *   tm_malloc  tm_malloc/tm_free (libtmfalloc.so) inside one write
 *              transaction on the default store (TMF_SYNC=none, in DIR): the
 *              timed pass reuses the pages the warm-up dirtied;
 *   preload    malloc/free under LD_PRELOAD=libtmfpreload.so inside one
 *              tm_begin transaction: what a program under the preload gets.
 * Both transactions end in tm_abort: the commit is not what is measured.
 *
 * Rounds rotate the order of the systems, and all of a round's runs are pinned
 * to one CPU (the rounds take turns: bench_util.h, round_cpu); every figure
 * is a median, a ratio the median of the rounds' ratios.
 *
 *   alloc_bench DIR PRELOAD_SO JEMALLOC_SO MIMALLOC_SO [ROUNDS] [MILLIONS_OF_OPS]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "tmfalloc.h"

enum { SLOTS = 16384 };

struct range {
    const char *name, *key;
    size_t lo, hi;
};
static const struct range ranges[] = {
    {"8-512 B", "small", 8, 512},
    {"16-4096 B", "medium", 16, 4096},
    {"1-64 KiB", "large", 1024, 65536},
};
enum { NRANGE = sizeof ranges / sizeof ranges[0] };

/* ---- the loop (in the child) ---- */

#define LOOP(MALLOC, FREE)                                               \
    do {                                                                 \
        for (long i_ = 0; i_ < ops; i_++) {                              \
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;                     \
            void **s_ = &slot[x & (SLOTS - 1)];                          \
            if (*s_) {                                                   \
                FREE(*s_);                                               \
                *s_ = NULL;                                              \
            } else {                                                     \
                *s_ = MALLOC(lo + (x >> 32) % span);                     \
                *(volatile char *)*s_ = 1;                               \
            }                                                            \
        }                                                                \
    } while (0)

static void *slot[SLOTS];

/* Runs the warm-up and the timed pass; returns the time of the latter. */
static double run_loop(int tm, size_t lo, size_t hi, long ops)
{
    uint64_t x = 0x9E3779B97F4A7C15ull;
    size_t span = hi - lo + 1;
    double t = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            t = now();
        if (tm)
            LOOP(tm_malloc, tm_free);
        else
            LOOP(malloc, free);
    }
    t = now() - t;
    for (int k = 0; k < SLOTS; k++) {
        if (tm)
            tm_free(slot[k]);
        else
            free(slot[k]);
        slot[k] = NULL;
    }
    return t;
}

/* Child: --loop MODE LO HI OPS, MODE plain | tm | tx.  Writes the time. */
static int child(const char *mode, size_t lo, size_t hi, long ops)
{
    int tm = strcmp(mode, "tm") == 0, tx = tm || strcmp(mode, "tx") == 0, r;
    double t;
    if (tx && (r = tm_begin()) != 0) {
        fprintf(stderr, "alloc_bench: tm_begin: %s\n", tm_strerror(r));
        return 1;
    }
    t = run_loop(tm, lo, hi, ops);
    if (tx)
        tm_abort();
    return write(1, &t, sizeof t) == sizeof t ? 0 : 1;
}

/* ---- the driver ---- */

enum { GLIBC, JEMALLOC, MIMALLOC, TM, PRELOAD, NSYS };
static const char *names[NSYS] = {"glibc", "jemalloc (LD_PRELOAD)", "mimalloc (LD_PRELOAD)",
                                  "tmfalloc tm_malloc, warm tx", "tmfalloc preload malloc, warm tx"};
static const char *keys[NSYS] = {"glibc", "jemalloc", "mimalloc", "tm", "preload"};

static double run(const char *preload, const char *mode, const struct range *rg, long ops, int cpu)
{
    char a_lo[32], a_hi[32], a_ops[32];
    int fds[2];
    double t = -1;
    snprintf(a_lo, sizeof a_lo, "%zu", rg->lo);
    snprintf(a_hi, sizeof a_hi, "%zu", rg->hi);
    snprintf(a_ops, sizeof a_ops, "%ld", ops);
    char *args[] = {"/proc/self/exe", "--loop", (char *)mode, a_lo, a_hi, a_ops, NULL};
    pid_t pid = spawn_on(fds, preload, args, cpu);
    int status;
    if (read(fds[0], &t, sizeof t) != sizeof t)
        t = -1;
    close(fds[0]);
    waitpid(pid, &status, 0);
    if (t <= 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
        fprintf(stderr, "alloc_bench: the %s run of %s failed\n", mode, rg->name);
        exit(1);
    }
    return t;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "--loop") == 0) {
        preload_loaded_or_die();
        return child(argv[2], strtoul(argv[3], NULL, 10), strtoul(argv[4], NULL, 10), atol(argv[5]));
    }
    if (argc < 5) {
        fprintf(stderr, "usage: alloc_bench DIR PRELOAD_SO JEMALLOC_SO MIMALLOC_SO [ROUNDS] [MILLIONS_OF_OPS]\n");
        return 2;
    }
    const char *dir = argv[1], *so[NSYS] = {NULL, argv[3], argv[4], NULL, argv[2]};
    const char *mode[NSYS] = {"plain", "plain", "plain", "tm", "tx"};
    int rounds = argc > 5 ? atoi(argv[5]) : 5;
    long ops = (long)((argc > 6 ? atof(argv[6]) : 10) * 1e6);
    static double t[NRANGE][NSYS][64];
    char path[4200];

    if (rounds < 1 || rounds > 64)
        rounds = rounds < 1 ? 1 : 64;
    snprintf(path, sizeof path, "%s/alloc_bench.tmf", dir);
    setenv("TMF_PATH", path, 1);
    setenv("TMF_SYNC", "none", 1);
    for (int k = 0; k < rounds; k++)
        for (int g = 0; g < NRANGE; g++)
            for (int i = 0; i < NSYS; i++) { /* rotate: drift hits every system alike */
                int s = (i + k) % NSYS;
                remove_store(path);
                t[g][s][k] = run(so[s], mode[s], &ranges[g], ops, round_cpu(k));
            }
    remove_store(path);

    printf("tight malloc/free loop: %d slots, random lifetimes, %.1f M ops timed after as many to warm up;\n"
           "median of %d rounds, each round's runs on one CPU; Mops/s (ratio = tmfalloc ops/s / that\n"
           "allocator's, the median of the rounds' ratios)\n",
           SLOTS, ops / 1e6, rounds);
    printf("%-34s", "allocator");
    for (int g = 0; g < NRANGE; g++)
        printf(" %18s", ranges[g].name);
    printf("\n");
    double m[NRANGE][NSYS], ratio[NRANGE][NSYS][NSYS];
    for (int g = 0; g < NRANGE; g++) /* before median() sorts the times */
        for (int w = TM; w <= PRELOAD; w++)
            for (int s = GLIBC; s <= MIMALLOC; s++)
                ratio[g][w][s] = median_ratio(t[g][s], t[g][w], rounds);
    for (int s = 0; s < NSYS; s++) {
        printf("%-34s", names[s]);
        for (int g = 0; g < NRANGE; g++) {
            m[g][s] = ops / median(t[g][s], rounds) / 1e6;
            printf(" %18.1f", m[g][s]);
        }
        printf("\n");
    }
    for (int w = TM; w <= PRELOAD; w++)
        for (int s = GLIBC; s <= MIMALLOC; s++) {
            char label[80];
            snprintf(label, sizeof label, "%s / %s", keys[w], keys[s]);
            printf("%-34s", label);
            for (int g = 0; g < NRANGE; g++)
                printf(" %17.2fx", ratio[g][w][s]);
            printf("\n");
        }
    printf("RESULT alloc_rounds=%d\n", rounds);
    printf("RESULT alloc_mops=%.1f\n", ops / 1e6);
    for (int g = 0; g < NRANGE; g++) {
        for (int s = 0; s < NSYS; s++)
            printf("RESULT alloc_%s_%s_mops=%.2f\n", ranges[g].key, keys[s], m[g][s]);
        for (int w = TM; w <= PRELOAD; w++)
            for (int s = GLIBC; s <= MIMALLOC; s++)
                printf("RESULT alloc_%s_%s_vs_%s=%.4f\n", ranges[g].key, keys[w], keys[s], ratio[g][w][s]);
    }
    return 0;
}
