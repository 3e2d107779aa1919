/*
 * test_explore.c — crash states beyond the power-cut suite's.
 *
 * test_powercut.c drops or tears the unsynced writes in the order they were
 * made.  A file system promises less (crashfs.h): after a power cut, each
 * write since a file's last sync may be lost, applied or torn at a sector,
 * its pages in any order, its size changes may be lost, and so may the
 * directory's entries until the directory is synced; the lock file, which
 * holds only volatile state, is gone.
 *
 * Workloads, each a test, recorded through the os_calls seam with
 * TMF_SYNC=full:
 *   create  a store made from nothing (O_TMPFILE, link, directory sync), its
 *           root, two commits, close (its checkpoint);
 *   grow    commits that grow the arena, an aborted growth (the file cut
 *           back), a record larger than the log's chunk, two closes;
 *   ring    commits until the log's ring is full and a commit checkpoints
 *           before writing its record, two more, close;
 *   churn   commits that free and allocate blocks, small and large, so that
 *           the arena grows and the ring fills, close;
 * and, from some images of each, the recovery itself: the read-write open
 * of the image, a commit and a close are recorded and explored in turn (a
 * crash while recovering from a crash), and so on to TMF_EXPLORE_DEPTH.
 *
 * The cuts are the sync points of a recording: just before each fsync or
 * fdatasync of a file or of the directory, and at the end (any state a cut
 * in between may leave, the next sync point may leave too).  Each crash
 * image drawn there, with the lock file deleted, must
 *   - look clean or recovery pending to `tmf check` (exit 0) and to `tmf
 *     info` (no damage), in agreement with a read-only open;
 *   - open read-only and read consistently, or refuse to read with EROFS
 *     (recovery pending); only while the store's creation is unfinished
 *     may the open itself fail (no store file, or no log yet);
 *   - be copied by `tmf copy` (when it opens read-only) into a store that
 *     needs no recovery, checks clean and holds the commit recovery reaches;
 *   - be left as it was by all of the above (no write, no size change);
 *   - recover, and hold an untorn generation g, with lo <= g <= hi: lo the
 *     last acknowledged commit (the cut follows its log fdatasync), hi the
 *     commit under way; commit sequence g + 1; a heap that checks clean;
 *     then take a commit, and hold it when opened again.  The recovery is
 *     a read-write first opener's, or, for every other image, the healing
 *     of a writer of another process that joins a reader of the image.
 * A broken invariant is counted and reported (the first ones in full), and
 * fails the test at the end.
 *
 * The default is a sample for CI.  TMF_EXPLORE_IMAGES=N draws about N
 * images across the workloads and levels (TMF_EXPLORE=long: 12000), at
 * every sync point; TMF_EXPLORE_SEED=n draws others;
 * TMF_EXPLORE_KEEP=dir keeps every image that broke an invariant.  The
 * images live in /dev/shm when it is there (TMF_EXPLORE_DIR=dir elsewhere).
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crashfs.h"
#include "genroot.h"
#include "internal.h"

#ifndef TMF_TOOL
#error "TMF_TOOL must name the tmf binary"
#endif

#define ROOT_BYTES (ELEM_OFF + 8 * NELEM)
#define CHURN_LINK ((ROOT_BYTES + 7) & ~(size_t)7) /* churn's list head, aligned past the root's data */
#define INITIAL ((size_t)128 << 10)
#define STORE "s.tmf"
#define LOCK STORE ".lock"
#define NOGEN INT64_MIN /* torn, or never read */
#define MAX_DEPTH 4
#define REPORTED 12 /* violations told in full */

enum { MK_OPENED, MK_BEGIN, MK_END };

/* What an image may hold: a generation in [lo, hi], -1 for a store without
 * a root; fresh: the store's creation was unfinished, so its file or its
 * log may be missing. */
struct expect {
    int64_t lo, hi;
    int fresh;
};

/* One workload's exploration: its budget, what it covered, what it found. */
struct run {
    const char *workload;
    uint64_t seed;
    size_t per_cut[MAX_DEPTH + 1]; /* images per sync point, by depth */
    unsigned recurse[MAX_DEPTH];   /* one image in recurse[depth] has its recovery explored */
    int depth;                     /* the deepest level */
    size_t focus;                  /* first level: every sync point from this call on, */
    unsigned thin;                 /* one in `thin` before it */
    char scratch[PATH_MAX / 2];
    long images[MAX_DEPTH + 1], points[MAX_DEPTH + 1], same, recoveries, skipped, joins;
    long ro_clean, ro_pending, ro_refused, replayed_copies, tool_runs;
    long violations;
};

static char cur_ctx[1200];

static void on_alarm(int sig)
{
    static const char msg[] = "explore: timed out (a recovery, read or tool that never ends) at: ";
    (void)sig;
    if (write(2, msg, sizeof msg - 1) < 0 || write(2, cur_ctx, strlen(cur_ctx)) < 0 || write(2, "\n", 1) < 0)
        _exit(3);
    _exit(3);
}

/* ---- the scratch directory ---- */

static char scratch_root[PATH_MAX / 2];
static pid_t scratch_owner;

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void scratch_cleanup(void)
{
    if (scratch_root[0] && getpid() == scratch_owner)
        nftw(scratch_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Images are many and short-lived: in memory (/dev/shm) where there is one. */
static void scratch_make(struct run *x)
{
    const char *d = getenv("TMF_EXPLORE_DIR");
    struct stat sb;
    if (!d || !*d)
        d = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) && access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                                                                                               : tu_dir();
    snprintf(scratch_root, sizeof scratch_root, "%s/tmfexplore.XXXXXX", d);
    cr_assert_not_null(mkdtemp(scratch_root), "mkdtemp in %s: %s", d, strerror(errno));
    scratch_owner = getpid();
    atexit(scratch_cleanup);
    snprintf(x->scratch, sizeof x->scratch, "%s", scratch_root);
}

/* "<scratch>/<what><depth>" into buf, made when missing. */
static const char *dir_of(const struct run *x, const char *what, int depth, char *buf)
{
    snprintf(buf, PATH_MAX, "%s/%s%d", x->scratch, what, depth);
    if (mkdir(buf, 0700) < 0)
        cr_assert_eq(errno, EEXIST, "mkdir %s: %s", buf, strerror(errno));
    return buf;
}

static void clear_dir(const char *dir)
{
    char p[PATH_MAX + 300];
    struct dirent *e;
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            cr_assert_eq(unlink(p), 0, "unlink %s", p);
        }
    closedir(d);
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* What a write or a size change to the file at path would change (0 when
 * there is none): its inode, size and times, and its first bytes (the
 * store's header and superblock, the log's header and first records), in
 * case the times are coarser than the writes. */
static uint64_t file_sig(const char *path)
{
    static unsigned char head[64 << 10];
    struct stat sb;
    uint64_t v[6];
    ssize_t n;
    int fd = open(path, O_RDONLY);
    if (fd < 0 || fstat(fd, &sb) < 0 || (n = pread(fd, head, sizeof head, 0)) < 0) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    close(fd);
    v[0] = (uint64_t)sb.st_ino, v[1] = (uint64_t)sb.st_size;
    v[2] = (uint64_t)sb.st_mtim.tv_sec, v[3] = (uint64_t)sb.st_mtim.tv_nsec;
    v[4] = (uint64_t)sb.st_ctim.tv_sec, v[5] = (uint64_t)sb.st_ctim.tv_nsec;
    return cf_mix(hash_bytes(v, sizeof v, 1), hash_bytes(head, (size_t)n, 2));
}

/* ---- violations ---- */

static void keep_image(const struct run *x, const char *dir)
{
    const char *keep = getenv("TMF_EXPLORE_KEEP");
    char cmd[3 * PATH_MAX];
    if (!keep || !*keep)
        return;
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/%s-%ld' && cp -p '%s'/* '%s/%s-%ld/' 2>/dev/null", keep, x->workload,
             x->violations, dir, keep, x->workload, x->violations);
    if (system(cmd) != 0)
        cr_log_warn("explore: could not keep the image in %s", keep);
}

static const char *cur_dir;

static void __attribute__((format(printf, 3, 4))) violation(struct run *x, const char *ctx, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    x->violations++;
    if (x->violations <= REPORTED)
        cr_log_error("explore %s: violation %ld: %s\n  at %s", x->workload, x->violations, msg, ctx);
    if (cur_dir)
        keep_image(x, cur_dir);
}

/* ---- the tool ---- */

static char out[16384];

/* Runs tmf with up to three arguments; its stdout and stderr go to out. */
static int tool(struct run *x, const char *a, const char *b, const char *c)
{
    int pipefd[2], status;
    size_t got = 0;
    ssize_t k;
    pid_t pid;
    x->tool_runs++;
    cr_assert_eq(pipe(pipefd), 0);
    if ((pid = fork()) == 0) {
        dup2(pipefd[1], 1), dup2(pipefd[1], 2);
        close(pipefd[0]), close(pipefd[1]);
        execl(TMF_TOOL, "tmf", a, b, c, (char *)NULL);
        _exit(126);
    }
    cr_assert_geq(pid, 0);
    close(pipefd[1]);
    while ((k = read(pipefd[0], out + got, sizeof out - 1 - got)) > 0)
        got += (size_t)k;
    out[got] = 0;
    close(pipefd[0]);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- the store ---- */

static tm_options xopts(int read_only)
{
    tm_options o = tu_opts(TM_SYNC_FULL);
    o.initial_size = INITIAL;
    o.read_only = read_only;
    o.no_create = read_only;
    return o;
}

/* Commit of generation gen: the root is made by the commit of generation 0
 * (zeros: a valid generation 0), filled by the others.  Marked in rec. */
static int commit_gen(tm_store *st, int64_t gen, size_t root, struct cf_rec *rec)
{
    unsigned char *p;
    int r;
    if (rec)
        cf_mark(rec, MK_BEGIN, gen);
    if (gen == 0) {
        r = tm_store_root(st, root) ? 0 : errno;
    } else if ((r = tm_store_begin(st)) == 0) {
        if ((p = tm_store_root(st, root))) {
            fill(p, (uint64_t)gen);
            r = tm_store_commit(st);
        } else {
            r = errno;
            tm_store_abort(st);
        }
    }
    if (rec && r == 0)
        cf_mark(rec, MK_END, gen);
    return r;
}

static int is_log(const struct cf_rec *rec, int f)
{
    size_t n = strlen(rec->files[f].name);
    return n > 4 && !strcmp(rec->files[f].name + n - 4, ".log");
}

/* Whether the last commit marked in rec made its record durable (a log
 * fdatasync after its begin). */
static int acknowledged(const struct cf_rec *rec)
{
    for (size_t i = rec->n; i-- > 0;) {
        const struct cf_op *o = &rec->ops[i];
        if (o->kind == CF_MARK && o->mark == MK_BEGIN)
            return 0;
        if (o->kind == CF_SYNC && is_log(rec, o->file))
            return 1;
    }
    return 0;
}

/* The workloads' commits: they must succeed, and sync the log. */
static void w_commit(struct cf_rec *rec, tm_store *st, int64_t gen, size_t root)
{
    int r = commit_gen(st, gen, root, rec);
    cr_assert_eq(r, 0, "commit of generation %lld: %s", (long long)gen, tm_strerror(r));
    cr_assert(acknowledged(rec), "commit of generation %lld made no log fdatasync", (long long)gen);
}

/* The bounds after the calls [0, cut) of rec, from those at its start. */
static struct expect expect_at(const struct cf_rec *rec, size_t cut, struct expect e)
{
    int64_t cur = NOGEN;
    for (size_t i = 0; i < cut; i++) {
        const struct cf_op *o = &rec->ops[i];
        if (o->kind == CF_MARK && o->mark == MK_OPENED)
            e.fresh = 0;
        else if (o->kind == CF_MARK && o->mark == MK_BEGIN)
            e.hi = cur = o->arg;
        else if (o->kind == CF_MARK && o->mark == MK_END)
            e.lo = e.hi = o->arg, cur = NOGEN;
        else if (o->kind == CF_SYNC && cur != NOGEN && is_log(rec, o->file))
            e.lo = cur, cur = NOGEN; /* the commit point */
    }
    return e;
}

/* Inside a read transaction: the root's generation, -1 without a root,
 * NOGEN when torn (why says how). */
static int64_t gen_of(tm_store *st, char *why, size_t len)
{
    const struct tm_super *sb = super_of(st);
    int64_t g;
    if (!sb->root)
        return -1;
    if (sb->root_size < ROOT_BYTES) {
        snprintf(why, len, "a root of %llu bytes", (unsigned long long)sb->root_size);
        return NOGEN;
    }
    g = root_gen((const unsigned char *)(uintptr_t)sb->root, why, len);
    return g < 0 ? NOGEN : g;
}

/* Inside a read transaction: the generation, checked against e, the commit
 * sequence and the heap. */
static int64_t examine(struct run *x, tm_store *st, struct expect e, const char *ctx, const char *who)
{
    char why[256] = "", msg[256] = "";
    tm_stats_t s = {0};
    int64_t g = gen_of(st, why, sizeof why);
    int r;
    if (g == NOGEN) {
        violation(x, ctx, "%s: torn state: %s", who, why);
        return NOGEN;
    }
    if (g < e.lo || g > e.hi)
        violation(x, ctx, "%s: generation %lld, want %lld..%lld", who, (long long)g, (long long)e.lo,
                  (long long)e.hi);
    if ((r = tm_store_check(st, msg, sizeof msg)) != 0)
        violation(x, ctx, "%s: heap check: %s", who, msg[0] ? msg : tm_strerror(r));
    if ((r = tm_store_stats(st, &s)) != 0 || s.commits != (uint64_t)(g + 1))
        violation(x, ctx, "%s: generation %lld at commit seq %llu (%s)", who, (long long)g,
                  (unsigned long long)s.commits, tm_strerror(r));
    return g;
}

/* Opens path (read-only or not), reads inside a read transaction and
 * examines; NOGEN when it cannot (said as a violation). */
static int64_t open_examine(struct run *x, const char *path, int read_only, struct expect e, const char *ctx,
                            const char *who)
{
    tm_options o = xopts(read_only);
    tm_store *st;
    int64_t g = NOGEN;
    int r;
    if ((r = tm_open(path, &o, &st)) != 0) {
        violation(x, ctx, "%s: open: %s", who, tm_strerror(r));
        return NOGEN;
    }
    if ((r = tm_store_read_begin(st)) == 0) {
        g = examine(x, st, e, ctx, who);
        tm_store_read_end(st);
    } else {
        violation(x, ctx, "%s: read transaction: %s", who, tm_strerror(r));
    }
    if ((r = tm_close(st)) != 0)
        violation(x, ctx, "%s: close: %s", who, tm_strerror(r));
    return g;
}

/* ---- one image ---- */

enum { RO_CLEAN, RO_PENDING, RO_REFUSED };

struct image {
    const char *dir, *ctx;
    char path[PATH_MAX + 16], log[PATH_MAX + 16];
    int store, has_log; /* which files the image has */
    struct expect e;
    int ro;             /* what a read-only open made of it */
    int64_t g_ro, g;    /* generations read read-only, and after recovery */
};

/* A read-only open: reads, or refuses to read with EROFS; its open may
 * fail only while the creation was unfinished, for want of a file. */
static void look_read_only(struct run *x, struct image *im)
{
    tm_options o = xopts(1);
    tm_store *st;
    int r = tm_open(im->path, &o, &st);
    if (r != 0) {
        int missing = (r == ENOENT && !im->store) || (r == TM_ECORRUPT && im->store && !im->has_log);
        if (!im->e.fresh || !missing)
            violation(x, im->ctx, "read-only open: %s", tm_strerror(r));
        x->ro_refused++;
        im->ro = RO_REFUSED;
        return;
    }
    r = tm_store_read_begin(st);
    if (r == 0) {
        im->g_ro = examine(x, st, im->e, im->ctx, "read-only open");
        tm_store_read_end(st);
        x->ro_clean++;
        im->ro = RO_CLEAN;
    } else {
        if (r != EROFS)
            violation(x, im->ctx, "read-only read transaction: %s", tm_strerror(r));
        x->ro_pending++;
        im->ro = RO_PENDING;
    }
    if ((r = tm_close(st)) != 0)
        violation(x, im->ctx, "read-only close: %s", tm_strerror(r));
}

/* tmf check and tmf info agree with the read-only open, and never see
 * damage in a crash image: clean, or recovery pending (a store whose log
 * was never made included); only a missing store is unusable. */
static void look_with_tools(struct run *x, const struct image *im)
{
    int ex = tool(x, "check", im->path, NULL);
    const char *want = im->ro == RO_CLEAN ? ": clean:" : ": recovery pending:";
    if (!im->store) {
        if (ex != 2 || !strstr(out, "No such file"))
            violation(x, im->ctx, "tmf check without a store: exit %d: %s", ex, out);
        return;
    }
    if (ex != 0 || !strstr(out, want))
        violation(x, im->ctx, "tmf check: exit %d, want 0 and \"%s\": %s", ex, want, out);
    ex = tool(x, "info", im->path, NULL);
    want = im->ro == RO_CLEAN ? "recovery:        not needed" : "recovery:        pending";
    if (ex != 0 || strstr(out, "damage") || strstr(out, "corrupt") || !strstr(out, want))
        violation(x, im->ctx, "tmf info: exit %d, want 0 and \"%s\": %s", ex, want, out);
}

/* tmf copy: a copy whenever the image opens read-only, else a clear no. */
static int copy_with_tool(struct run *x, const struct image *im, const char *dest)
{
    int ex = tool(x, "copy", im->path, dest);
    if (im->ro == RO_REFUSED) {
        if (ex == 0 || !strstr(out, "tmf: "))
            violation(x, im->ctx, "tmf copy of a store that does not open: exit %d: %s", ex, out);
        return 0;
    }
    if (ex != 0 || !strstr(out, "copied")) {
        violation(x, im->ctx, "tmf copy: exit %d: %s", ex, out);
        return 0;
    }
    if (im->ro == RO_PENDING) {
        if (!strstr(out, "replayed"))
            violation(x, im->ctx, "tmf copy does not say it replayed the log: %s", out);
        x->replayed_copies++;
    }
    return 1;
}

/* The read-write open (the recovery), a commit and a close, recorded into
 * rec when not NULL; then the store, opened again, holds that commit. */
static void recover_and_use(struct run *x, struct image *im, struct cf_rec *rec)
{
    tm_options o = xopts(0);
    struct expect next;
    tm_store *st;
    int r = tm_open(im->path, &o, &st);
    if (r != 0) {
        violation(x, im->ctx, "read-write open: %s", tm_strerror(r));
        return;
    }
    if (rec)
        cf_mark(rec, MK_OPENED, 0);
    if ((r = tm_store_read_begin(st)) == 0) {
        im->g = examine(x, st, im->e, im->ctx, "recovery");
        tm_store_read_end(st);
    } else {
        violation(x, im->ctx, "read transaction after recovery: %s", tm_strerror(r));
    }
    if (im->g != NOGEN && im->g_ro != NOGEN && im->g_ro != im->g)
        violation(x, im->ctx, "a read-only open read generation %lld, recovery reached %lld", (long long)im->g_ro,
                  (long long)im->g);
    if (im->g != NOGEN && (r = commit_gen(st, im->g + 1, ROOT_BYTES, rec)) != 0)
        violation(x, im->ctx, "a commit after recovery: %s", tm_strerror(r));
    if (rec && im->g != NOGEN && r == 0 && !acknowledged(rec))
        violation(x, im->ctx, "a commit after recovery made no log fdatasync");
    if ((r = tm_close(st)) != 0)
        violation(x, im->ctx, "close after recovery: %s", tm_strerror(r));
    if (im->g == NOGEN)
        return;
    next.lo = next.hi = im->g + 1;
    next.fresh = 0;
    if (rec)
        cf_stop(rec);
    open_examine(x, im->path, 1, next, im->ctx, "reopened after a commit on the recovered store");
}

/* The other way to recover: in a child process, a writer that joins the
 * parent's read-only handle (so it is not the first opener) heals the store
 * at its first read transaction, checks it, commits the next generation and
 * closes.  It says "generation G" on stderr, or what went wrong. */
struct join {
    tm_store *inherited;
    const char *path;
};

static void join_and_commit(void *arg)
{
    struct join *j = arg;
    tm_options o = xopts(0);
    char why[256] = "", msg[256] = "";
    tm_stats_t s = {0};
    tm_store *st;
    int64_t g;
    int r;
    tm_close(j->inherited); /* the parent's: one handle per store and process */
    if ((r = tm_open(j->path, &o, &st)) != 0 || (r = tm_store_read_begin(st)) != 0) {
        fprintf(stderr, "open and read: %s", tm_strerror(r));
        _exit(1);
    }
    if ((g = gen_of(st, why, sizeof why)) == NOGEN) {
        fprintf(stderr, "torn state: %s", why);
        _exit(1);
    }
    if ((r = tm_store_check(st, msg, sizeof msg)) != 0 || (r = tm_store_stats(st, &s)) != 0 ||
        s.commits != (uint64_t)(g + 1)) {
        fprintf(stderr, "generation %lld, heap check: %s, commit seq %llu", (long long)g,
                msg[0] ? msg : tm_strerror(r), (unsigned long long)s.commits);
        _exit(1);
    }
    tm_store_read_end(st);
    if ((r = commit_gen(st, g + 1, ROOT_BYTES, NULL)) != 0 || (r = tm_close(st)) != 0) {
        fprintf(stderr, "generation %lld, then a commit and close: %s", (long long)g, tm_strerror(r));
        _exit(1);
    }
    fprintf(stderr, "generation %lld", (long long)g);
    _exit(0);
}

/* A writer of another process joins a reader of the image and heals it
 * (checkpoint.c S2, S3); the reader then reads its commit, and the store,
 * opened again by a first opener, holds it. */
static void recover_by_joining(struct run *x, struct image *im)
{
    tm_options o = xopts(1);
    struct expect next;
    struct join j;
    char said[512];
    long long g;
    int status, r;
    if ((r = tm_open(im->path, &o, &j.inherited)) != 0) {
        violation(x, im->ctx, "read-only open, again: %s", tm_strerror(r));
        return;
    }
    j.path = im->path;
    status = tu_run_child(join_and_commit, &j, said, sizeof said);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || sscanf(said, "generation %lld", &g) != 1) {
        violation(x, im->ctx, "a writer joining a reader: status %#x: %s", status, said);
        tm_close(j.inherited);
        return;
    }
    im->g = g;
    if (g < im->e.lo || g > im->e.hi)
        violation(x, im->ctx, "a writer joining a reader: generation %lld, want %lld..%lld", g,
                  (long long)im->e.lo, (long long)im->e.hi);
    if (im->g_ro != NOGEN && im->g_ro != g)
        violation(x, im->ctx, "a read-only open read generation %lld, a writer joining one healed to %lld",
                  (long long)im->g_ro, g);
    next.lo = next.hi = g + 1;
    next.fresh = 0;
    if ((r = tm_store_read_begin(j.inherited)) == 0) {
        examine(x, j.inherited, next, im->ctx, "the reader, after the writer's commit");
        tm_store_read_end(j.inherited);
    } else {
        violation(x, im->ctx, "the reader, after the writer's commit: %s", tm_strerror(r));
    }
    if ((r = tm_close(j.inherited)) != 0)
        violation(x, im->ctx, "the reader's close: %s", tm_strerror(r));
    open_examine(x, im->path, 0, next, im->ctx, "opened again after a writer joined a reader");
}

static void explore(struct run *x, struct cf_rec *rec, struct expect base, int depth, uint64_t salt);

/* Every invariant on the crash image in dir; with recurse, its recovery is
 * recorded and explored one level deeper. */
static void check_image(struct run *x, const char *dir, struct expect e, const char *ctx, int depth, int recurse)
{
    char dest[PATH_MAX + 16], copies[PATH_MAX];
    struct image im;
    struct cf_rec rec;
    uint64_t before[2];
    int copied;

    memset(&im, 0, sizeof im);
    im.dir = dir, im.ctx = ctx, im.e = e;
    im.g_ro = im.g = NOGEN;
    snprintf(im.path, sizeof im.path, "%s/" STORE, dir);
    snprintf(im.log, sizeof im.log, "%s/" STORE ".log", dir);
    dir_of(x, "copy", depth, copies);
    clear_dir(copies);
    snprintf(dest, sizeof dest, "%s/c.tmf", copies);
    im.store = exists(im.path);
    im.has_log = exists(im.log);
    before[0] = file_sig(im.path), before[1] = file_sig(im.log);
    cur_dir = dir;
    snprintf(cur_ctx, sizeof cur_ctx, "%s", ctx);
    alarm(120);

    look_read_only(x, &im);
    look_with_tools(x, &im);
    copied = copy_with_tool(x, &im, dest);
    if (file_sig(im.path) != before[0] || file_sig(im.log) != before[1])
        violation(x, ctx, "the image changed under read-only opens, tmf check, info or copy");
    if (recurse)
        cf_start(&rec, dir, LOCK);
    if (!recurse && im.ro != RO_REFUSED && x->images[depth] % 2) {
        recover_by_joining(x, &im);
        x->joins++;
    } else {
        recover_and_use(x, &im, recurse ? &rec : NULL);
    }
    if (recurse)
        cf_stop(&rec);
    if (copied && im.g != NOGEN) {
        struct expect same = {im.g, im.g, 0};
        open_examine(x, dest, 1, same, ctx, "the copy, read-only");
        open_examine(x, dest, 0, same, ctx, "the copy, read-write");
    }
    alarm(0);
    cur_dir = NULL;
    if (recurse && im.g != NOGEN) {
        struct expect base = {im.g, im.g, !im.store || !im.has_log};
        x->recoveries++;
        explore(x, &rec, base, depth + 1, (uint64_t)x->recoveries);
    }
    if (recurse)
        cf_free(&rec);
}

/* ---- exploring a recording ---- */

static size_t sync_points(const struct cf_rec *rec)
{
    size_t n = 1;
    for (size_t i = 0; i < rec->n; i++)
        n += cf_is_sync(rec, i);
    return n;
}

static const char *op_name(const struct cf_rec *rec, size_t i, char *buf, size_t len)
{
    const struct cf_op *o = &rec->ops[i];
    if (i >= rec->n)
        snprintf(buf, len, "the end");
    else if (o->kind == CF_DIRSYNC)
        snprintf(buf, len, "fsync of the directory");
    else
        snprintf(buf, len, "sync of %s", rec->files[o->file].name[0] ? rec->files[o->file].name : "a nameless file");
    return buf;
}

/* Images of the walk's cut: a few distinct ones, drawn by seed (salt: the
 * recording's, so that no two recordings draw alike).  The first is drawn
 * at random, the second takes everything, the third nothing. */
static void explore_cut(struct run *x, struct cf_walk *w, struct expect e, int depth, uint64_t salt, size_t point,
                        size_t points)
{
    size_t want = x->per_cut[depth], got = 0, tries;
    uint64_t *seen = calloc(4 * want + 2, sizeof *seen);
    char dir[PATH_MAX], desc[600], ctx[1200], what[200];
    cr_assert_not_null(seen);
    dir_of(x, "img", depth, dir);
    for (tries = 0; got < want && tries < 4 * want + 2; tries++) {
        uint64_t seed = tries == 1 ? 1 : tries == 2 ? 0 : cf_mix(cf_mix(x->seed, salt), w->cut * 1000003ull + tries) | 2;
        uint64_t h = cf_image(w, seed, desc, sizeof desc);
        size_t i;
        int recurse;
        for (i = 0; i < got && seen[i] != h; i++)
            ;
        if (i < got) {
            x->same++;
            continue;
        }
        seen[got++] = h;
        clear_dir(dir);
        cf_save(w, dir);
        x->images[depth]++;
        recurse = depth < x->depth && x->images[depth] % x->recurse[depth] == x->recurse[depth] / 2;
        snprintf(ctx, sizeof ctx,
                 "workload %s, depth %d, sync point %zu/%zu (before %s, call %zu of %zu), image seed %#llx: "
                 "%s; want generation %lld..%lld%s",
                 x->workload, depth, point, points, op_name(w->r, w->cut, what, sizeof what), w->cut, w->r->n,
                 (unsigned long long)seed, desc, (long long)e.lo, (long long)e.hi,
                 e.fresh ? ", the creation unfinished" : "");
        check_image(x, dir, e, ctx, depth, recurse);
    }
    free(seen);
}

/* Whether the sync point before call cut (the point-th) is explored. */
static int explored(const struct run *x, int depth, size_t cut, size_t point)
{
    return depth > 1 || cut >= x->focus || point % x->thin == 0;
}

static void explore(struct run *x, struct cf_rec *rec, struct expect base, int depth, uint64_t salt)
{
    struct cf_walk w;
    size_t points = sync_points(rec), point = 0;
    cf_walk_init(&w, rec);
    for (;;) {
        if (w.cut == rec->n || cf_is_sync(rec, w.cut)) {
            if (explored(x, depth, w.cut, ++point)) {
                explore_cut(x, &w, expect_at(rec, w.cut, base), depth, salt, point, points);
                x->points[depth]++;
            } else {
                x->skipped++;
            }
        }
        if (w.cut == rec->n)
            break;
        cf_walk_step(&w);
    }
    cf_walk_free(&w);
}

/* ---- budget and report ---- */

#define CI_IMAGES 24     /* first-level images per workload, by default */
#define LONG_IMAGES 12000

/* By default, CI_IMAGES first-level images per workload, spread over its
 * sync points (before its focus, one sync point in 8 only), and the
 * recovery of one image in 16 explored with two images per sync point.
 * TMF_EXPLORE_IMAGES=N (TMF_EXPLORE=long: 12000): about N images in all,
 * three levels deep, every sync point: N / 10 first-level images wanted per
 * workload (a sync point with little pending has fewer distinct ones), the
 * recovery of one in 8 explored, and of one in 16 of those. */
static void budget(struct run *x, const char *workload, const struct cf_rec *rec, size_t focus)
{
    const char *n = getenv("TMF_EXPLORE_IMAGES"), *mode = getenv("TMF_EXPLORE"), *seed = getenv("TMF_EXPLORE_SEED");
    long total = n && *n ? atol(n) : mode && !strcmp(mode, "long") ? LONG_IMAGES : 0;
    size_t first = total > 0 ? (size_t)total / 10 : CI_IMAGES, points = 0, point = 0;
    x->workload = workload;
    x->seed = seed && *seed ? strtoull(seed, NULL, 0) : 1;
    x->focus = total > 0 ? 0 : focus;
    x->thin = 8;
    for (size_t i = 0; i <= rec->n; i++)
        if (i == rec->n || cf_is_sync(rec, i))
            points += explored(x, 1, i, ++point);
    x->per_cut[1] = (first + points - 1) / points;
    x->per_cut[2] = x->per_cut[3] = x->per_cut[4] = 2;
    x->recurse[1] = total > 0 ? 8 : 16;
    x->recurse[2] = x->recurse[3] = 16;
    x->depth = total > 0 ? 3 : 2;
    if ((n = getenv("TMF_EXPLORE_DEPTH")) && *n && atoi(n) >= 1 && atoi(n) <= MAX_DEPTH)
        x->depth = atoi(n);
}

static void report(struct run *x, const struct cf_rec *rec)
{
    long images = 0, points = 0;
    char levels[300];
    size_t used = 0;
    for (int d = 1; d <= x->depth; d++) {
        images += x->images[d], points += x->points[d];
        used += (size_t)snprintf(levels + used, sizeof levels - used, "%sdepth %d: %ld images at %ld sync points",
                                 d > 1 ? "; " : "", d, x->images[d], x->points[d]);
    }
    cr_log_info("explore %s: %zu recorded calls; %ld crash images at %ld sync points (%s; %ld first-level "
                "sync points left out), %ld recoveries recorded and explored, %ld draws that repeated an image; "
                "read-only opens: %ld read, %ld refused to read (recovery pending), %ld refused (creation "
                "unfinished); %ld healed by a writer joining a reader; %ld copies replayed a log; %ld tool runs; "
                "seed %llu; %ld violations",
                x->workload, rec->n, images, points, levels, x->skipped, x->recoveries, x->same, x->ro_clean,
                x->ro_pending, x->ro_refused, x->joins, x->replayed_copies, x->tool_runs, (unsigned long long)x->seed,
                x->violations);
    cr_assert_eq(x->violations, 0, "explore %s: %ld violations (the first %d are logged above)", x->workload,
                 x->violations, REPORTED);
}

/* ---- the workloads ---- */

static void w_run(struct run *x, const char *workload, struct cf_rec *rec, struct expect base, size_t focus)
{
    budget(x, workload, rec, focus);
    explore(x, rec, base, 1, 0);
    report(x, rec);
    cf_free(rec);
}

/* A store at generation 1, closed (checkpointed): the start of a recording. */
static void make_base(const char *path)
{
    tm_options o = xopts(0);
    tm_store *st;
    TU_OK(tm_open(path, &o, &st));
    TU_OK(commit_gen(st, 0, ROOT_BYTES, NULL));
    TU_OK(commit_gen(st, 1, ROOT_BYTES, NULL));
    TU_OK(tm_close(st));
}

static tm_store *w_open(struct cf_rec *rec, const char *path)
{
    tm_options o = xopts(0);
    tm_store *st;
    TU_OK(tm_open(path, &o, &st));
    cf_mark(rec, MK_OPENED, 0);
    return st;
}

static void explore_init(void)
{
    signal(SIGALRM, on_alarm);
}

static void explore_fini(void)
{
    if (cf_cur)
        cf_stop(cf_cur);
    alarm(0);
}

TestSuite(explore, .init = explore_init, .fini = explore_fini, .timeout = 3600);

Test(explore, create)
{
    struct run x = {0};
    struct cf_rec rec;
    char path[PATH_MAX + 16];
    char dir[PATH_MAX];
    tm_store *st;
    scratch_make(&x);
    dir_of(&x, "work", 0, dir);
    snprintf(path, sizeof path, "%s/" STORE, dir);
    cf_start(&rec, dir, LOCK);
    st = w_open(&rec, path);
    w_commit(&rec, st, 0, ROOT_BYTES);
    w_commit(&rec, st, 1, ROOT_BYTES);
    w_commit(&rec, st, 2, ROOT_BYTES);
    TU_OK(tm_close(st));
    cf_stop(&rec);
    w_run(&x, "create", &rec, (struct expect){-1, -1, 1}, 0);
}

Test(explore, grow)
{
    const size_t big1 = (size_t)256 << 10, big2 = (size_t)1100 << 10;
    struct run x = {0};
    struct cf_rec rec;
    char path[PATH_MAX + 16];
    char dir[PATH_MAX];
    unsigned char *root;
    tm_store *st;
    scratch_make(&x);
    dir_of(&x, "work", 0, dir);
    snprintf(path, sizeof path, "%s/" STORE, dir);
    make_base(path);
    cf_start(&rec, dir, LOCK);
    st = w_open(&rec, path);
    w_commit(&rec, st, 2, ROOT_BYTES);
    w_commit(&rec, st, 3, big1); /* grows the arena (fallocate) */
    w_commit(&rec, st, 4, big1);
    TU_OK(tm_store_begin(st)); /* an aborted growth: the store file is cut back */
    cr_assert_not_null(root = tm_store_root(st, (size_t)2 << 20));
    fill(root, 99);
    tm_store_abort(st);
    TU_OK(tm_close(st)); /* its checkpoint */
    st = w_open(&rec, path);
    w_commit(&rec, st, 5, big2); /* grows again, in a record larger than LOG_CHUNK */
    w_commit(&rec, st, 6, big2);
    TU_OK(tm_close(st));
    cf_stop(&rec);
    w_run(&x, "grow", &rec, (struct expect){1, 1, 0}, 0);
}

Test(explore, ring)
{
    struct run x = {0};
    struct cf_rec rec;
    char path[PATH_MAX + 16];
    char dir[PATH_MAX];
    tm_store *st;
    tm_stats_t s;
    int64_t g = 1;
    size_t focus = 0, before = 0;
    scratch_make(&x);
    dir_of(&x, "work", 0, dir);
    snprintf(path, sizeof path, "%s/" STORE, dir);
    make_base(path);
    cf_start(&rec, dir, LOCK);
    st = w_open(&rec, path);
    do { /* until the ring is full: a commit checkpoints, then writes its record */
        cr_assert_lt(g, 200, "no checkpoint inside a commit after %lld commits", (long long)g);
        focus = before, before = rec.n;
        w_commit(&rec, st, ++g, ROOT_BYTES);
        TU_OK(tm_store_stats(st, &s));
    } while (s.checkpoints == 0);
    w_commit(&rec, st, ++g, ROOT_BYTES);
    w_commit(&rec, st, ++g, ROOT_BYTES);
    TU_OK(tm_close(st));
    cf_stop(&rec);
    w_run(&x, "ring", &rec, (struct expect){1, 1, 0}, focus); /* from the commit before the checkpoint */
}

/* The heap at work: each commit frees about half the blocks of a list
 * hung past the generation root and allocates forty more, small and large
 * (the arena grows, the log's ring fills and commits checkpoint); the
 * image's heap must check clean. */
static void churn(tm_store *st, int64_t gen, struct cf_rec *rec)
{
    uint64_t rng = (uint64_t)gen;
    unsigned char *root;
    void **link, **head;
    int r;
    cf_mark(rec, MK_BEGIN, gen);
    TU_OK(tm_store_begin(st));
    cr_assert_not_null(root = tm_store_root(st, CHURN_LINK + sizeof(void *)));
    fill(root, (uint64_t)gen);
    head = link = (void **)(void *)(root + CHURN_LINK);
    while (*link) {
        void **b = *link;
        if (tu_rand(&rng) & 1) {
            *link = *b;
            tm_store_free(st, b);
        } else {
            link = b;
        }
    }
    for (int i = 0; i < 40; i++) {
        size_t size = sizeof(void *) + tu_rand(&rng) % (i % 4 ? 2000 : 70000);
        void **b = tm_store_malloc(st, size);
        cr_assert_not_null(b);
        memset(b, (int)gen, size);
        *b = *head;
        *head = b;
    }
    r = tm_store_commit(st);
    cr_assert_eq(r, 0, "commit of generation %lld: %s", (long long)gen, tm_strerror(r));
    cf_mark(rec, MK_END, gen);
    cr_assert(acknowledged(rec), "commit of generation %lld made no log fdatasync", (long long)gen);
}

Test(explore, churn)
{
    struct run x = {0};
    struct cf_rec rec;
    char path[PATH_MAX + 16], dir[PATH_MAX];
    tm_store *st;
    tm_stats_t s;
    scratch_make(&x);
    dir_of(&x, "work", 0, dir);
    snprintf(path, sizeof path, "%s/" STORE, dir);
    make_base(path);
    cf_start(&rec, dir, LOCK);
    st = w_open(&rec, path);
    for (int64_t g = 2; g <= 12; g++)
        churn(st, g, &rec);
    TU_OK(tm_store_stats(st, &s));
    cr_assert_gt(s.checkpoints, 0, "the churn never filled the log's ring");
    TU_OK(tm_close(st));
    cf_stop(&rec);
    w_run(&x, "churn", &rec, (struct expect){1, 1, 0}, 0);
}

/* ---- what the exploration found, pinned down ---- */

/* Copies from to to, cut to len bytes unless len is 0. */
static void copy_file(const char *from, const char *to, uint64_t len)
{
    unsigned char *p;
    uint64_t n;
    int fd;
    cf_load(from, &p, &n);
    fd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0, "create %s", to);
    cr_assert_eq(write(fd, p, len && len < n ? len : n), (ssize_t)(len && len < n ? len : n));
    close(fd);
    free(p);
}

/* In a child, without the parent's handle: opens path read-write and
 * commits generation 3 over 2. */
static tm_store *inherited;

static void write_and_exit(void *path)
{
    tm_options o = xopts(0);
    tm_store *st;
    char why[256];
    int r;
    tm_close(inherited);
    if ((r = tm_open(path, &o, &st)) != 0) {
        fprintf(stderr, "writer: open: %s\n", tm_strerror(r));
        _exit(10);
    }
    if (tm_store_read_begin(st) != 0)
        _exit(11);
    if (gen_of(st, why, sizeof why) != 2)
        _exit(12);
    tm_store_read_end(st);
    if (commit_gen(st, 3, ROOT_BYTES, NULL) != 0)
        _exit(13);
    _exit(tm_close(st) == 0 ? 0 : 14);
}

/* A commit that grew the arena is durable in the log and its superblock
 * reached the store file, but the file's new size did not: the crash
 * image of a growth cut short.  It needs recovery: it is not truncated. */
Test(explore, a_growth_cut_short_needs_recovery_not_a_truncated_file)
{
    struct run x = {0};
    char dir[PATH_MAX], img[PATH_MAX], path[PATH_MAX + 16], ipath[PATH_MAX + 16], from[PATH_MAX + 32],
        to[PATH_MAX + 32], dest[PATH_MAX + 16];
    tm_options ro = xopts(1), rw = xopts(0);
    tm_store *st, *reader;
    struct expect two = {2, 2, 0};
    char why[512];
    int status;
    x.workload = "growth cut short";
    scratch_make(&x);
    dir_of(&x, "work", 0, dir);
    dir_of(&x, "img", 1, img);
    snprintf(path, sizeof path, "%s/" STORE, dir);
    snprintf(ipath, sizeof ipath, "%s/" STORE, img);
    snprintf(dest, sizeof dest, "%s/c.tmf", img);
    make_base(path);
    TU_OK(tm_open(path, &rw, &st));
    TU_OK(commit_gen(st, 2, (size_t)256 << 10, NULL)); /* grows the 128 KiB arena */
    snprintf(from, sizeof from, "%s.log", path);
    snprintf(to, sizeof to, "%s.log", ipath);
    copy_file(from, to, 0);
    copy_file(path, ipath, INITIAL); /* the growth's size lost, page 1 kept */
    TU_OK(tm_close(st));

    /* read-only: it opens, and refuses to read until recovery */
    TU_OK(tm_open(ipath, &ro, &reader));
    cr_assert_eq(tm_store_read_begin(reader), EROFS);
    cr_assert_eq(tool(&x, "check", ipath, NULL), 0, "%s", out);
    cr_assert(strstr(out, ": recovery pending:"), "%s", out);
    cr_assert_eq(tool(&x, "info", ipath, NULL), 0, "%s", out);
    cr_assert(strstr(out, "recovery:        pending"), "%s", out);
    cr_assert_eq(tool(&x, "copy", ipath, dest), 0, "%s", out);
    /* a writer of another process joining the reader heals it (it is not
     * the first opener) */
    inherited = reader;
    status = tu_run_child(write_and_exit, ipath, why, sizeof why);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the writer: status %#x: %s", status, why);
    TU_OK(tm_store_read_begin(reader));
    TU_OK(tm_store_read_end(reader));
    TU_OK(tm_close(reader));
    cr_assert_eq(open_examine(&x, ipath, 0, (struct expect){3, 3, 0}, "reopened", "reopened"), 3);
    cr_assert_eq(open_examine(&x, dest, 0, two, "the copy", "the copy"), 2); /* same base: one at a time */
    cr_assert_eq(x.violations, 0);

    /* with no commit left to replay, the same file is truncated */
    make_base(path);
    copy_file(path, ipath, 0);
    snprintf(from, sizeof from, "%s.log", path);
    copy_file(from, to, 0);
    cr_assert_eq(truncate(ipath, 3 * PAGE), 0);
    cr_assert_eq(tm_open(ipath, &ro, &reader), TM_ETRUNCATED);
    cr_assert_eq(tm_open(ipath, &rw, &st), TM_ETRUNCATED);
}
