/*
 * fallback_bench — what the preload costs a program that never calls tm_*.
 *
 * Runs the same malloc/free/realloc workload (sizes 8 B – 4 KiB, random
 * lifetimes; it never calls tm_*) in child processes, alternately without
 * and with LD_PRELOAD=libtmfpreload.so, and prints the median times and
 * their ratio.  Target: at most 1.02.
 *
 *   fallback_bench PRELOAD_SO [ROUNDS] [MILLIONS_OF_OPS]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

/* The workload: 8192 slots, each op frees or reallocs one and allocates. */
static double work(long ops)
{
    enum { SLOTS = 8192 };
    static void *slot[SLOTS];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    double t = now();
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
    for (int k = 0; k < SLOTS; k++)
        free(slot[k]);
    return now() - t;
}

static double child(const char *self, const char *preload, long ops)
{
    int fds[2];
    double t = 0;
    char arg[32];
    snprintf(arg, sizeof arg, "%ld", ops);
    char *args[] = {(char *)self, "--work", arg, NULL};
    pid_t pid = spawn(fds, preload, args);
    if (read(fds[0], &t, sizeof t) != sizeof t)
        t = -1;
    close(fds[0]);
    waitpid(pid, NULL, 0);
    return t;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--work") == 0) {
        double t = work(atol(argv[2]));
        return write(1, &t, sizeof t) == sizeof t ? 0 : 1;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: fallback_bench PRELOAD_SO [ROUNDS] [MILLIONS_OF_OPS]\n");
        return 2;
    }
    int rounds = argc > 2 ? atoi(argv[2]) : 9;
    long ops = (argc > 3 ? atol(argv[3]) : 20) * 1000000L;
    double plain[64], pre[64];
    if (rounds > 64)
        rounds = 64;
    for (int i = 0; i < rounds; i++) { /* alternate the order: drift hits both */
        if (i % 2) {
            pre[i] = child("/proc/self/exe", argv[1], ops);
            plain[i] = child("/proc/self/exe", NULL, ops);
        } else {
            plain[i] = child("/proc/self/exe", NULL, ops);
            pre[i] = child("/proc/self/exe", argv[1], ops);
        }
    }
    double mp = median(plain, rounds), mq = median(pre, rounds);
    printf("malloc/free/realloc workload, %ld M ops, median of %d runs\n", ops / 1000000, rounds);
    printf("glibc alone:            %.3f s\n", mp);
    printf("glibc under the preload: %.3f s\n", mq);
    printf("ratio preload/glibc: %.3f (target <= 1.02)\n", mq / mp);
    return 0;
}
