/* bench_util.h — small helpers shared by the benchmarks. */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <dlfcn.h>
#include <errno.h> /* program_invocation_short_name */
#include <sys/types.h>
#include <stdio.h>
#include <stdlib.h>
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

static inline void die(const char *what, const char *why)
{
    fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, why);
    exit(1);
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
 * it) and whose LD_PRELOAD is preload, or unset when NULL. */
static inline pid_t spawn(int fds[2], const char *preload, char *const args[])
{
    if (pipe(fds) < 0)
        exit(1);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
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
