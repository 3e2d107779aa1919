/*
 * startup_bench — what the preload's re-execution without address
 * randomisation (preload/aslr.c) costs a program at start-up.
 *
 * Starts a program that exits at once (this one, with --noop, a small
 * dynamically linked executable), in batches of BATCH starts, three ways
 * taking turns: without the preload, under the preload with TMF_ASLR=keep
 * (no re-execution), and under the preload as it comes (one re-execution
 * when the kernel randomises).  Prints the median time of a start of each
 * over the rounds and their ratios.
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

enum { PLAIN, KEEP, REEXEC, WAYS };
static const char *const names[WAYS] = {
    "plain start (no preload)", "preload, TMF_ASLR=keep", "preload, re-executed",
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
    if (way != PLAIN)
        env[k++] = pre;
    if (way == KEEP)
        env[k++] = "TMF_ASLR=keep";
    return env;
}

/* Seconds per start, over a batch. */
static double batch(char **env, int count)
{
    char *argv[] = {"/proc/self/exe", "--noop", NULL};
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        die("readlink", "/proc/self/exe");
    self[len] = 0;
    argv[0] = self;
    double t = now();
    for (int i = 0; i < count; i++) {
        pid_t pid;
        int status;
        if (posix_spawn(&pid, self, NULL, NULL, argv, env) != 0 || waitpid(pid, &status, 0) != pid ||
            !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            die("start", "the child failed");
    }
    return (now() - t) / count;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--noop") == 0)
        return 0;
    if (argc < 2) {
        fprintf(stderr, "usage: startup_bench PRELOAD_SO [ROUNDS] [BATCH]\n");
        return 2;
    }
    int rounds = argc > 2 ? atoi(argv[2]) : 9, count = argc > 3 ? atoi(argv[3]) : 100;
    double t[WAYS][64];
    char **env[WAYS];
    if (rounds > 64)
        rounds = 64;
    for (int w = 0; w < WAYS; w++)
        env[w] = env_of(w, argv[1]);
    for (int r = 0; r < rounds; r++) /* the order turns: drift hits every way */
        for (int k = 0; k < WAYS; k++) {
            int w = (r + k) % WAYS;
            t[w][r] = batch(env[w], count);
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
    printf("RESULT startup_reexec_ratio=%.3f\n", m[REEXEC] / m[KEEP]);
    return 0;
}
