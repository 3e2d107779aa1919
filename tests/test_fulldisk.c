/*
 * test_fulldisk.c — a store on a file system that fills up in the middle of
 * a transaction.
 *
 * The test makes a small file system of its own: an 8 MiB tmpfs mounted in a
 * private mount namespace (so it disappears with the test process whatever
 * happens); where mounting is not allowed it falls back to RLIMIT_FSIZE with
 * SIGXFSZ ignored, so that writes past the limit fail with EFBIG.  It says
 * which one it used (cr_log_info).  A ballast file takes part of the space,
 * so that space can be freed afterwards.
 *
 * Transactions then allocate and fill blocks until the growth of the arena
 * fails (tm_store_malloc: NULL, the transaction aborted), with smaller and
 * smaller blocks; then transactions rewrite every block (log records as
 * large as the heap, no growth) until a commit fails (ENOSPC, EFBIG).
 * Expected: the process gets error codes, never SIGBUS; a commit that failed
 * poisons the handle — begin and root growth give TM_EPOISONED, commit
 * TM_ENOTX, tm_store_malloc fails, a write to the arena outside a
 * transaction is still diagnosed — until it is reopened; the store reopens
 * with exactly the last commit that returned 0; once space is freed it
 * takes commits again.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define FS_SIZE ((size_t)8 << 20)
#define BALLAST ((size_t)2 << 20)
#define MAXBLK 256

struct froot {
    uint64_t gen;       /* commits that returned 0 */
    uint64_t n;         /* blocks */
    uint64_t rew;       /* rewrites: block i is filled with byte i + 1 + rew */
    unsigned char *blk[MAXBLK];
    uint64_t len[MAXBLK];
};

static char mnt[512];
static int use_rlimit;
static struct rlimit old_fsize;

static void make_small_fs(void)
{
    snprintf(mnt, sizeof mnt, "%s/fs", tu_dir());
    cr_assert_eq(mkdir(mnt, 0700), 0);
    /* TMF_FULLDISK_RLIMIT=1 forces the fallback (to test it where mounting works). */
    const char *force = getenv("TMF_FULLDISK_RLIMIT"), *why = "forced by TMF_FULLDISK_RLIMIT";
    struct rlimit rl;
    if (!(force && *force == '1')) {
        if (unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
            mount("tmpfs", mnt, "tmpfs", 0, "size=8m,mode=0700") == 0) {
            cr_log_info("full disk: an 8 MiB tmpfs at %s", mnt);
            return;
        }
        why = strerror(errno);
    }
    /* Not allowed to mount: files past FS_SIZE - BALLAST fail with EFBIG. */
    use_rlimit = 1;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old_fsize), 0);
    rl = old_fsize;
    rl.rlim_cur = FS_SIZE - BALLAST;
    signal(SIGXFSZ, SIG_IGN);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0, "setrlimit: %s", strerror(errno));
    cr_log_info("full disk: no tmpfs (%s); RLIMIT_FSIZE of %zu bytes, SIGXFSZ ignored", why, FS_SIZE - BALLAST);
}

/* Frees space: deletes the ballast, or lifts the file size limit. */
static void free_space(void)
{
    if (use_rlimit)
        cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old_fsize), 0);
    else
        cr_assert_eq(unlink(tu_path("fs/ballast")), 0);
}

static void fini(void)
{
    if (mnt[0] && !use_rlimit) {
        char p[600];
        snprintf(p, sizeof p, "%s/s.tmf", mnt);
        unlink(p);
        snprintf(p, sizeof p, "%s/s.tmf.log", mnt);
        unlink(p);
        unlink(tu_path("fs/ballast"));
        umount2(mnt, MNT_DETACH);
    }
}

static void write_ballast(void)
{
    static char buf[64 << 10];
    size_t done;
    int fd;
    if (use_rlimit)
        return;
    fd = open(tu_path("fs/ballast"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    memset(buf, 0x5a, sizeof buf);
    for (done = 0; done < BALLAST; done += sizeof buf)
        cr_assert_eq(write(fd, buf, sizeof buf), (ssize_t)sizeof buf);
    close(fd);
}

static tm_options fopts(void)
{
    tm_options o = tu_opts(TM_SYNC_FULL);
    o.initial_size = (size_t)256 << 10;
    return o;
}

static int open_store(tm_store **st)
{
    tm_options o = fopts();
    return tm_open(tu_path("fs/s.tmf"), &o, st);
}

/* The store holds exactly gen commits and n blocks, every block intact. */
static void expect_state(tm_store *st, uint64_t gen, uint64_t n, const char *ctx)
{
    struct froot *r;
    char msg[256] = "";
    uint64_t i, j;
    TU_OK(tm_store_read_begin(st));
    r = tm_store_root(st, sizeof *r);
    cr_assert_not_null(r, "%s: no root", ctx);
    cr_assert_eq(r->gen, gen, "%s: generation %llu, want %llu", ctx, (unsigned long long)r->gen,
                 (unsigned long long)gen);
    cr_assert_eq(r->n, n, "%s: %llu blocks, want %llu", ctx, (unsigned long long)r->n, (unsigned long long)n);
    for (i = 0; i < r->n; i++)
        for (j = 0; j < r->len[i]; j += 509)
            cr_assert_eq(r->blk[i][j], (unsigned char)(i + 1 + r->rew), "%s: block %llu damaged at %llu", ctx,
                         (unsigned long long)i, (unsigned long long)j);
    TU_OK(tm_store_read_end(st));
    cr_assert_eq(tm_store_check(st, msg, sizeof msg), 0, "%s: %s", ctx, msg);
}

/* One transaction adding a block of len bytes: 0, or the error of the
 * allocation (ENOMEM-like, the transaction aborted) or of the commit. */
static int add_block(tm_store *st, size_t len, int *grew_failed)
{
    struct froot *r;
    unsigned char *b;
    int rc;
    TU_OK(tm_store_begin(st));
    r = tm_store_root(st, sizeof *r);
    cr_assert_not_null(r);
    b = tm_store_malloc(st, len);
    if (!b) {
        int e = errno;
        tm_store_abort(st);
        *grew_failed = e;
        return e ? e : ENOMEM;
    }
    memset(b, (int)(r->n + 1 + r->rew), len);
    r->blk[r->n] = b;
    r->len[r->n] = len;
    r->n++;
    r->gen++;
    rc = tm_store_commit(st);
    return rc;
}

/* One transaction rewriting every block: a log record as large as the heap,
 * with no growth.  0 or the commit's error. */
static int rewrite_all(tm_store *st)
{
    struct froot *r;
    uint64_t i;
    TU_OK(tm_store_begin(st));
    r = tm_store_root(st, sizeof *r);
    cr_assert_not_null(r);
    r->rew++;
    for (i = 0; i < r->n; i++)
        memset(r->blk[i], (int)(i + 1 + r->rew), r->len[i]);
    r->gen++;
    return tm_store_commit(st);
}

static tm_store *misuse_st;
static unsigned char *misuse_p;

static void write_outside(void *arg)
{
    (void)arg;
    *misuse_p = 1;
}

Test(fulldisk, fills_up_mid_transaction_then_recovers, .timeout = 300, .fini = fini)
{
    tm_store *st = NULL;
    uint64_t gen = 0, n = 0;
    size_t len = (size_t)512 << 10;
    int rc = 0, grow_err = 0, commit_err = 0, i, r;
    char err[512];

    make_small_fs();
    write_ballast();
    TU_OK(open_store(&st));
    cr_assert_not_null(tm_store_root(st, sizeof(struct froot)));

    for (i = 0; i < 4 * MAXBLK / 5; i++) {
        grow_err = 0;
        rc = add_block(st, len, &grow_err);
        if (rc == 0) {
            gen++, n++;
            continue;
        }
        if (grow_err) { /* the arena could not grow: try smaller blocks */
            cr_log_info("growth failed at %llu commits: %s", (unsigned long long)gen, tm_strerror(grow_err));
            cr_assert(grow_err == ENOMEM || grow_err == ENOSPC || grow_err == EFBIG || grow_err == TM_EFULL,
                      "allocation failed with %d (%s)", grow_err, tm_strerror(grow_err));
            if (len > 4096) {
                len /= 4;
                continue;
            }
            /* The arena is as large as it gets: now fill the log. */
            while ((rc = rewrite_all(st)) == 0)
                gen++;
        }
        commit_err = rc;
        break;
    }
    cr_log_info("%llu commits, then %s", (unsigned long long)gen,
                commit_err ? tm_strerror(commit_err) : "no failed commit");
    cr_assert(commit_err, "the file system never filled up");

    if (commit_err) {
        cr_assert(commit_err == ENOSPC || commit_err == EFBIG || commit_err == ENOMEM,
                  "commit failed with %d (%s)", commit_err, tm_strerror(commit_err));
        /* Sticky: no transaction, no allocation, no second commit. */
        for (i = 0; i < 3; i++) {
            cr_assert_eq(tm_store_begin(st), TM_EPOISONED);
            cr_assert_eq(tm_store_commit(st), TM_ENOTX);
            cr_assert_null(tm_store_malloc(st, 16));
            errno = 0;
            cr_assert_null(tm_store_root(st, (size_t)1 << 20));
            cr_assert_eq(errno, TM_EPOISONED, "root growth: errno %d", errno);
        }
        /* Readers may still read; the arena stays write-protected. */
        r = tm_store_read_begin(st);
        cr_assert(r == 0 || r == TM_EPOISONED, "read_begin: %s", tm_strerror(r));
        if (r == 0) {
            struct froot *fr = tm_store_root(st, sizeof *fr);
            cr_assert_not_null(fr);
            cr_assert_eq(fr->gen, gen, "poisoned handle sees generation %llu, want %llu",
                         (unsigned long long)fr->gen, (unsigned long long)gen);
            misuse_p = (unsigned char *)fr;
            TU_OK(tm_store_read_end(st));
        } else {
            misuse_p = (unsigned char *)tm_store_base(st) + 2 * 4096;
        }
        misuse_st = st;
        r = tu_run_child(write_outside, NULL, err, sizeof err);
        cr_assert(WIFSIGNALED(r) && WTERMSIG(r) == SIGSEGV, "write outside: status %#x", r);
        cr_assert(strstr(err, "outside a write transaction"), "stderr: %s", err);
    } else {
        /* Only growth failed: the handle is fine, the last commit stands. */
        expect_state(st, gen, n, "after failed growth");
    }
    TU_OK(tm_close(st));

    /* Reopen while the disk is still full: the last commit, or a clean error. */
    r = open_store(&st);
    cr_assert(r == 0 || r == ENOSPC || r == EFBIG, "reopen on a full disk: %d (%s)", r, tm_strerror(r));
    if (r == 0) {
        cr_log_info("reopen on the full disk: fine");
        expect_state(st, gen, n, "reopened on a full disk");
        TU_OK(tm_close(st));
    } else {
        cr_log_info("reopen on the full disk: %s", tm_strerror(r));
    }

    free_space();
    TU_OK(open_store(&st));
    expect_state(st, gen, n, "reopened after freeing space");
    grow_err = 0;
    r = add_block(st, (size_t)256 << 10, &grow_err);
    cr_assert_eq(r, 0, "commit after freeing space: %s", tm_strerror(r));
    gen++, n++;
    r = rewrite_all(st);
    cr_assert_eq(r, 0, "rewrite after freeing space: %s", tm_strerror(r));
    gen++;
    expect_state(st, gen, n, "a commit after freeing space");
    TU_OK(tm_close(st));
    TU_OK(open_store(&st));
    expect_state(st, gen, n, "reopened at the end");
    TU_OK(tm_close(st));
}
