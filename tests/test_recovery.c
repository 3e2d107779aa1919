/* test_recovery.c — crash safety at the edges: the rewrite a failed sync
 * owes (S4), a checkpoint killed before its sync, detached readers, and
 * corrupt or foreign logs and lock files. */
#include "util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <string.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/stat.h>
#include <unistd.h>
#include "internal.h"
#include "os.h"

struct root { char *blk; long a; };

/* A store of 128 KiB with one commit: the first record's size is small. */
static tm_store *small_store(const char *path, struct root **rt)
{
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st;
    o.initial_size = 128 << 10;
    TU_OK(tm_open(path, &o, &st));
    *rt = tm_store_root(st, sizeof **rt);
    TU_OK(tm_store_begin(st));
    (*rt)->a = 1;
    TU_OK(tm_store_commit(st));
    return st;
}

/* resync set, then a commit whose record does not fit the ring: the
 * checkpoint inside write_record replays the generation, whose first
 * record truncates the store file below the transaction's pages. */
Test(recovery, a_rewrite_owed_by_a_failed_sync_keeps_the_transactions_pages)
{
    const char *path = tu_path("rw.tmf");
    struct root *rt;
    tm_store *st = small_store(path, &rt);      /* rec 1: size 128K */
    TU_OK(tm_store_begin(st));
    rt->blk = tm_store_malloc(st, 3 << 20);     /* grows the arena */
    cr_assert_not_null(rt->blk);
    memset(rt->blk, 'X', 4096);
    TU_OK(tm_store_commit(st));                 /* rec 2: larger size */
    cr_assert_eq(tu_checkpoint_failing_sync(st), -EIO);
    TU_OK(tm_store_begin(st));
    memset(rt->blk, 'Y', 4096);
    memset(rt->blk + 4096, 'Z', (2200 << 10));  /* a record larger than the ring's rest */
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_read_begin(st));
    int ok = rt->blk[0] == 'Y' && rt->blk[2000 << 10] == 'Z';
    TU_OK(tm_store_read_end(st));
    TU_OK(tm_close(st));
    st = tu_open(path);
    rt = tm_store_root(st, sizeof *rt);
    TU_OK(tm_store_read_begin(st));
    ok &= rt->blk[0] == 'Y' && rt->blk[2000 << 10] == 'Z';
    TU_OK(tm_store_read_end(st));
    TU_OK(tm_close(st));
    cr_assert(ok, "the committed bytes were lost");
}

/* The same, the transaction growing the arena: the file is cut below its
 * new pages, which the record is then read from. */
Test(recovery, a_rewrite_owed_by_a_failed_sync_keeps_a_growing_transactions_pages, .signal = 0)
{
    struct root *rt;
    tm_store *st = small_store(tu_path("rg.tmf"), &rt);
    cr_assert_eq(tu_checkpoint_failing_sync(st), -EIO);
    TU_OK(tm_store_begin(st));
    rt->blk = tm_store_malloc(st, 3 << 20);     /* grows the arena */
    memset(rt->blk, 'Z', (2200 << 10));         /* does not fit the ring */
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
}

/* A read-only opener that cannot write the lock file (EACCES) is detached;
 * lock.c says it and read-write handles refuse each other (EBUSY). */
static int open_eacces(const char *p, int flags, unsigned mode)
{
    size_t n = strlen(p);
    if (n > 5 && strcmp(p + n - 5, ".lock") == 0)
        return -EACCES;
    return os_real.open(p, flags, mode);
}

Test(recovery, a_read_write_open_is_refused_while_a_detached_reader_is_open)
{
    const char *path = tu_path("det.tmf");
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st;
    int go[2], ready[2], status;
    char c;
    TU_OK(tm_open(path, &o, &st));
    long *root = tm_store_root(st, sizeof(long) * 1024);
    TU_OK(tm_store_begin(st)); root[0] = 1; TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
    cr_assert_eq(pipe(go), 0); cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    if (pid == 0) {
        tm_options ro = tu_opts(TM_SYNC_FULL);
        tm_store *r;
        ro.read_only = 1;
        os_calls.open = open_eacces;
        int e = tm_open(path, &ro, &r);
        os_calls = os_real;
        if (e) _exit(10 + e % 100);
        long *rr = tm_store_root(r, 0);
        if (tm_store_read_begin(r)) _exit(3);
        long v0 = rr[0];
        if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1) _exit(2);
        long v1 = rr[0];     /* inside one read transaction */
        tm_store_read_end(r);
        _exit(v0 == v1 ? 0 : 1);
    }
    cr_assert_eq(read(ready[0], &c, 1), 1);
    int e = tm_open(path, &o, &st);
    if (e == 0) {
        root = tm_store_root(st, 0);
        TU_OK(tm_store_begin(st)); root[0] = 2; TU_OK(tm_store_commit(st));
        TU_OK(tm_close(st));
    }
    cr_assert_eq(write(go[1], "g", 1), 1);
    waitpid(pid, &status, 0);
    cr_assert_eq(e, EBUSY);
}

/* A record header whose len wraps off + len past 2^64. */
Test(recovery, a_record_whose_length_wraps_is_discarded)
{
    const char *path = tu_path("wrap.tmf");
    char logp[600];
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st;
    int status;
    snprintf(logp, sizeof logp, "%s.log", path);
    pid_t pid = fork();
    if (pid == 0) {
        if (tm_open(path, &o, &st)) _exit(9);
        long *root = tm_store_root(st, 64);
        tm_store_begin(st); root[0] = 7; tm_store_commit(st);
        tm_store_begin(st); root[0] = 8; tm_store_commit(st);
        _exit(0); /* no close: the records stay in the log */
    }
    waitpid(pid, &status, 0);
    int fd = open(logp, O_RDWR);
    struct log_rec rec, last;
    uint64_t off = LOG_START, last_off = 0;
    while (pread(fd, &rec, sizeof rec, (off_t)off) == (ssize_t)sizeof rec && rec.magic == LOG_MAGIC && rec.len)
        last = rec, last_off = off, off += rec.len;
    cr_assert(last_off && last.seq >= 2, "no records");
    last.len = (uint64_t)0 - last_off + 64; /* off + len wraps past 2^64 */
    cr_assert_eq(pwrite(fd, &last, sizeof last, (off_t)last_off), (ssize_t)sizeof last);
    close(fd);
    TU_OK(tm_open(path, &o, &st)); /* the corrupt record is discarded, the one before kept */
    cr_assert_eq(*(long *)tm_store_root(st, 0), 7);
    TU_OK(tm_close(st));
}

/* ---- a checkpointer killed between its slot write and the slot's sync ---- */
static int ck_fd = -1, ck_n;
static const char *ck_img;
static void copy_fd_to(int fd, const char *to)
{
    static char buf[1 << 16];
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ssize_t n;
    off_t off = 0;
    while ((n = pread(fd, buf, sizeof buf, off)) > 0) {
        if (write(out, buf, (size_t)n) != n) _exit(7);
        off += n;
    }
    close(out);
}
static int ck_fdatasync(int fd)
{
    if (fd != ck_fd)
        return os_real.fdatasync(fd);
    if (++ck_n == 2)
        _exit(0); /* killed while the new slot is only in the page cache */
    int r = os_real.fdatasync(fd);
    copy_fd_to(fd, ck_img); /* the store file as the disk has it now */
    return r;
}
static ino_t disk_ino; /* the store file whose synced state img models */
static int disk_fdatasync(int fd)
{
    struct stat sb;
    int r = os_real.fdatasync(fd);
    if (r == 0 && fstat(fd, &sb) == 0 && sb.st_ino == disk_ino)
        copy_fd_to(fd, ck_img);
    return r;
}

/* The last closer checkpoints and is killed after writing the new header
 * slot, before syncing it; the next opener commits (TMF_SYNC=full), then
 * the power is cut: the store file is as last synced, the log as the
 * commit's sync left it.  The commit must survive. */
Test(recovery, a_commit_after_a_checkpoint_killed_before_its_sync_survives_a_power_cut)
{
    char img[600], logp[600], imglog[600];
    const char *path = tu_path("ck.tmf");
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st;
    struct stat sb;
    int status;
    snprintf(img, sizeof img, "%s.disk", path);
    snprintf(logp, sizeof logp, "%s.log", path);
    snprintf(imglog, sizeof imglog, "%s.disk.log", path);
    ck_img = img;
    pid_t pid = fork();
    if (pid == 0) {
        if (tm_open(path, &o, &st))
            _exit(9);
        long *root = tm_store_root(st, 64);
        tm_store_begin(st);
        root[0] = 1;
        tm_store_commit(st);
        ck_fd = st->fd;
        os_calls.fdatasync = ck_fdatasync;
        tm_close(st); /* the last handle checkpoints: dies inside */
        _exit(8);
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %#x", status);
    cr_assert_eq(stat(path, &sb), 0);
    disk_ino = sb.st_ino;
    os_calls.fdatasync = disk_fdatasync;
    TU_OK(tm_open(path, &o, &st));
    long *root = tm_store_root(st, 0);
    TU_OK(tm_store_begin(st));
    root[0] = 2;
    TU_OK(tm_store_commit(st));
    os_calls = os_real;
    int lfd = open(logp, O_RDONLY); /* the power cut */
    copy_fd_to(lfd, imglog);
    close(lfd);
    TU_OK(tm_close(st));
    TU_OK(tm_open(img, &o, &st));
    cr_assert_eq(*(long *)tm_store_root(st, 0), 2, "a durable commit was lost");
    TU_OK(tm_close(st));
}

/* ---- a writer killed inside rewrite_records (S4 resync) ---- */
static int rk_fd = -1;
static uint64_t rk_off;
static ssize_t rk_write_at(int fd, const void *b, size_t len, off_t off)
{
    ssize_t r = os_real.write_at(fd, b, len, off);
    long v = 0;
    if (fd == rk_fd && pread(fd, &v, sizeof v, (off_t)rk_off) == sizeof v && v == 11)
        _exit(0); /* killed: the store file holds commit 11's root again */
    return r;
}

Test(recovery, a_writer_killed_in_a_rewrite_leaves_no_older_state_behind)
{
    const char *path = tu_path("rk.tmf");
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st;
    int status;
    TU_OK(tm_open(path, &o, &st));
    long *root = tm_store_root(st, 64);
    for (long v = 11; v <= 13; v++) {
        TU_OK(tm_store_begin(st)); root[0] = v; TU_OK(tm_store_commit(st));
    }
    cr_assert_eq(tu_checkpoint_failing_sync(st), -EIO);
    rk_off = (uint64_t)((char *)root - (char *)tm_store_base(st));
    pid_t pid = fork();
    if (pid == 0) {
        tm_close(st); /* the child's copy of the parent's handle */
        tm_store *mine = tu_open_or_exit(path);
        rk_fd = mine->fd;
        os_calls.write_at = rk_write_at;
        tu_checkpoint(mine);
        _exit(5);
    }
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %#x", status);
    pid = fork();
    if (pid == 0) { /* another process reads */
        tm_close(st);
        tm_store *r;
        tm_options ro = tu_opts(TM_SYNC_FULL);
        int oe = tm_open(path, &ro, &r);
        if (oe)
            _exit(98);
        long *rr = tm_store_root(r, 0);
        int e = tm_store_read_begin(r); /* heals the dead writer first */
        if (e)
            _exit(99);
        long v = rr[0];
        tm_store_read_end(r);
        _exit((int)v);
    }
    waitpid(pid, &status, 0);
    long v = WEXITSTATUS(status);
    TU_OK(tm_close(st));
    cr_assert_eq(v, 13);
}

/* ---- resync kept with the lock file's state ---- */

Test(recovery, a_rewrite_owed_survives_a_kept_lock_file)
{
    const char *path = tu_path("rsk.tmf");
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st;
    int status, go[2], ready[2];
    char c;
    pid_t a = fork();
    if (a == 0) {
        st = tu_open_or_exit(path);
        long *root = tm_store_root(st, 64);
        for (long v = 11; v <= 13; v++) { tm_store_begin(st); root[0] = v; tm_store_commit(st); }
        if (tu_checkpoint_failing_sync(st) != -EIO || !st->lk.sh->resync) _exit(3);
        _exit(0); /* dies: the lock file is kept (same boot), its resync is not */
    }
    waitpid(a, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert_eq(pipe(go), 0); cr_assert_eq(pipe(ready), 0);
    pid_t r = fork();
    if (r == 0) { /* a read-only handle attaches first */
        tm_options ro = tu_opts(TM_SYNC_FULL);
        tm_store *rs;
        ro.read_only = 1;
        if (tm_open(path, &ro, &rs)) _exit(4);
        if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1) _exit(2);
        _exit(0);
    }
    cr_assert_eq(read(ready[0], &c, 1), 1);
    TU_OK(tm_open(path, &o, &st)); /* not first: no recovery */
    tu_count_store_writes(st->fd);
    TU_OK(tu_checkpoint(st));
    os_calls = os_real;
    cr_assert_eq(write(go[1], "g", 1), 1);
    waitpid(r, &status, 0);
    TU_OK(tm_close(st));
    cr_assert_gt(tu_store_writes, 0, "the checkpoint after a failed sync did not rewrite the records (S4)");
}

Test(recovery, another_stores_log_beside_a_new_store_is_kept)
{
    char a[512], b[512], cmd[2200];
    snprintf(a, sizeof a, "%s", tu_path("fa.tmf"));
    snprintf(b, sizeof b, "%s", tu_path("fb.tmf"));
    int status;
    pid_t pid = fork();
    if (pid == 0) { /* store a: commits left in its log */
        tm_store *st = tu_open_or_exit(a);
        long *root = tm_store_root(st, 64);
        tm_store_begin(st); root[0] = 42; tm_store_commit(st);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    tm_store *st = tu_open(b); /* a new store b, nothing committed */
    TU_OK(tm_close(st));
    snprintf(cmd, sizeof cmd, "cp '%s.log' '%s.log' && cp '%s.log' '%s.log.orig'", a, b, a, a);
    cr_assert_eq(system(cmd), 0);
    tm_options o = tu_opts(TM_SYNC_FULL);
    int e = tm_open(b, &o, &st);
    if (e == 0)
        tm_close(st);
    cr_assert_eq(e, TM_ECORRUPT);
    snprintf(cmd, sizeof cmd, "cmp -s '%s.log' '%s.log.orig'", b, a);
    cr_assert_eq(system(cmd), 0, "the other store's log was changed");
}

Test(recovery, a_kept_lock_file_with_a_wrapping_offset_is_not_trusted)
{
    char p[512], lockp[600];
    snprintf(p, sizeof p, "%s", tu_path("kw.tmf"));
    snprintf(lockp, sizeof lockp, "%s.lock", p);
    int status;
    pid_t pid = fork();
    if (pid == 0) {
        tm_store *st = tu_open_or_exit(p);
        long *root = tm_store_root(st, 64);
        tm_store_begin(st); root[0] = 42; tm_store_commit(st);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    int fd = open(lockp, O_RDWR);
    uint64_t v = (uint64_t)0 - 32;
    cr_assert_eq(pwrite(fd, &v, 8, offsetof(struct tm_shared, last_off)), 8);
    close(fd);
    pid = fork();
    if (pid == 0) {
        tm_options ro = tu_opts(TM_SYNC_FULL);
        tm_store *st;
        ro.read_only = 1;
        if (tm_open(p, &ro, &st) != 0)
            _exit(1);
        _exit(*(long *)tm_store_root(st, 0) == 42 ? 0 : 2);
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
}
