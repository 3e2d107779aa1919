/* bench_tx.h — what the transaction benchmarks share: running a program
 * once per tracker, naming its results after the tracker, latency
 * percentiles, disk and memory checks, and target lines. */
#ifndef BENCH_TX_H
#define BENCH_TX_H

#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#include "bench_util.h"

/* ---- one run per tracker ----
 *
 * "--trackers=protect,uffd" as the first argument runs the program once per
 * name, each time in a child with TMF_TRACK=name and the rest of the
 * arguments; the children write to this process's stdout.  Without it the
 * program runs once with whatever TMF_TRACK the environment holds. */

/* The tracker list of the command line, or NULL; removes the option. */
static inline char *tracker_option(int *argc, char **argv)
{
    if (*argc < 2 || strncmp(argv[1], "--trackers=", 11) != 0)
        return NULL;
    char *list = argv[1] + 11;
    memmove(argv + 1, argv + 2, (size_t)(*argc - 1) * sizeof *argv); /* keeps the final NULL */
    (*argc)--;
    return list;
}

/* Runs argv again in one child per name of list, one after the other.
 * Returns 0 when every child exited with 0. */
static inline int tracker_run_all(const char *list, char **argv)
{
    char names[256], *save = NULL;
    int failed = 0;
    snprintf(names, sizeof names, "%s", list);
    for (char *t = strtok_r(names, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int status;
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0)
            die("fork", "failed");
        if (pid == 0) {
            setenv("TMF_TRACK", t, 1);
            execv("/proc/self/exe", argv);
            _exit(127);
        }
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "%s: the run with TMF_TRACK=%s failed\n", program_invocation_short_name, t);
            failed = 1;
        }
    }
    return failed;
}

/* The tracker of this run as the environment names it: "default" when
 * TMF_TRACK is unset (the library then picks one itself). */
static inline const char *tracker(void)
{
    const char *t = getenv("TMF_TRACK");
    return t && *t ? t : "default";
}

static inline void print_tracker(void)
{
    const char *t = getenv("TMF_TRACK");
    printf("tracker: %s (from the environment: TMF_TRACK=%s)\n", tracker(), t ? t : "(unset)");
}

/* ---- latencies ---- */

struct lat_stats {
    double mean, p50, p99, max;
};

/* Sorts v (n > 0). */
static inline struct lat_stats lat_stats(double *v, long n)
{
    struct lat_stats s;
    double sum = 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    for (long i = 0; i < n; i++)
        sum += v[i];
    s.mean = sum / n;
    s.p50 = v[n / 2];
    s.p99 = v[(long)((double)(n - 1) * 0.99)];
    s.max = v[n - 1];
    return s;
}

/* Median of v[0..n) without reordering it. */
static inline double median_of(const double *v, int n)
{
    double c[64];
    if (n > 64)
        n = 64;
    memcpy(c, v, (size_t)n * sizeof *v);
    return median(c, n);
}

/* ---- the machine ---- */

static inline uint64_t disk_free(const char *dir)
{
    struct statvfs s;
    if (statvfs(dir, &s) != 0)
        return 0;
    return (uint64_t)s.f_bavail * s.f_frsize;
}

/* MemAvailable of /proc/meminfo, in bytes (0 when unknown). */
static inline uint64_t mem_available(void)
{
    char line[256];
    unsigned long long kb = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return (uint64_t)kb << 10;
}

static inline long minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* ---- targets ----
 * Prints the target, the measured value and met/missed; the value also
 * goes out as "RESULT name=value". */
static inline int target(const char *name, const char *what, double value, const char *op, double goal)
{
    int ok = op[0] == '<' ? value <= goal : value >= goal;
    printf("target %-58s %8.3f  (%s %g)  %s\n", what, value, op, goal, ok ? "met" : "MISSED");
    printf("RESULT %s=%.4f\n", name, value);
    return ok;
}

#endif
