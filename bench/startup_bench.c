/*
 * startup_bench — what the preload's re-execution without address
 * randomisation (preload/aslr.c) costs a program at start-up.
 *
 * Starts a program that exits at once (this one, with --noop: a small
 * dynamically linked executable that refers to a tm_* call, as programs
 * that use tmfalloc do), in batches of BATCH starts, three ways taking
 * turns: without the preload, under the preload with TMF_ASLR=keep (no
 * re-execution), and under the preload as it comes (one re-execution when
 * the kernel randomises).  And /bin/true, which knows nothing of
 * tmfalloc, without and under the preload (never re-executed).  Prints
 * the median time of a start of each over the rounds, and the ratios.
 *
 *   startup_bench PRELOAD_SO [ROUNDS] [BATCH]
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "bench_util.h"

extern char **environ;
extern int tm_in_tx(void) __attribute__((weak)); /* the mark of a tmfalloc user */

enum { PLAIN, KEEP, REEXEC, TRUE_PLAIN, TRUE_PRELOAD, WAYS };
static const char *const names[WAYS] = {
    "tmfalloc user, no preload", "tmfalloc user, TMF_ASLR=keep", "tmfalloc user, re-executed",
    "/bin/true, no preload", "/bin/true, preload",
};

/* The environment of a way: ours, with LD_PRELOAD and TMF_ASLR as it says. */
static char **env_of(int way, const char *preload)
{
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 3, sizeof *env);
    static char pre[4200];
    snprintf(pre, sizeof pre, "LD_PRELOAD=%s", preload);
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LD_PRELOAD=", 11) && strncmp(environ[i], "TMF_ASLR=", 9))
            env[k++] = environ[i];
    if (way != PLAIN && way != TRUE_PLAIN)
        env[k++] = pre;
    if (way == KEEP)
        env[k++] = "TMF_ASLR=keep";
    return env;
}

/* Seconds per start, over a batch. */
static double batch(const char *prog, char **env, int count)
{
    char *argv[] = {(char *)prog, "--noop", NULL};
    double t = now();
    for (int i = 0; i < count; i++) {
        pid_t pid;
        int status;
        if (posix_spawn(&pid, prog, NULL, NULL, argv, env) != 0 || waitpid(pid, &status, 0) != pid ||
            !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            die("start", "the child failed");
    }
    return (now() - t) / count;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--noop") == 0)
        return tm_in_tx && tm_in_tx() ? 1 : 0;
    if (argc < 2) {
        fprintf(stderr, "usage: startup_bench PRELOAD_SO [ROUNDS] [BATCH]\n");
        return 2;
    }
    int rounds = argc > 2 ? atoi(argv[2]) : 9, count = argc > 3 ? atoi(argv[3]) : 100;
    double t[WAYS][64];
    char **env[WAYS], self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        die("readlink", "/proc/self/exe");
    self[len] = 0;
    if (rounds > 64)
        rounds = 64;
    for (int w = 0; w < WAYS; w++)
        env[w] = env_of(w, argv[1]);
    for (int r = 0; r < rounds; r++) /* the order turns: drift hits every way */
        for (int k = 0; k < WAYS; k++) {
            int w = (r + k) % WAYS;
            t[w][r] = batch(w >= TRUE_PLAIN ? "/bin/true" : self, env[w], count);
        }
    double m[WAYS];
    printf("start-up of a program that exits at once, %d starts a round, median of %d rounds\n", count, rounds);
    for (int w = 0; w < WAYS; w++) {
        m[w] = median(t[w], rounds);
        printf("%-28s %7.1f us\n", names[w], m[w] * 1e6);
    }
    printf("ratio re-executed / TMF_ASLR=keep: %.2f (the re-execution's own cost: %.0f us)\n", m[REEXEC] / m[KEEP],
           (m[REEXEC] - m[KEEP]) * 1e6);
    printf("ratio re-executed / plain start:   %.2f\n", m[REEXEC] / m[PLAIN]);
    printf("ratio /bin/true under the preload / plain: %.2f\n", m[TRUE_PRELOAD] / m[TRUE_PLAIN]);
    printf("RESULT startup_reexec_ratio=%.3f\n", m[REEXEC] / m[KEEP]);
    return 0;
}
