/*
 * torture_threads.c — the thread torture of test_torture.c as a plain
 * program, for the ThreadSanitizer pass of scripts/test.sh (Criterion's
 * runner cannot start under TSan: it maps its arena at addresses TSan keeps
 * for itself).  Same workers and invariants (tests/torture.h).
 *
 *   torture_threads [DIR]   store in DIR (default: a new directory in $TMPDIR)
 * Environment: TMF_ADDR (base, hex), TMF_TORTURE_SECONDS (default 4),
 * TMF_TORTURE_THREADS (default 4).  Exit status 0 when every thread made
 * progress and no invariant was ever violated.
 */
#define _GNU_SOURCE
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

#include "../torture.h"

static tm_options opts(void)
{
    tm_options o;
    const char *a = getenv("TMF_ADDR");
    tm_options_init(&o);
    if (a && *a)
        o.base = (uintptr_t)strtoull(a, NULL, 16);
    o.max_size = (size_t)1 << 30;
    return o;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

int main(int argc, char **argv)
{
    char dir[512], path[600], msg[256] = "";
    const char *t = getenv("TMPDIR");
    int nthr = (int)env_long("TMF_TORTURE_THREADS", 4), i, r, bad = 0, own = argc < 2;
    double end;
    tm_options o = opts();
    tm_store *st = NULL;
    struct counters fc = {0};
    uint64_t gen = 0, total = 0;

    if (nthr > MAXWORKERS - 1)
        nthr = MAXWORKERS - 1;
    if (own) {
        snprintf(dir, sizeof dir, "%s/tmftorture.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir))
            return perror("mkdtemp"), 2;
    } else {
        snprintf(dir, sizeof dir, "%s", argv[1]);
    }
    snprintf(path, sizeof path, "%s/th.tmf", dir);
    if (!(sh = shared_map()))
        return perror("mmap"), 2;
    if ((r = t_init_store(&o, path)) || (r = tm_open(path, &o, &st))) {
        fprintf(stderr, "torture_threads: %s: %s\n", path, tm_strerror(r));
        return 2;
    }
    end = now() + (double)env_long("TMF_TORTURE_SECONDS", 4);
    if ((r = t_run_threads(st, nthr, end)))
        return fprintf(stderr, "pthread_create: %d\n", r), 2;
    tm_close(st);
    for (i = 0; i < nthr; i++) {
        struct counters *c = &sh->w[i];
        printf("thread %d: %llu reads, %llu commits, %llu aborts, %llu violations\n", i,
               (unsigned long long)c->reads, (unsigned long long)c->writes, (unsigned long long)c->aborts,
               (unsigned long long)c->violations);
        bad |= c->violations || !c->reads || !c->writes;
        total += c->writes;
    }
    r = t_final_check(&o, path, &fc, &gen, msg, sizeof msg);
    printf("%llu commits by %d threads, %llu glibc churn rounds, final generation %llu\n",
           (unsigned long long)total, nthr, (unsigned long long)sh->w[nthr].reads, (unsigned long long)gen);
    if (r || fc.violations) {
        fprintf(stderr, "torture_threads: after reopen: %s %s %s\n", tm_strerror(r), msg, sh->first_violation);
        bad = 1;
    }
    if (bad)
        fprintf(stderr, "torture_threads: FAILED: %s\n", sh->first_violation);
    if (own)
        nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    return bad;
}
