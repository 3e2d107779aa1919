/*
 * replay_bench — recovery: how fast tm_open replays a redo log from a warm
 * page cache.
 *
 * A child process opens a fresh store (TMF_SYNC=none: the same log records
 * as full, only not synced one by one), commits transactions
 * of 64 pages each (distinct pages round-robin over a 64 MiB root) until the
 * log holds about LOG_MIB MiB of records (kept below the 64 MiB checkpoint
 * threshold, so nothing is retired), and then _exit()s without tm_close:
 * every record stays in the log.  The files are synced (so the page cache is
 * warm and clean); then, timed, the parent's tm_open, which as the first
 * opener replays every record, syncs the store file and checkpoints.  Figure:
 * bytes of log replayed / time of tm_open.  Measured with the reopen in
 * TMF_SYNC=full (a real recovery: the store file is synced) and in
 * TMF_SYNC=none (the replay alone, no fdatasync).  The parent checks that
 * the replayed data are the child's last commit.  Target: >= 1 GB/s.
 *
 *   replay_bench DIR [LOG_MIB (<= 60)] [ROUNDS]
 */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>

#include "bench_util.h"
#include "tmfalloc.h"

enum { PAGE = 4096, TXPAGES = 64, ROOTPAGES = 16384 };

static char path[4200], dir[4096];

static void sync_dir(void)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        syncfs(fd);
        close(fd);
    }
}

static tm_store *open_store(tm_sync sync)
{
    tm_options o;
    tm_store *st;
    int r;
    tm_options_init(&o);
    o.sync = sync;
    o.max_size = (size_t)1 << 30;
    if ((r = tm_open(path, &o, &st)) != 0)
        die("tm_open", tm_strerror(r));
    return st;
}

/* The child: fills the log, reports its size and the last value, dies. */
static void child(uint64_t log_bytes, int fd)
{
    tm_store *st = open_store(TM_SYNC_NONE); /* same records, built faster */
    char *root = tm_store_root(st, (size_t)ROOTPAGES * PAGE);
    tm_stats_t s;
    uint64_t rec = (TXPAGES + 2) * PAGE, v = 0, p = 0, out[2];
    if (!root)
        die("tm_store_root", "failed");
    tm_store_stats(st, &s);
    uint64_t start = s.log_bytes, ckpts = s.checkpoints;
    while (s.log_bytes - start + rec < log_bytes) {
        tm_store_begin(st);
        v++;
        for (int i = 0; i < TXPAGES; i++, p = (p + 1) % ROOTPAGES)
            memset(root + p * PAGE, (int)v, PAGE);
        if (tm_store_commit(st) != 0)
            die("tm_store_commit", "failed");
        tm_store_stats(st, &s);
        if (s.checkpoints != ckpts)
            die("replay_bench", "a checkpoint happened: LOG_MIB too big");
    }
    out[0] = s.log_bytes - start, out[1] = v;
    if (write(fd, out, sizeof out) != sizeof out)
        _exit(1);
    _exit(0); /* no tm_close: the log keeps its records */
}

/* One round: returns seconds of tm_open, *bytes the log replayed. */
static double round_once(uint64_t log_bytes, tm_sync sync, uint64_t *bytes)
{
    int fds[2];
    uint64_t in[2];
    remove_store(path);
    /* Create the store and its root outside the measured child's log. */
    tm_store *st = open_store(TM_SYNC_FULL);
    if (!tm_store_root(st, (size_t)ROOTPAGES * PAGE))
        die("tm_store_root", "failed");
    tm_close(st);
    if (pipe(fds) < 0)
        die("pipe", "failed");
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        child(log_bytes, fds[1]);
    }
    close(fds[1]);
    if (read(fds[0], in, sizeof in) != sizeof in)
        die("replay_bench", "the child failed");
    close(fds[0]);
    waitpid(pid, NULL, 0);
    sync_dir(); /* warm and clean page cache */
    double t = now();
    st = open_store(sync);
    t = now() - t;
    /* The last page the child wrote holds its last value. */
    char *root = tm_store_root(st, (size_t)ROOTPAGES * PAGE);
    uint64_t npages = in[1] * TXPAGES, last = (npages - 1) % ROOTPAGES;
    if ((unsigned char)root[last * PAGE + PAGE - 1] != (unsigned char)in[1])
        die("replay_bench", "the replayed store lacks the last commit");
    tm_close(st);
    remove_store(path);
    *bytes = in[0];
    return t;
}

int main(int argc, char **argv)
{
    snprintf(dir, sizeof dir, "%s", argc > 1 ? argv[1] : ".");
    snprintf(path, sizeof path, "%s/replay.tmf", dir);
    uint64_t mib = argc > 2 ? strtoull(argv[2], NULL, 10) : 60;
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    double full[32], none[32], gfull[32], gnone[32];
    uint64_t bytes = 0;
    if (mib > 60)
        mib = 60;
    if (rounds > 32)
        rounds = 32;
    for (int k = 0; k < rounds; k++) {
        tm_sync a = k % 2 ? TM_SYNC_NONE : TM_SYNC_FULL, b = k % 2 ? TM_SYNC_FULL : TM_SYNC_NONE;
        double ta = round_once(mib << 20, a, &bytes), tb = round_once(mib << 20, b, &bytes);
        full[k] = a == TM_SYNC_FULL ? ta : tb;
        none[k] = a == TM_SYNC_FULL ? tb : ta;
        gfull[k] = bytes / full[k] / 1e9, gnone[k] = bytes / none[k] / 1e9;
    }
    double mf = median(full, rounds), mn = median(none, rounds);
    double gf = median(gfull, rounds), gn = median(gnone, rounds);
    printf("recovery: tm_open replaying %.1f MiB of log (transactions of %d pages), warm page cache, "
           "median of %d rounds\n",
           bytes / 1048576.0, TXPAGES, rounds);
    printf("  %-40s %10.1f ms  %8.2f GB/s\n", "reopen TMF_SYNC=full (store synced)", mf * 1e3, gf);
    printf("  %-40s %10.1f ms  %8.2f GB/s\n", "reopen TMF_SYNC=none (replay alone)", mn * 1e3, gn);
    printf("  target >= 1 GB/s\n");
    printf("RESULT replay_rounds=%d\nRESULT replay_log_mib=%.2f\n", rounds, bytes / 1048576.0);
    printf("RESULT replay_full_ms=%.3f\nRESULT replay_full_gbs=%.4f\n", mf * 1e3, gf);
    printf("RESULT replay_none_ms=%.3f\nRESULT replay_none_gbs=%.4f\n", mn * 1e3, gn);
    return 0;
}
