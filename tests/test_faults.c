/*
 * test_faults.c — crash safety under injected I/O faults.
 *
 * The core does all its file writes through the os_calls table (src/os.h).
 * These tests replace its pwrite, pwritev, fdatasync, ftruncate and
 * fallocate entries with counting wrappers and make the k-th call fail
 * (EIO, ENOSPC), come up short (the os layer must retry), or come up short
 * and then fail, for k = 1, 2, ... until an operation completes without
 * reaching call k.  After each fault the real calls are restored and the
 * store is reopened: it must hold exactly the state of the last commit that
 * returned 0, and stay usable.
 *
 * The state is a root object: a generation number, an element count, a
 * checksum, and NELEM 8-byte elements that all encode the generation.  The
 * elements start at an offset that is 4 mod 8, so one of them straddles every
 * page boundary of the array (about a dozen pages).
 *
 * Variants: a plain commit; one that grows the arena; either followed by a
 * close (its checkpoint); and one made when the log ring is full, whose
 * commit checkpoints and doubles the ring before writing its record.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "os.h"
#include "genroot.h"

/* ---- the state under test ---- */

#define ROOT_BYTES (ELEM_OFF + 8 * NELEM)
/* Past the 128 KiB arena: grows it.  Its record (about 240 pages) is smaller
 * than LOG_CHUNK but does not fit in the log's first chunk, so the log is
 * extended with written zeros (log.c L5) during the commit. */
#define BIG_ROOT ((size_t)900 << 10)
#define INITIAL ((size_t)128 << 10)

static tm_options fopts(void)
{
    tm_options o = tu_opts(TM_SYNC_FULL);
    o.initial_size = INITIAL;
    return o;
}

/* Opens path with the real calls and checks it holds generation gen, with
 * commit sequence seq and a root of at least min_root bytes.  Returns the
 * open handle. */
static tm_store *open_expect(const char *path, int64_t gen, uint64_t seq, size_t min_root, const char *ctx)
{
    tm_options o = fopts();
    tm_store *st = NULL;
    struct tm_super *sb;
    tm_stats_t s;
    char why[160] = "";
    int64_t got;
    int r = tm_open(path, &o, &st);
    cr_assert_eq(r, 0, "%s: reopen: %s", ctx, tm_strerror(r));
    sb = super_of(st);
    cr_assert_neq(sb->root, 0, "%s: no root after reopen", ctx);
    cr_assert_geq(sb->root_size, min_root, "%s: root of %llu bytes, want >= %zu", ctx,
                  (unsigned long long)sb->root_size, min_root);
    TU_OK(tm_store_read_begin(st));
    got = root_gen((const unsigned char *)(uintptr_t)sb->root, why, sizeof why);
    TU_OK(tm_store_read_end(st));
    cr_assert_neq(got, -1, "%s: torn state after reopen: %s", ctx, why);
    cr_assert_eq(got, gen, "%s: generation %lld after reopen, want %lld", ctx, (long long)got, (long long)gen);
    TU_OK(tm_store_stats(st, &s));
    cr_assert_eq(s.commits, seq, "%s: commit sequence %llu, want %llu", ctx, (unsigned long long)s.commits,
                 (unsigned long long)seq);
    return st;
}

/* One more commit, then a reopen: the store stays usable after the fault. */
static void still_usable(const char *path, tm_store *st, int64_t gen, uint64_t seq, const char *ctx)
{
    unsigned char *root;
    TU_OK(tm_store_begin(st));
    root = tm_store_root(st, 1);
    cr_assert_not_null(root);
    fill(root, (uint64_t)gen + 1);
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
    st = open_expect(path, gen + 1, seq + 1, ROOT_BYTES, ctx);
    TU_OK(tm_close(st));
}

static void remove_store(const char *path)
{
    char log[600];
    snprintf(log, sizeof log, "%s.log", path);
    unlink(path);
    unlink(log);
}

/* ---- fault injection ---- */

enum { K_PWRITE = 1, K_PWRITEV = 2, K_FSYNC = 4, K_FTRUNC = 8, K_FALLOC = 16, K_ALL = 31, K_WRITES = 3 };
enum { M_EIO, M_ENOSPC, M_SHORT, M_SHORT_EIO };
enum { A_PASS, A_FAIL, A_SHORT };
enum { PH_NONE, PH_TX, PH_COMMIT, PH_AFTER, PH_CLOSE, PH_OPEN };
static const char *const mode_name[] = {"EIO", "ENOSPC", "short write", "short write then EIO"};
static const char *const phase_name[] = {"-", "transaction", "commit", "after commit", "close", "open"};

static struct {
    int armed;
    int mode;
    unsigned mask;     /* kinds of call that count */
    long k, count;     /* fire at the k-th counted call */
    int fail_next;     /* short then EIO: the retry fails */
    int fired, fired_phase;
    unsigned fired_kind;
    int phase;
    long calls;        /* every wrapped call, counted or not */
} fi;

static tm_os fi_saved;

static const char *kind_name(unsigned k)
{
    switch (k) {
    case K_PWRITE: return "pwrite";
    case K_PWRITEV: return "pwritev";
    case K_FSYNC: return "fdatasync";
    case K_FTRUNC: return "ftruncate";
    case K_FALLOC: return "fallocate";
    default: return "?";
    }
}

static int fi_action(unsigned kind)
{
    fi.calls++;
    if (!fi.armed)
        return A_PASS;
    if (fi.fail_next) {
        fi.fail_next = 0;
        return A_FAIL;
    }
    if (!(fi.mask & kind) || ++fi.count != fi.k)
        return A_PASS;
    fi.fired = 1;
    fi.fired_phase = fi.phase;
    fi.fired_kind = kind;
    switch (fi.mode) {
    case M_SHORT:
        return A_SHORT;
    case M_SHORT_EIO:
        fi.fail_next = 1;
        return A_SHORT;
    default:
        return A_FAIL;
    }
}

static int fi_err(void)
{
    return fi.mode == M_ENOSPC ? -ENOSPC : -EIO;
}

static ssize_t fi_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    int a = fi_action(K_PWRITE);
    if (a == A_FAIL)
        return fi_err();
    if (a == A_SHORT && len > 1)
        return fi_saved.write_at(fd, buf, len / 2, off);
    return fi_saved.write_at(fd, buf, len, off);
}

static ssize_t fi_write_mapped(int fd, char *map, const void *buf, size_t len, off_t off)
{
    int a = fi_action(K_PWRITE);
    if (a == A_FAIL)
        return fi_err();
    if (a == A_SHORT && len > 1)
        return fi_saved.write_mapped(fd, map, buf, len / 2, off);
    return fi_saved.write_mapped(fd, map, buf, len, off);
}

static ssize_t fi_pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    int a = fi_action(K_PWRITEV);
    if (a == A_FAIL)
        return fi_err();
    if (a == A_SHORT) {
        struct iovec v[1024];
        size_t total = 0, want;
        int i, m = 0;
        for (i = 0; i < n; i++)
            total += iov[i].iov_len;
        want = total / 2;
        for (i = 0; i < n && i < 1024 && want > 0; i++, m++) {
            v[m] = iov[i];
            if (v[m].iov_len > want)
                v[m].iov_len = want;
            want -= v[m].iov_len;
        }
        if (m > 0 && total > 1)
            return fi_saved.writev_at(fd, v, m, off);
    }
    return fi_saved.writev_at(fd, iov, n, off);
}

static int fi_fdatasync(int fd)
{
    return fi_action(K_FSYNC) == A_FAIL ? fi_err() : fi_saved.fdatasync(fd);
}

static int fi_ftruncate(int fd, off_t len)
{
    return fi_action(K_FTRUNC) == A_FAIL ? fi_err() : fi_saved.ftruncate(fd, len);
}

static int fi_fallocate(int fd, off_t off, off_t len)
{
    return fi_action(K_FALLOC) == A_FAIL ? fi_err() : fi_saved.fallocate(fd, off, len);
}

static void fi_arm(int mode, unsigned mask, long k)
{
    memset(&fi, 0, sizeof fi);
    fi.mode = mode, fi.mask = mask, fi.k = k, fi.armed = 1;
    fi_saved = os_calls;
    os_calls.write_at = fi_pwrite;
    os_calls.writev_at = fi_pwritev;
    os_calls.write_mapped = fi_write_mapped;
    os_calls.fdatasync = fi_fdatasync;
    os_calls.ftruncate = fi_ftruncate;
    os_calls.fallocate = fi_fallocate;
}

static void fi_disarm(void)
{
    if (fi.armed)
        os_calls = fi_saved;
    fi.armed = 0;
    fi.phase = PH_NONE;
}

static int is_error_mode(int mode)
{
    return mode != M_SHORT;
}

static int mode_errno(int mode)
{
    return mode == M_ENOSPC ? ENOSPC : EIO;
}

static unsigned mode_mask(int mode)
{
    return mode == M_SHORT || mode == M_SHORT_EIO ? K_WRITES : K_ALL;
}

TestSuite(faults, .fini = fi_disarm, .timeout = 600);

/* ---- a commit under faults ---- */

/* A store at generation 2: root created (seq 1), gens 1 and 2 committed
 * (seq 2, 3), the log holding all three records.  Real calls. */
static tm_store *setup_store(const char *path)
{
    tm_options o = fopts();
    tm_store *st = NULL;
    unsigned char *root;
    uint64_t g;
    remove_store(path);
    TU_OK(tm_open(path, &o, &st));
    cr_assert_not_null(root = tm_store_root(st, ROOT_BYTES));
    for (g = 1; g <= 2; g++) {
        TU_OK(tm_store_begin(st));
        fill(root, g);
        TU_OK(tm_store_commit(st));
    }
    return st;
}

/* Fills the log ring until the next commit of the root does not fit, so
 * that commit restarts the ring (a checkpoint, log.c L5) and, the ring
 * having filled in few commits, doubles it: both inside tm_store_commit.
 * The root stays at its generation.  Returns the commits made. */
static uint64_t fill_ring(tm_store *st)
{
    /* at least what the root's commit logs: it changes every element */
    uint64_t need = sizeof(struct log_rec) + 8 * NELEM, n = 1;
    char *scratch;
    TU_OK(tm_store_begin(st));
    cr_assert_not_null(scratch = tm_store_malloc(st, 64 * PAGE));
    TU_OK(tm_store_commit(st));
    while (log_fits(&st->log, need)) {
        size_t pages = log_fits(&st->log, need + log_pages_bound(65)) ? 64 : 1, i;
        TU_OK(tm_store_begin(st));
        for (i = 0; i < pages; i++) /* whole pages: records of whole pages */
            memset(scratch + i * PAGE, (int)n, PAGE);
        TU_OK(tm_store_commit(st));
        n++;
    }
    cr_assert_lt(st->n_commits - st->ckpt_commits, RING_MIN_COMMITS, "the ring would not double");
    return n;
}

enum { V_GROW = 1, V_CLOSE = 2, V_RING = 4 };
static const int variants[] = {0, V_GROW, V_CLOSE, V_GROW | V_CLOSE, V_RING};

struct tally {
    long cases, fired_tx, fired_commit_err, fired_commit_ok, fired_close;
    unsigned kinds;
};

/* Returns 1 when the fault was not reached (the loop is done). */
static int commit_case(int mode, int variant, long k, struct tally *t)
{
    char path[512], ctx[200];
    tm_store *st;
    unsigned char *root = NULL;
    int rc = 0, close_rc = 0, tx_err = 0, grow = variant & V_GROW, fired, phase, b;
    int64_t want;
    uint64_t extra = 0; /* commits that did not change the root */

    snprintf(path, sizeof path, "%s", tu_path("c.tmf"));
    st = setup_store(path);
    if (variant & V_RING)
        extra = fill_ring(st);

    fi_arm(mode, mode_mask(mode), k);
    fi.phase = PH_TX;
    rc = tm_store_begin(st);
    cr_assert_eq(rc, 0, "begin (no writes) failed: %s", tm_strerror(rc));
    root = tm_store_root(st, grow ? BIG_ROOT : 1);
    if (!root) { /* growth failed inside the transaction */
        tx_err = errno;
        tm_store_abort(st);
    } else {
        fill(root, 3);
        fi.phase = PH_COMMIT;
        rc = tm_store_commit(st);
    }
    fi.phase = PH_AFTER;
    if (variant & V_CLOSE) {
        fi.phase = PH_CLOSE;
        close_rc = tm_close(st);
        st = NULL;
    }
    fired = fi.fired, phase = fi.fired_phase;
    snprintf(ctx, sizeof ctx, "%s at call %ld (%s in %s), variant %s%s%s", mode_name[mode], k,
             fired ? kind_name(fi.fired_kind) : "not reached", phase_name[phase], grow ? "grow" : "plain",
             variant & V_CLOSE ? "+close" : "", variant & V_RING ? "+full ring" : "");
    fi_disarm();
    if (fired)
        t->kinds |= fi.fired_kind;
    t->cases++;
    /* the final checkpoint's error is close's (the commits stay in the log) */
    cr_assert(close_rc == 0 || (fired && phase == PH_CLOSE && close_rc == mode_errno(mode)),
              "%s: close returned %s", ctx, tm_strerror(close_rc));

    if (tx_err) {
        cr_assert(fired && phase == PH_TX, "%s: root growth failed without a fault (errno %d)", ctx, tx_err);
        want = 2;
        t->fired_tx++;
    } else if (rc != 0) {
        cr_assert(fired && phase == PH_COMMIT, "%s: commit failed (%s) without a fault", ctx, tm_strerror(rc));
        cr_assert(is_error_mode(mode), "%s: a short write must be retried, commit returned %s", ctx,
                  tm_strerror(rc));
        cr_assert_eq(rc, mode_errno(mode), "%s: commit returned %d (%s), want the injected %s", ctx, rc,
                     tm_strerror(rc), mode_name[mode]);
        want = 2;
        t->fired_commit_err++;
    } else {
        want = 3;
        if (fired && phase == PH_COMMIT)
            t->fired_commit_ok++;
        if (fired && phase == PH_CLOSE)
            t->fired_close++;
    }

    if (st) {
        int poisoned = rc != 0 || (fired && phase == PH_COMMIT && is_error_mode(mode));
        b = tm_store_begin(st);
        if (poisoned) {
            cr_assert_eq(b, TM_EPOISONED, "%s: begin after the fault returned %d (%s), want TM_EPOISONED", ctx,
                         b, tm_strerror(b));
            cr_assert_eq(tm_store_begin(st), TM_EPOISONED, "%s: poisoning must be sticky", ctx);
            errno = 0;
            cr_assert_null(tm_store_root(st, 2 * BIG_ROOT), "%s: root growth on a poisoned handle", ctx);
            cr_assert_eq(errno, TM_EPOISONED, "%s: errno %d", ctx, errno);
            if (rc != 0) { /* rolled back: the mapping shows the old state */
                char why[160] = "";
                const unsigned char *r0 = (const unsigned char *)(uintptr_t)super_of(st)->root;
                int64_t g = root_gen(r0, why, sizeof why);
                cr_assert_eq(g, 2, "%s: after the failed commit the handle shows gen %lld (%s)", ctx,
                             (long long)g, why);
            }
        } else if (b == 0) {
            char why[160] = "";
            int64_t g = root_gen(tm_store_root(st, 1), why, sizeof why);
            cr_assert_eq(g, want, "%s: the handle shows gen %lld (%s), want %lld", ctx, (long long)g, why,
                         (long long)want);
            tm_store_abort(st);
        } else {
            cr_assert(tx_err && b == TM_EPOISONED, "%s: begin returned %d (%s)", ctx, b, tm_strerror(b));
        }
        TU_OK(tm_close(st));
    }
    st = open_expect(path, want, (uint64_t)want + 1 + extra, want == 3 && grow ? BIG_ROOT : ROOT_BYTES, ctx);
    still_usable(path, st, want, (uint64_t)want + 1 + extra, ctx);
    remove_store(path);
    return !fired;
}

static void commit_loop(int mode)
{
    for (size_t v = 0; v < sizeof variants / sizeof *variants; v++) {
        int variant = variants[v];
        struct tally t;
        long k;
        memset(&t, 0, sizeof t);
        for (k = 1;; k++) {
            cr_assert_lt(k, 5000, "the commit never completes");
            if (commit_case(mode, variant, k, &t))
                break;
        }
        cr_log_info("faults %s, variant %d: %ld fault points (in tx %ld, failed commits %ld, after the "
                    "commit point %ld, in close %ld), kinds %#x",
                    mode_name[mode], variant, t.cases - 1, t.fired_tx, t.fired_commit_err, t.fired_commit_ok,
                    t.fired_close, t.kinds);
        if (is_error_mode(mode)) {
            cr_assert_gt(t.fired_commit_err, 0, "%s: no fault made a commit fail", mode_name[mode]);
            cr_assert_gt(t.fired_commit_ok, 0, "%s: no fault hit after the commit point", mode_name[mode]);
            if (mode_mask(mode) == K_ALL)
                cr_assert(t.kinds & K_FSYNC && t.kinds & K_PWRITE && t.kinds & K_PWRITEV, "kinds %#x", t.kinds);
            else
                cr_assert(t.kinds & K_PWRITE && t.kinds & K_PWRITEV, "kinds %#x", t.kinds);
            if ((variant & V_GROW) && mode_mask(mode) == K_ALL)
                cr_assert(t.kinds & K_FALLOC && t.fired_tx > 0, "growth faults not reached: kinds %#x", t.kinds);
        }
        if (variant & V_CLOSE)
            cr_assert_gt(t.fired_close, 0, "%s: no fault in the checkpoint of tm_close", mode_name[mode]);
        if ((variant & V_RING) && mode_mask(mode) == K_ALL) /* the checkpoint's syncs come first */
            cr_assert(t.fired_commit_err >= 3 && t.kinds & K_FSYNC, "%s: the ring's checkpoint not reached",
                      mode_name[mode]);
    }
}

Test(faults, commit_eio)
{
    commit_loop(M_EIO);
}

Test(faults, commit_enospc)
{
    commit_loop(M_ENOSPC);
}

Test(faults, commit_short_write)
{
    commit_loop(M_SHORT);
}

Test(faults, commit_short_write_then_eio)
{
    commit_loop(M_SHORT_EIO);
}

/* ---- poisoning is sticky ---- */

Test(faults, failed_commit_is_sticky)
{
    char path[512];
    tm_store *st;
    unsigned char *root;
    int i, r;

    snprintf(path, sizeof path, "%s", tu_path("p.tmf"));
    st = setup_store(path);
    root = tm_store_root(st, 1);
    TU_OK(tm_store_begin(st));
    fill(root, 3);
    fi_arm(M_EIO, K_FSYNC, 1); /* the log's fdatasync: before the commit point */
    r = tm_store_commit(st);
    cr_assert(fi.fired, "the commit made no fdatasync");
    fi_disarm();
    cr_assert_eq(r, EIO, "commit returned %d (%s)", r, tm_strerror(r));
    for (i = 0; i < 5; i++) { /* the disk is fine again: the handle is not */
        r = tm_store_begin(st);
        cr_assert_eq(r, TM_EPOISONED, "begin #%d returned %d (%s)", i, r, tm_strerror(r));
        cr_assert_null(tm_store_root(st, 2 * BIG_ROOT));
        cr_assert_eq(errno, TM_EPOISONED);
        cr_assert_eq(tm_store_commit(st), TM_ENOTX);
    }
    TU_OK(tm_close(st));
    st = open_expect(path, 2, 3, ROOT_BYTES, "sticky");
    still_usable(path, st, 2, 3, "sticky");
}

/* ---- a checkpoint whose header sync fails, then a power cut ---- */

/* The child's view of the disk: at every fdatasync that succeeds, the
 * whole file as it is then is copied to "<file>.durable"; the first sync
 * after a header slot is written fails with EIO instead (nothing of it
 * reaches the disk). */
static struct {
    char path[2][620]; /* the store, its log */
    ino_t ino[2];
    int header_written, failed;
} hs;

static int hs_file(int fd)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return -1;
    for (int i = 0; i < 2; i++)
        if (sb.st_ino == hs.ino[i])
            return i;
    return -1;
}

static void hs_snapshot(int k, int fd)
{
    char side[640], buf[1 << 16];
    ssize_t n;
    off_t off = 0;
    snprintf(side, sizeof side, "%s.durable", hs.path[k]);
    int out = open(side, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (out < 0)
        _exit(30);
    while ((n = pread(fd, buf, sizeof buf, off)) > 0) {
        if (write(out, buf, (size_t)n) != n)
            _exit(31);
        off += n;
    }
    close(out);
}

static ssize_t hs_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    if (hs_file(fd) == 0 && len == sizeof(struct hdr_slot) && (off == 0 || off == HDR_SLOT_SIZE) &&
        memcmp(buf, HDR_MAGIC, 8) == 0)
        hs.header_written = 1;
    return os_real.write_at(fd, buf, len, off);
}

static int hs_fdatasync(int fd)
{
    int k = hs_file(fd), r;
    if (k == 0 && hs.header_written && !hs.failed) {
        hs.failed = 1;
        return -EIO;
    }
    if ((r = os_real.fdatasync(fd)) == 0 && k >= 0)
        hs_snapshot(k, fd);
    return r;
}

static void header_sync_fails_child(void *arg)
{
    tm_options o = fopts();
    tm_store *st = NULL;
    struct stat sb;
    unsigned char *root;
    (void)arg;
    if (tm_open(hs.path[0], &o, &st) != 0 || !(root = tm_store_root(st, ROOT_BYTES)))
        _exit(10);
    for (uint64_t g = 1; g <= 3; g++) {
        if (tm_store_begin(st) != 0)
            _exit(11);
        fill(root, g);
        if (tm_store_commit(st) != 0)
            _exit(12);
    }
    for (int k = 0; k < 2; k++) { /* from here on the disk is what was synced */
        int fd = open(hs.path[k], O_RDONLY);
        if (fd < 0 || fstat(fd, &sb) != 0)
            _exit(13);
        hs.ino[k] = sb.st_ino;
        hs_snapshot(k, fd);
        close(fd);
    }
    os_calls.write_at = hs_pwrite;
    os_calls.fdatasync = hs_fdatasync;
    if (tm_close(st) != EIO) /* the closing checkpoint's header sync fails */
        _exit(14);
    if (!hs.failed || tm_open(hs.path[0], &o, &st) != 0 || !(root = tm_store_root(st, ROOT_BYTES)))
        _exit(15);
    if (tm_store_begin(st) != 0)
        _exit(16);
    fill(root, 4);
    if (tm_store_commit(st) != 0) /* durable: TMF_SYNC=full */
        _exit(17);
    _exit(0); /* the power goes: only the .durable images survive */
}

Test(faults, failed_header_sync_loses_no_later_commit)
{
    char side[640];
    const char *path = tu_path("hs.tmf");
    snprintf(hs.path[0], sizeof hs.path[0], "%s", path);
    snprintf(hs.path[1], sizeof hs.path[1], "%.600s.log", path);
    int status = tu_run_child(header_sync_fails_child, NULL, NULL, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status %#x", status);
    for (int k = 0; k < 2; k++) {
        snprintf(side, sizeof side, "%s.durable", hs.path[k]);
        cr_assert_eq(rename(side, hs.path[k]), 0, "%s", side);
    }
    /* The log's first record belongs to the generation of the durable
     * header: a record of a generation whose header never reached the disk
     * is skipped by recovery, with every commit after it. */
    struct log_rec rec;
    int fd = open(hs.path[1], O_RDONLY);
    cr_assert_eq(pread(fd, &rec, sizeof rec, LOG_START), (ssize_t)sizeof rec);
    close(fd);
    struct hdr_slot durable;
    tu_header(hs.path[0], &durable);
    cr_assert_eq(rec.gen, durable.gen, "the log's first record is of generation %llu",
                 (unsigned long long)rec.gen);
    /* seq 5: the root's creation, generations 1 to 3, then 4 */
    TU_OK(tm_close(open_expect(hs.path[0], 4, 5, ROOT_BYTES, "after the power cut")));
}

/* ---- recovery under faults ---- */

static struct {
    int synced;
} ex;

static int ex_fdatasync(int fd)
{
    ex.synced = 1;
    return os_real.fdatasync(fd);
}

static ssize_t ex_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    if (ex.synced)
        _exit(42); /* dies as the durable record is being applied */
    return os_real.write_at(fd, buf, len, off);
}

static ssize_t ex_write_mapped(int fd, char *map, const void *buf, size_t len, off_t off)
{
    if (ex.synced)
        _exit(42);
    return os_real.write_mapped(fd, map, buf, len, off);
}

/* Child: gens 1-4 committed, then gen 5 (which also grows the arena) made
 * durable in the log; the process dies at its first write into the store. */
static void crash_child(void *arg)
{
    tm_options o = fopts();
    tm_store *st = NULL;
    unsigned char *root;
    uint64_t g;
    if (tm_open(arg, &o, &st) != 0 || !(root = tm_store_root(st, ROOT_BYTES)))
        _exit(10);
    for (g = 1; g <= 4; g++) {
        if (tm_store_begin(st) != 0)
            _exit(11);
        fill(root, g);
        if (tm_store_commit(st) != 0)
            _exit(12);
    }
    if (tm_store_begin(st) != 0 || !(root = tm_store_root(st, BIG_ROOT)))
        _exit(13);
    fill(root, 5);
    os_calls.write_at = ex_pwrite;
    os_calls.write_mapped = ex_write_mapped;
    os_calls.fdatasync = ex_fdatasync;
    tm_store_commit(st);
    _exit(14);
}

static void *slurp(const char *path, size_t *len)
{
    struct stat sb;
    void *p;
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "open %s", path);
    cr_assert_eq(fstat(fd, &sb), 0);
    p = malloc((size_t)sb.st_size + 1);
    cr_assert_not_null(p);
    cr_assert_eq(pread(fd, p, (size_t)sb.st_size, 0), sb.st_size);
    close(fd);
    *len = (size_t)sb.st_size;
    return p;
}

static void spill(const char *path, const void *p, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0, "create %s", path);
    cr_assert_eq(pwrite(fd, p, len, 0), (ssize_t)len);
    close(fd);
}

static void recovery_loop(int mode)
{
    char path[512], log[600], ctx[200], golden[512];
    void *img, *limg;
    size_t len, llen;
    long k, opens = 0, failed = 0;
    unsigned kinds = 0;
    int status;

    snprintf(golden, sizeof golden, "%s", tu_path("crashed.tmf"));
    status = tu_run_child(crash_child, golden, NULL, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 42, "crash child: status %#x", status);
    img = slurp(golden, &len);
    snprintf(log, sizeof log, "%s.log", golden);
    limg = slurp(log, &llen);
    snprintf(path, sizeof path, "%s", tu_path("r.tmf"));
    snprintf(log, sizeof log, "%s.log", path);

    for (k = 1;; k++) {
        tm_options o = fopts();
        tm_store *st = NULL;
        int r, fired;
        cr_assert_lt(k, 5000, "recovery never completes");
        spill(path, img, len);
        spill(log, limg, llen);
        fi_arm(mode, mode_mask(mode), k);
        fi.phase = PH_OPEN;
        r = tm_open(path, &o, &st);
        fired = fi.fired;
        if (fired)
            kinds |= fi.fired_kind;
        snprintf(ctx, sizeof ctx, "recovery, %s at call %ld (%s)", mode_name[mode], k,
                 fired ? kind_name(fi.fired_kind) : "not reached");
        fi_disarm();
        opens++;
        if (fired && is_error_mode(mode)) {
            cr_assert_neq(r, 0, "%s: tm_open succeeded", ctx);
            cr_assert_null(st, "%s", ctx);
            failed++;
        } else {
            cr_assert_eq(r, 0, "%s: tm_open: %s", ctx, tm_strerror(r));
            TU_OK(tm_close(st));
        }
        /* The durable record of gen 5 must be replayed (log.c L3). */
        st = open_expect(path, 5, 6, BIG_ROOT, ctx);
        still_usable(path, st, 5, 6, ctx);
        remove_store(path);
        if (!fired)
            break;
    }
    cr_log_info("recovery %s: %ld fault points, %ld opens failed, kinds %#x", mode_name[mode], opens - 1, failed,
                kinds);
    if (mode_mask(mode) == K_ALL)
        cr_assert(kinds & K_FTRUNC && kinds & K_PWRITE && kinds & K_FSYNC, "recovery fault kinds %#x", kinds);
    cr_assert_gt(opens, 10, "recovery made too few calls to be meaningful");
    free(img);
    free(limg);
}

Test(faults, recovery_eio)
{
    recovery_loop(M_EIO);
}

Test(faults, recovery_enospc)
{
    recovery_loop(M_ENOSPC);
}

Test(faults, recovery_short_write)
{
    recovery_loop(M_SHORT);
}

Test(faults, recovery_short_write_then_eio)
{
    recovery_loop(M_SHORT_EIO);
}

/* A failed sync of the store file: Linux may take the pages it failed to
 * write for clean, so a later sync succeeds without them.  The next
 * checkpoint, made by another process, writes every record of the
 * generation into the store file again before its sync (checkpoint.c S4):
 * counted here as writes to the store file ahead of that sync. */
Test(faults, a_failed_store_sync_makes_the_next_checkpoint_rewrite_the_records)
{
    char path[512];
    int go[2], ready[2], status;
    char c;
    snprintf(path, sizeof path, "%s", tu_path("rs.tmf"));
    tm_store *st = setup_store(path);
    cr_assert_eq(pipe(go), 0);
    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) { /* the other process: open before the failure, checkpoint after it */
        tm_close(st);
        tm_store *mine = tu_open_or_exit(path);
        if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
            _exit(2);
        tu_count_store_writes(mine->fd);
        if (tu_checkpoint(mine) != 0)
            _exit(3);
        _exit(tu_store_writes > 0 ? 0 : 4);
    }
    cr_assert_eq(read(ready[0], &c, 1), 1);
    unsigned char *root = tm_store_root(st, ROOT_BYTES);
    for (uint64_t g = 3; g <= 5; g++) {
        TU_OK(tm_store_begin(st));
        fill(root, g);
        TU_OK(tm_store_commit(st));
    }
    cr_assert_eq(tu_checkpoint_failing_sync(st), -EIO, "the checkpoint's store sync was to fail");
    TU_OK(tm_close(st));
    cr_assert_eq(write(go[1], "g", 1), 1);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the other process's checkpoint: status %#x", status);
    st = open_expect(path, 5, 6, ROOT_BYTES, "after the rewrite");
    TU_OK(tm_close(st));
}
