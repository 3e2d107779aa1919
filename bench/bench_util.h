/* bench_util.h — small helpers shared by the benchmarks. */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <dlfcn.h>
#include <errno.h> /* program_invocation_short_name */
#include <sched.h>
#include <sys/types.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v. */
static inline double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The median of a[i] / b[i] over n <= 64 rounds (a and b untouched): each
 * round's two sides ran side by side, on the same CPU. */
static inline double median_ratio(const double *a, const double *b, int n)
{
    double r[64];
    for (int i = 0; i < n && i < 64; i++)
        r[i] = a[i] / b[i];
    return median(r, n < 64 ? n : 64);
}

static inline void die(const char *what, const char *why)
{
    fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, why);
    exit(1);
}

/* The k-th CPU of set, round and round. */
static inline int nth_cpu(const cpu_set_t *set, int k)
{
    int seen = 0;
    if (CPU_COUNT(set) == 0)
        return -1;
    k %= CPU_COUNT(set);
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, set) && seen++ == k)
            return c;
    return -1;
}

/* The CPU round k of a benchmark pins its single-threaded runs to.  The
 * CPUs of a shared virtual machine need not be equally fast (a busy
 * neighbour on one host core made one of this machine's two 1.7 times
 * slower for a while), and a run placed on whichever is idle would give
 * one side of a ratio the fast one more often: so every side of a round
 * runs on the same CPU, and the rounds take turns. */
static inline int round_cpu(int k)
{
    cpu_set_t set;
    return sched_getaffinity(0, sizeof set, &set) != 0 ? -1 : nth_cpu(&set, k);
}

/* Pins the calling process to CPU cpu alone: 0, or -1 with errno. */
static inline int pin_to(int cpu)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return sched_setaffinity(0, sizeof one, &one);
}

/* Pins the calling process, whose sides of a round run one after another
 * in it, to round k's CPU among those it was allowed at its first call. */
static inline void pin_round(int k)
{
    static cpu_set_t allowed;
    static int saved;
    int cpu;
    if (!saved && sched_getaffinity(0, sizeof allowed, &allowed) != 0)
        die("sched_getaffinity", strerror(errno));
    saved = 1;
    if ((cpu = nth_cpu(&allowed, k)) >= 0 && pin_to(cpu) != 0)
        die("sched_setaffinity", strerror(errno));
}

/* Removes a store and its log. */
static inline void remove_store(const char *path)
{
    char log[8192];
    snprintf(log, sizeof log, "%s.log", path);
    unlink(path);
    unlink(log);
}

/* For a child that spawn() ran: dies unless the object its LD_PRELOAD names
 * is loaded.  The loader only warns when it cannot load it, and the run
 * would then time plain glibc under the other allocator's name. */
static inline void preload_loaded_or_die(void)
{
    const char *pre = getenv("LD_PRELOAD");
    if (pre && *pre && !dlopen(pre, RTLD_NOLOAD | RTLD_LAZY))
        die(pre, "LD_PRELOAD names an object that was not loaded");
}

/* Runs args[0] with args in a child whose stdout is a pipe (fds[0] reads
 * it), whose LD_PRELOAD is preload, or unset when NULL, and which runs on
 * CPU cpu alone when cpu >= 0. */
static inline pid_t spawn_on(int fds[2], const char *preload, char *const args[], int cpu)
{
    if (pipe(fds) < 0)
        exit(1);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        if (cpu >= 0 && pin_to(cpu) != 0)
            _exit(126);
        if (preload)
            setenv("LD_PRELOAD", preload, 1);
        else
            unsetenv("LD_PRELOAD");
        execv(args[0], args);
        _exit(127);
    }
    close(fds[1]);
    return pid;
}

#endif
