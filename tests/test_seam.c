/*
 * test_seam.c — every system call of the core goes through the os_calls
 * table (src/os.h), so a fault injected there reaches it: locks, mapping,
 * protection and opening fail with their error, and the store stays whole.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static tm_os saved;
static int fail_err;   /* the error the armed call returns */
static int fail_after; /* calls let through before it fails; -1: every call */

static int should_fail(void)
{
    if (fail_after < 0)
        return 1;
    return fail_after-- == 0;
}

static void restore(void)
{
    os_calls = saved;
}

static void arm(int err, int after)
{
    saved = os_calls;
    fail_err = err;
    fail_after = after;
}

TestSuite(seam, .fini = restore);

static int lock_fails(int fd, int cmd, void *fl)
{
    if (cmd == F_SETLKW && should_fail())
        return -fail_err;
    return saved.fcntl_lock(fd, cmd, fl);
}

/* The file locks taken at open, one after the other: whichever fails, the
 * open fails with its error and leaves nothing locked. */
Test(seam, a_failed_lock_fails_the_open_and_nothing_else)
{
    const char *path = tu_path("lock.tmf");
    tm_store *st = tu_open(path);
    long *root = tm_store_root(st, sizeof(long));
    TU_OK(tm_store_begin(st));
    *root = 1;
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
    for (int k = 0; k < 3; k++) { /* the lock file's LF_INIT, LF_USERS, LF_PID */
        arm(ENOLCK, k);
        os_calls.fcntl_lock = lock_fails;
        cr_assert_eq(tm_open(path, NULL, &st), ENOLCK, "lock %d", k);
        restore();
        cr_assert_not(tu_writer_lock_held(path));
    }
    st = tu_open(path);
    cr_assert_eq(*(long *)tm_store_root(st, sizeof(long)), 1);
    TU_OK(tm_close(st));
}

static int mprotect_fails(void *addr, size_t len, int prot)
{
    if (should_fail())
        return -fail_err;
    return saved.mprotect(addr, len, prot);
}

Test(seam, a_failed_mprotect_in_growth_loses_nothing)
{
    const char *path = tu_path("grow.tmf");
    tm_store *st = tu_open(path);
    long *root = tm_store_root(st, sizeof(long));
    struct stat sb;
    tm_stats_t s0, s1;
    void *p;
    TU_OK(tm_store_begin(st));
    *root = 5;
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_stats(st, &s0));
    TU_OK(tm_store_begin(st));
    arm(ENOMEM, -1);
    os_calls.mprotect = mprotect_fails;
    p = tm_store_malloc(st, s0.arena_size * 2); /* must grow the arena */
    restore();
    cr_assert_null(p, "the allocation succeeded without the growth's mprotect");
    cr_assert_eq(errno, ENOMEM);
    tm_store_abort(st);
    TU_OK(tm_store_stats(st, &s1));
    cr_assert_eq(s1.arena_size, s0.arena_size);
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq((uint64_t)sb.st_size, s0.arena_size, "the file kept the failed growth");
    TU_OK(tm_close(st));
    st = tu_open(path);
    cr_assert_eq(*(long *)tm_store_root(st, sizeof(long)), 5);
    TU_OK(tm_store_check(st, NULL, 0));
    TU_OK(tm_close(st));
}

static void *mmap_fails(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (fd >= 0 && (flags & MAP_PRIVATE) && should_fail())
        return (void *)(intptr_t)-fail_err;
    return saved.mmap(addr, len, prot, flags, fd, off);
}

Test(seam, a_failed_mapping_fails_the_open_and_leaves_no_lock)
{
    const char *path = tu_path("map.tmf");
    tm_store *st = tu_open(path);
    TU_OK(tm_close(st));
    arm(ENOMEM, -1);
    os_calls.mmap = mmap_fails;
    cr_assert_eq(tm_open(path, NULL, &st), ENOMEM);
    cr_assert_null(st);
    restore();
    cr_assert_not(tu_writer_lock_held(path));
    st = tu_open(path);
    TU_OK(tm_close(st));
}

static int open_fails(const char *path, int flags, unsigned mode)
{
    if (should_fail())
        return -fail_err;
    return saved.open(path, flags, mode);
}

Test(seam, a_failed_open_of_the_log_is_reported)
{
    const char *path = tu_path("open.tmf");
    tm_store *st = tu_open(path);
    TU_OK(tm_close(st));
    arm(EMFILE, 1); /* the store file opens, its log does not */
    os_calls.open = open_fails;
    cr_assert_eq(tm_open(path, NULL, &st), EMFILE);
    restore();
    st = tu_open(path);
    TU_OK(tm_close(st));
}

/* ---- the apply through the view ---- */

static int counted_fd = -1, pwrites;

static ssize_t counting_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    pwrites += fd == counted_fd;
    return saved.write_at(fd, buf, len, off);
}

/* A commit writes a page it applied lately through the writer's shared
 * mapping (the view), and any other by pwrite: here, two pages written by
 * every commit take at most a pwrite each, the first time (one of them
 * may have been applied already, as the root was made).  The file holds
 * the bytes all the same, for a reader of the file itself. */
Test(seam, a_commit_applies_through_the_mapping)
{
    const char *path = tu_path("view.tmf");
    tm_store *st = tu_open(path);
    long *root = tm_store_root(st, 3 * PAGE), got = 0;
    cr_assert_not_null(root);
    saved = os_calls;
    counted_fd = st->fd;
    os_calls.write_at = counting_pwrite;
    for (long i = 1; i <= 20; i++) {
        TU_OK(tm_store_begin(st));
        root[0] = i;
        root[2 * PAGE / sizeof(long)] = -i;
        TU_OK(tm_store_commit(st));
    }
    restore();
    cr_assert_leq(pwrites, 2, "%d pwrites to the store file in 20 commits", pwrites);
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pread(fd, &got, sizeof got, (off_t)((char *)&root[2 * PAGE / sizeof(long)] - (char *)tm_store_base(st))),
                 (ssize_t)sizeof got);
    cr_assert_eq(got, -20);
    close(fd);
    TU_OK(tm_close(st));
}

/* ---- writes that leave small folios, and the diff of cold pages ---- */

#define BLOCK (16 << 10)
static struct {
    int fd;
    off_t off;
    size_t len;
} writes[8192];
static int nwrites;

static ssize_t recording_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    if (nwrites < (int)(sizeof writes / sizeof *writes))
        writes[nwrites].fd = fd, writes[nwrites].off = off, writes[nwrites++].len = len;
    return saved.write_at(fd, buf, len, off);
}

/* The store file and the log take small writes at random places later,
 * each costing what the page cache's folio it lands in weighs (os.c):
 * what they are written in bulk with (here a commit of 64 whole pages,
 * and the log's zeros as it is made) goes in pieces, each within an
 * aligned block of 16 KiB, so that the kernel makes no larger folio. */
Test(seam, bulk_writes_leave_the_page_cache_in_small_folios)
{
    const char *path = tu_path("folios.tmf");
    saved = os_calls;
    nwrites = 0;
    os_calls.write_at = recording_pwrite;
    tm_store *st = tu_open(path);
    char *root = tm_store_root(st, 80 * PAGE);
    cr_assert_not_null(root);
    TU_OK(tm_store_begin(st));
    memset(root, 0x5a, 64 * PAGE);
    TU_OK(tm_store_commit(st));
    restore();
    size_t store = 0, log = 0;
    for (int i = 0; i < nwrites; i++) {
        if (writes[i].fd != st->fd && writes[i].fd != st->log.fd)
            continue;
        cr_assert_eq(writes[i].off / BLOCK, (writes[i].off + (off_t)writes[i].len - 1) / BLOCK,
                     "a write of %zu bytes at %lld crosses a block of 16 KiB", writes[i].len,
                     (long long)writes[i].off);
        *(writes[i].fd == st->fd ? &store : &log) += writes[i].len;
    }
    cr_assert_geq(store, 64 * PAGE, "the commit's pages were not written by pwrite (%zu bytes)", store);
    cr_assert_gt(log, 0, "the log was not filled with zeros by pwrite");
    TU_OK(tm_close(st));
}

/* A transaction's first cold pages are compared with copies saved at
 * their first write, the others with the file: either way only the
 * changed bytes are applied, and the file holds them.  25 pages, more
 * than SAVED, each changed in 8 bytes at an offset of its own. */
Test(seam, cold_pages_saved_or_not_apply_their_changed_bytes)
{
    const char *path = tu_path("saved.tmf");
    tm_store *st = tu_open(path);
    char *root = tm_store_root(st, 32 * PAGE);
    cr_assert_not_null(root);
    TU_OK(tm_store_begin(st));
    for (long pg = 0; pg < 25; pg++) /* pages unlike one another */
        memset(root + pg * PAGE, (int)pg + 1, PAGE);
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st)); /* a fresh handle: no copy kept, every page cold */
    st = tu_open(path);
    root = tm_store_root(st, 32 * PAGE);
    saved = os_calls;
    nwrites = 0;
    counted_fd = st->fd;
    os_calls.write_at = recording_pwrite;
    TU_OK(tm_store_begin(st));
    for (long pg = 0; pg < 25; pg++)
        memcpy(root + pg * PAGE + pg * 64 + 8, &pg, sizeof pg);
    TU_OK(tm_store_commit(st));
    restore();
    for (int i = 0; i < nwrites; i++)
        if (writes[i].fd == st->fd)
            cr_assert_leq(writes[i].len, 64, "a whole page applied (%zu bytes at %lld)", writes[i].len,
                          (long long)writes[i].off);
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    off_t base = (off_t)(root - (char *)tm_store_base(st));
    for (long pg = 0; pg < 25; pg++) {
        char want[PAGE], got[PAGE];
        memset(want, (int)pg + 1, sizeof want);
        memcpy(want + pg * 64 + 8, &pg, sizeof pg);
        cr_assert_eq(pread(fd, got, PAGE, base + pg * PAGE), PAGE);
        cr_assert_arr_eq(got, want, PAGE, "page %ld of the root", pg);
    }
    close(fd);
    TU_OK(tm_close(st));
}

/* Where the memcpy into a shared mapping meets SIGBUS (here: past the end
 * of the file; in life: a page without a block on a full file system), the
 * write is made by pwrite, which extends the file or reports the error. */
Test(seam, a_mapped_write_that_faults_falls_back_on_pwrite)
{
    const char *path = tu_path("sigbus.bin");
    char buf[100], back[100];
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, PAGE), 0);
    char *map = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_neq(map, MAP_FAILED);
    TU_OK(fault_install()); /* the handler that brings the write back */
    memset(buf, 0x7e, sizeof buf);
    TU_OK(-os_write_mapped(fd, map, buf, sizeof buf, 10)); /* within the file: a memcpy */
    TU_OK(-os_write_mapped(fd, map, buf, sizeof buf, PAGE + 10)); /* past its end: SIGBUS, then pwrite */
    struct stat sb;
    cr_assert_eq(fstat(fd, &sb), 0);
    cr_assert_eq(sb.st_size, PAGE + 10 + (off_t)sizeof buf);
    cr_assert_eq(pread(fd, back, sizeof back, PAGE + 10), (ssize_t)sizeof back);
    cr_assert_arr_eq(back, buf, sizeof buf);
    cr_assert_eq(pread(fd, back, sizeof back, 10), (ssize_t)sizeof back);
    cr_assert_arr_eq(back, buf, sizeof buf);
    munmap(map, 2 * PAGE);
    close(fd);
}

static int counted_log_fd = -1, pwritevs;

static ssize_t counting_pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    pwritevs += fd == counted_log_fd;
    return saved.writev_at(fd, iov, n, off);
}

/* With TMF_SYNC=none a commit's record goes into the log through a shared
 * mapping, with no system call; with TMF_SYNC=full by pwritev, whose
 * fdatasync follows.  Either way the record is in the file, and the store
 * reopens with every commit. */
Test(seam, records_go_through_a_mapping_without_sync_only)
{
    for (int sync = 0; sync < 2; sync++) {
        char path[600];
        snprintf(path, sizeof path, "%s", tu_path(sync ? "logmap-full.tmf" : "logmap-none.tmf"));
        tm_options o = tu_opts(sync ? TM_SYNC_FULL : TM_SYNC_NONE);
        tm_store *st;
        TU_OK(tm_open(path, &o, &st));
        long *root = tm_store_root(st, sizeof(long));
        cr_assert_not_null(root);
        saved = os_calls;
        counted_log_fd = st->log.fd;
        pwritevs = 0;
        os_calls.writev_at = counting_pwritev;
        for (long i = 1; i <= 20; i++) {
            TU_OK(tm_store_begin(st));
            *root = i;
            TU_OK(tm_store_commit(st));
        }
        restore();
        if (sync)
            cr_assert_geq(pwritevs, 20, "TMF_SYNC=full: %d pwritev for 20 records", pwritevs);
        else
            cr_assert_eq(pwritevs, 0, "TMF_SYNC=none: %d pwritev for 20 records", pwritevs);
        /* The last record, read from the file itself. */
        struct log_rec rec;
        int fd = open(st->log_path, O_RDONLY);
        cr_assert_geq(fd, 0);
        cr_assert_eq(pread(fd, &rec, sizeof rec, (off_t)st->log.last_off), (ssize_t)sizeof rec);
        close(fd);
        cr_assert_eq(rec.magic, LOG_MAGIC);
        cr_assert_eq(rec.seq, st->lk.sh->seq);
        TU_OK(tm_close(st));
        TU_OK(tm_open(path, &o, &st));
        cr_assert_eq(*(long *)tm_store_root(st, sizeof(long)), 20);
        TU_OK(tm_close(st));
    }
}
