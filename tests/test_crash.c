/* test_crash.c — kill -9 at random moments: a child commits transactions in
 * a loop and is killed, many times over.  After each kill the store reopens,
 * its invariant holds (values that move between pages always sum to zero),
 * and the commit count never goes back past what the child was told. */
#include "util.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define NVALS (16 * 512) /* 16 pages of values */

struct root {
    uint64_t seq;
    int64_t sum_check; /* always 0: the sum of vals */
    int64_t vals[NVALS];
};

static int iterations(void)
{
    const char *s = getenv("TMF_CRASH_ITERS");
    return s && atoi(s) > 0 ? atoi(s) : 200;
}

/* The child: commit forever, report each commit that returned. */
static void committer(const char *path, tm_sync sync, int grow, int ack_fd, uint64_t seed)
{
    tm_options o = tu_opts(sync);
    tm_store *st;
    if (tm_open(path, &o, &st))
        _exit(99);
    for (;;) {
        struct root *r = tm_store_root(st, sizeof *r);
        if (!r || tm_store_begin(st))
            _exit(98);
        r->seq++;
        for (int k = 0; k < 8; k++) { /* move amounts between random pages */
            int a = (int)(tu_rand(&seed) % NVALS), b = (int)(tu_rand(&seed) % NVALS);
            int64_t x = (int64_t)(tu_rand(&seed) % 1000);
            r->vals[a] -= x;
            r->vals[b] += x;
        }
        if (grow && r->seq % 16 == 0) /* arena growth inside transactions */
            if (!tm_store_root(st, sizeof *r + (r->seq % 8) * PAGE * 4))
                _exit(97);
        if (tm_store_commit(st))
            _exit(96);
        uint64_t seq = ((struct root *)tm_store_root(st, sizeof *r))->seq;
        if (write(ack_fd, &seq, sizeof seq) != sizeof seq)
            _exit(95);
    }
}

static void crash_loop(tm_sync sync, int grow)
{
    const char *path = tu_path("crash.tmf");
    uint64_t seed = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid(), last_seq = 0;
    int n = iterations(), progressed = 0;

    cr_log_info("seed %llu, %d kills", (unsigned long long)seed, n);
    for (int it = 0; it < n; it++) {
        int fds[2], status;
        uint64_t ack = last_seq, v; /* nothing acknowledged: the last state seen */
        cr_assert_eq(pipe(fds), 0);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            close(fds[0]);
            committer(path, sync, grow, fds[1], seed + (uint64_t)it);
        }
        close(fds[1]);
        usleep((useconds_t)(2000 + tu_rand(&seed) % 60000));
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "iteration %d: child ended by itself, status %#x", it, status);
        while (read(fds[0], &v, sizeof v) == sizeof v)
            ack = v;
        close(fds[0]);

        tm_options o = tu_opts(sync);
        tm_store *st;
        int r = tm_open(path, &o, &st);
        cr_assert_eq(r, 0, "iteration %d: reopen: %s", it, tm_strerror(r));
        struct root *root = tm_store_root(st, sizeof *root);
        cr_assert_not_null(root);
        int64_t sum = 0;
        for (int i = 0; i < NVALS; i++)
            sum += root->vals[i];
        cr_assert_eq(sum, 0, "iteration %d: torn state, sum %lld", it, (long long)sum);
        cr_assert_geq(root->seq, ack, "iteration %d: commit %llu was acknowledged, store has %llu", it,
                      (unsigned long long)ack, (unsigned long long)root->seq);
        cr_assert_leq(root->seq, ack + 1, "iteration %d: store has commit %llu, only %llu acknowledged", it,
                      (unsigned long long)root->seq, (unsigned long long)ack);
        cr_assert_geq(root->seq, last_seq, "iteration %d: the commit count went back", it);
        progressed += root->seq > last_seq;
        last_seq = root->seq;
        TU_OK(tm_close(st));
    }
    cr_assert_gt(progressed, n / 2, "the child rarely committed: %d of %d", progressed, n);
}

Test(crash, kill9_full_sync, .timeout = 600)
{
    crash_loop(TM_SYNC_FULL, 0);
}

Test(crash, kill9_no_sync, .timeout = 600)
{
    crash_loop(TM_SYNC_NONE, 0);
}

Test(crash, kill9_with_growth, .timeout = 600)
{
    crash_loop(TM_SYNC_FULL, 1);
}
