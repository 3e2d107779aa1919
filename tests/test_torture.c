/*
 * test_torture.c — many processes and many threads on one store, for a
 * bounded time, with writers killed at random.
 *
 * The state is a root object (struct troot): NELEM 8-byte cells spread over
 * about ten pages whose sum (mod 2^64) never changes, a generation counter
 * that every commit increments, and a list of heap blocks allocated and
 * freed inside the transactions, whose count, total size and contents are
 * recorded in the root.  A writer moves amounts between random cells,
 * allocates or frees list blocks and bumps the generation; now and then it
 * aborts instead.  Every reader checks, in a read transaction, that
 *   I1  the cells sum to TOTAL;
 *   I2  the generation never decreases as seen by that reader, and is at
 *       least the last generation any process saw committed before the read
 *       began (a commit that returned is visible to every later reader);
 *   I3  the list holds count blocks of the recorded total size, each with
 *       intact contents.
 *
 * processes: TMF_TORTURE_PROCS processes (default 4) alternate read and
 *   write transactions for TMF_TORTURE_SECONDS (default 4); the parent
 *   SIGKILLs one at random every few tens of milliseconds and starts it again.
 *   Children never call Criterion assertions (they hang in a forked child):
 *   they count in a shared anonymous mapping and report on stderr.
 * threads: TMF_TORTURE_THREADS threads (default 4) do the same in one
 *   process, with glibc malloc/free inside and outside their transactions,
 *   and one more thread churning glibc allocations only.  The same workers
 *   run under TSan as tests/progs/torture_threads.c (Criterion cannot start
 *   under TSan); the code both share is in tests/torture.h.
 * Afterwards: zero violations, every process/thread made progress, the
 * store reopens with the invariants intact and tm_store_check passes.
 */
#include "util.h"

#include <sys/wait.h>

#include "torture.h"

static void init_store(const char *path)
{
    tm_options o = tu_opts(TM_SYNC_FULL);
    int r = t_init_store(&o, path);
    cr_assert_eq(r, 0, "creating the store: %s", tm_strerror(r));
}

/* Reopens path and checks the invariants and the heap. */
static void final_check(const char *path)
{
    tm_options o = tu_opts(TM_SYNC_FULL);
    struct counters c = {0};
    uint64_t gen = 0;
    char msg[256] = "";
    int r = t_final_check(&o, path, &c, &gen, msg, sizeof msg);
    cr_assert_eq(c.violations, 0, "after reopen: %s", sh->first_violation);
    cr_assert_eq(r, 0, "final check: %s: %s", tm_strerror(r), msg);
    cr_log_info("final generation %llu", (unsigned long long)gen);
}

/* ---- processes ---- */

static void child(const char *path, int slot)
{
    tm_options o = tu_opts(slot % 2 ? TM_SYNC_NONE : TM_SYNC_FULL);
    struct counters *c = &sh->w[slot];
    uint64_t rng = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull + (uint64_t)slot, last = 0;
    tm_store *st = NULL;
    int r = tm_open(path, &o, &st);
    if (r) {
        violation(c, "child open: %llu (%llu)", (unsigned long long)r, 0);
        _exit(99);
    }
    c->starts++;
    while (!sh->stop) {
        read_once(st, &last, c);
        write_once(st, &rng, &last, c);
    }
    tm_close(st);
    _exit(0);
}

static pid_t spawn(const char *path, int slot)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        child(path, slot);
    return pid;
}

Test(torture, processes_with_random_kills, .timeout = 300)
{
    const char *path = tu_path("t.tmf");
    int nproc = (int)env_long("TMF_TORTURE_PROCS", 4), i, alive;
    double secs = (double)env_long("TMF_TORTURE_SECONDS", 4), end;
    pid_t pids[MAXWORKERS];
    uint64_t rng = 42, kills = 0, total = 0;

    if (nproc > MAXWORKERS)
        nproc = MAXWORKERS;
    sh = shared_map();
    cr_assert_not_null(sh);
    init_store(path);
    for (i = 0; i < nproc; i++)
        pids[i] = spawn(path, i);
    end = now() + secs;
    while (now() < end) {
        int status;
        usleep(10000 + t_rand(&rng) % 60000);
        i = (int)(t_rand(&rng) % (uint64_t)nproc);
        kill(pids[i], SIGKILL);
        cr_assert_eq(waitpid(pids[i], &status, 0), pids[i]);
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
            kills++;
        } else {
            cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d ended with status %#x: %s",
                      i, status, sh->first_violation);
        }
        pids[i] = spawn(path, i);
    }
    sh->stop = 1;
    for (i = 0, alive = 0; i < nproc; i++) {
        int status;
        cr_assert_eq(waitpid(pids[i], &status, 0), pids[i]);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d ended with status %#x: %s", i,
                  status, sh->first_violation);
        alive++;
    }
    for (i = 0; i < nproc; i++) {
        struct counters *c = &sh->w[i];
        cr_log_info("process slot %d: %llu starts, %llu reads, %llu commits, %llu aborts", i,
                    (unsigned long long)c->starts, (unsigned long long)c->reads,
                    (unsigned long long)c->writes, (unsigned long long)c->aborts);
        cr_assert_eq(c->violations, 0, "slot %d: %llu violations, first: %s", i,
                     (unsigned long long)c->violations, sh->first_violation);
        cr_assert_gt(c->reads, 0, "slot %d made no read transaction", i);
        cr_assert_gt(c->writes, 0, "slot %d committed nothing", i);
        total += c->writes;
    }
    cr_log_info("%llu kills survived, %llu commits, %d processes", (unsigned long long)kills,
                (unsigned long long)total, alive);
    cr_assert_gt(kills, 0);
    final_check(path);
}

Test(torture, threads_with_glibc_allocations, .timeout = 300)
{
    const char *path = tu_path("th.tmf");
    int nthr = (int)env_long("TMF_TORTURE_THREADS", 4), i;
    double end = now() + (double)env_long("TMF_TORTURE_SECONDS", 4);
    uint64_t total = 0;
    tm_store *st;

    if (nthr > MAXWORKERS - 1)
        nthr = MAXWORKERS - 1;
    sh = shared_map();
    cr_assert_not_null(sh);
    init_store(path);
    st = tu_open(path);
    cr_assert_eq(t_run_threads(st, nthr, end), 0);
    for (i = 0; i < nthr; i++) {
        struct counters *c = &sh->w[i];
        cr_log_info("thread %d: %llu reads, %llu commits, %llu aborts", i, (unsigned long long)c->reads,
                    (unsigned long long)c->writes, (unsigned long long)c->aborts);
        cr_assert_eq(c->violations, 0, "thread %d: %llu violations, first: %s", i,
                     (unsigned long long)c->violations, sh->first_violation);
        cr_assert_gt(c->reads, 0, "thread %d made no read transaction", i);
        cr_assert_gt(c->writes, 0, "thread %d committed nothing", i);
        total += c->writes;
    }
    cr_log_info("%llu commits by %d threads, %llu glibc churn rounds", (unsigned long long)total, nthr,
                (unsigned long long)sh->w[nthr].reads);
    TU_OK(tm_close(st));
    final_check(path);
}
