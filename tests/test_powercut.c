/*
 * test_powercut.c — a simulated power cut at every step of the commit and
 * checkpoint protocols.
 *
 * The core does all its file writes through the os_calls table (src/os.h).
 * Here pwrite, pwritev, the writes through a mapping (write_mapped),
 * ftruncate, fallocate and fdatasync are wrapped: each
 * call runs for real (the process carries on normally) and is recorded, with
 * its bytes, against the file it touched (store or log, told apart by inode).
 * A recorded write is "pending" until an fdatasync of its file, which makes
 * every pending write of that file durable, in order.
 *
 * Afterwards, for every cut point c (after the c-th recorded call) and
 * several variants, a crash image is built: the durable image of each file
 * (its bytes when recording began, plus every write synced before the cut)
 * plus an arbitrary subset of the pending writes and size changes, some of
 * them torn — only some of their 512-byte sectors written, or garbage in the
 * sectors not written.  The image is opened with the real library and must
 * hold, untorn, a generation g with last <= g <= inflight, where last is the
 * newest commit that returned before the cut (or whose log fdatasync had
 * completed: that is the commit point) and inflight the commit under way.
 *
 * The state is the one of test_faults.c: a root holding a generation, a
 * checksum and NELEM elements encoding the generation, one element straddling
 * every page boundary.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "os.h"
#include "genroot.h"

/* ---- the state under test ---- */

#define ROOT_BYTES (ELEM_OFF + 8 * NELEM)
#define INITIAL ((size_t)128 << 10)
#define SECTOR 512

/* The checkpoint test fills the rest of a large root with its generation's
 * byte, so that each commit logs about 1 MiB. */
static int ballast;

static void fill_ballast(unsigned char *root, size_t size, int64_t g)
{
    memset(root + ROOT_BYTES, (int)(g & 0xff), size - ROOT_BYTES);
}

static void check_ballast(tm_store *st, const char *ctx)
{
    struct tm_super *sb = super_of(st);
    const unsigned char *root = (const unsigned char *)(uintptr_t)sb->root;
    uint64_t g, i;
    memcpy(&g, root, 8);
    for (i = ROOT_BYTES; i < sb->root_size; i++)
        cr_assert_eq(root[i], (unsigned char)g, "%s: gen %llu but ballast byte %llu is %u", ctx,
                     (unsigned long long)g, (unsigned long long)i, root[i]);
}

static tm_options popts(void)
{
    tm_options o = tu_opts(TM_SYNC_FULL);
    o.initial_size = INITIAL;
    return o;
}

/* ---- recording ---- */

enum { F_STORE, F_LOG, NFILES };
enum { OP_WRITE, OP_SIZE, OP_EXTEND, OP_SYNC };
static const char *const op_name[] = {"write", "ftruncate", "fallocate", "fdatasync"};
static const char *const file_name[] = {"store", "log"};

struct op {
    int file, kind;
    uint64_t off, len; /* write: range; ftruncate: len; fallocate: off + len */
    unsigned char *data;
};

struct commit {
    int64_t gen;
    size_t start, end; /* recorded calls before begin, and when commit returned */
    size_t sync;       /* 1 + index of its log fdatasync; 0: none yet */
    size_t min_root;
};

static struct {
    int on;
    dev_t dev[NFILES];
    ino_t ino[NFILES];
    struct op *ops;
    size_t n, cap;
    long unknown;      /* calls on other files */
    dev_t lock_dev;    /* the lock file: its state dies with a power cut anyway */
    ino_t lock_ino;
    struct commit commits[256];
    int ncommits;
    int cur;           /* commit under way, or -1 */
} rec;

static int file_of(int fd)
{
    struct stat sb;
    int f;
    if (fstat(fd, &sb) < 0)
        return -1;
    for (f = 0; f < NFILES; f++)
        if (sb.st_dev == rec.dev[f] && sb.st_ino == rec.ino[f])
            return f;
    return -1;
}

static int is_lock_file(int fd)
{
    struct stat sb;
    return fstat(fd, &sb) == 0 && sb.st_dev == rec.lock_dev && sb.st_ino == rec.lock_ino;
}

static struct op *push(int fd, int kind)
{
    int f = file_of(fd);
    struct op *o;
    if (f < 0) {
        rec.unknown += !is_lock_file(fd);
        return NULL;
    }
    if (rec.n == rec.cap) {
        rec.cap = rec.cap ? 2 * rec.cap : 1024;
        rec.ops = realloc(rec.ops, rec.cap * sizeof *rec.ops);
        cr_assert_not_null(rec.ops);
    }
    o = &rec.ops[rec.n++];
    memset(o, 0, sizeof *o);
    o->file = f, o->kind = kind;
    return o;
}

static void rec_write(int fd, const void *buf, ssize_t n, off_t off)
{
    struct op *o;
    if (n > 0 && rec.on && (o = push(fd, OP_WRITE))) {
        o->off = (uint64_t)off, o->len = (uint64_t)n;
        o->data = malloc((size_t)n);
        cr_assert_not_null(o->data);
        memcpy(o->data, buf, (size_t)n);
    }
}

static ssize_t rec_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    ssize_t n = os_real.write_at(fd, buf, len, off);
    rec_write(fd, buf, n, off);
    return n;
}

static ssize_t rec_write_mapped(int fd, char *map, const void *buf, size_t len, off_t off)
{
    ssize_t n = os_real.write_mapped(fd, map, buf, len, off);
    rec_write(fd, buf, n, off);
    return n;
}

static ssize_t rec_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    ssize_t n = os_real.writev_at(fd, iov, cnt, off);
    struct op *o;
    if (n > 0 && rec.on && (o = push(fd, OP_WRITE))) {
        size_t done = 0;
        int i;
        o->off = (uint64_t)off, o->len = (uint64_t)n;
        o->data = malloc((size_t)n);
        cr_assert_not_null(o->data);
        for (i = 0; i < cnt && done < (size_t)n; i++) {
            size_t k = iov[i].iov_len < (size_t)n - done ? iov[i].iov_len : (size_t)n - done;
            memcpy(o->data + done, iov[i].iov_base, k);
            done += k;
        }
    }
    return n;
}

static int rec_ftruncate(int fd, off_t len)
{
    int r = os_real.ftruncate(fd, len);
    struct op *o;
    if (r == 0 && rec.on && (o = push(fd, OP_SIZE)))
        o->len = (uint64_t)len;
    return r;
}

static int rec_fallocate(int fd, off_t off, off_t len)
{
    int r = os_real.fallocate(fd, off, len);
    struct op *o;
    if (r == 0 && rec.on && (o = push(fd, OP_EXTEND)))
        o->off = (uint64_t)off, o->len = (uint64_t)len;
    return r;
}

static int rec_fdatasync(int fd)
{
    int r = os_real.fdatasync(fd);
    struct op *o;
    if (r == 0 && rec.on && (o = push(fd, OP_SYNC))) {
        struct commit *c = rec.cur >= 0 ? &rec.commits[rec.cur] : NULL;
        if (c && o->file == F_LOG && !c->sync)
            c->sync = rec.n; /* a cut from here on has the record durable */
    }
    return r;
}

struct image {
    unsigned char *p;
    size_t len, cap;
};

static void img_size(struct image *im, size_t len)
{
    if (len > im->cap) {
        size_t cap = im->cap ? im->cap : 1 << 20;
        while (cap < len)
            cap *= 2;
        im->p = realloc(im->p, cap);
        cr_assert_not_null(im->p);
        im->cap = cap;
    }
    if (len > im->len)
        memset(im->p + im->len, 0, len - im->len);
    im->len = len;
}

static void img_load(struct image *im, const char *path)
{
    struct stat sb;
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "open %s", path);
    cr_assert_eq(fstat(fd, &sb), 0);
    im->len = 0;
    img_size(im, (size_t)sb.st_size);
    cr_assert_eq(pread(fd, im->p, im->len, 0), (ssize_t)im->len);
    close(fd);
}

static void img_copy(struct image *dst, const struct image *src)
{
    dst->len = 0;
    img_size(dst, src->len);
    memcpy(dst->p, src->p, src->len);
}

static void img_save(const struct image *im, const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0, "create %s", path);
    cr_assert_eq(pwrite(fd, im->p, im->len, 0), (ssize_t)im->len);
    close(fd);
}

static void rec_start(const char *path)
{
    char log[600];
    struct stat sb;
    snprintf(log, sizeof log, "%s.log", path);
    memset(&rec, 0, sizeof rec);
    rec.cur = -1;
    cr_assert_eq(stat(path, &sb), 0);
    rec.dev[F_STORE] = sb.st_dev, rec.ino[F_STORE] = sb.st_ino;
    cr_assert_eq(stat(log, &sb), 0);
    rec.dev[F_LOG] = sb.st_dev, rec.ino[F_LOG] = sb.st_ino;
    snprintf(log, sizeof log, "%s.lock", path);
    if (stat(log, &sb) == 0)
        rec.lock_dev = sb.st_dev, rec.lock_ino = sb.st_ino;
    os_calls.write_at = rec_pwrite;
    os_calls.writev_at = rec_pwritev;
    os_calls.write_mapped = rec_write_mapped;
    os_calls.ftruncate = rec_ftruncate;
    os_calls.fallocate = rec_fallocate;
    os_calls.fdatasync = rec_fdatasync;
    rec.on = 1;
}

static void rec_stop(void)
{
    rec.on = 0;
    os_calls = os_real;
}

static void rec_free(void)
{
    size_t i;
    for (i = 0; i < rec.n; i++)
        free(rec.ops[i].data);
    free(rec.ops);
    rec.ops = NULL;
    rec.n = rec.cap = 0;
}

TestSuite(powercut, .fini = rec_stop, .timeout = 600);

/* A recorded commit of generation gen; the root grows to grow_to if nonzero. */
static void rec_commit(tm_store *st, int64_t gen, size_t grow_to, size_t min_root)
{
    struct commit *c = &rec.commits[rec.ncommits];
    unsigned char *root;
    cr_assert_lt(rec.ncommits, 256);
    memset(c, 0, sizeof *c);
    c->gen = gen, c->start = rec.n, c->min_root = min_root;
    rec.cur = rec.ncommits++;
    TU_OK(tm_store_begin(st));
    root = tm_store_root(st, grow_to ? grow_to : 1);
    cr_assert_not_null(root, "root growth to %zu", grow_to);
    fill(root, (uint64_t)gen);
    if (ballast)
        fill_ballast(root, super_of(st)->root_size, gen);
    TU_OK(tm_store_commit(st));
    c->end = rec.n;
    cr_assert_neq(c->sync, 0, "commit of gen %lld made no log fdatasync", (long long)gen);
    rec.cur = -1;
}

/* ---- crash images ---- */

enum { T_FULL, T_PREFIX, T_SECTORS, T_GARBAGE };

/* Applies write o to im, whole or torn: sectors are the 512-byte blocks of
 * the file that the write covers (partially at its ends). */
static void apply_write(struct image *im, const struct op *o, int tear, uint64_t *rng)
{
    uint64_t a = o->off, end = o->off + o->len, nsec, cut, s;
    if (tear == T_FULL) {
        if (end > im->len)
            img_size(im, (size_t)end);
        memcpy(im->p + a, o->data, o->len);
        return;
    }
    nsec = (end + SECTOR - 1) / SECTOR - a / SECTOR;
    cut = tu_rand(rng) % nsec; /* sectors written before the tear */
    if (end > im->len)
        img_size(im, (size_t)end);
    for (s = 0; s < nsec; s++) {
        uint64_t lo = (a / SECTOR + s) * SECTOR, hi = lo + SECTOR, i;
        int write;
        if (lo < a)
            lo = a;
        if (hi > end)
            hi = end;
        if (tear == T_SECTORS)
            write = tu_rand(rng) & 1;
        else
            write = s < cut;
        if (write) {
            memcpy(im->p + lo, o->data + (lo - a), hi - lo);
        } else if (tear == T_GARBAGE) {
            for (i = lo; i < hi; i++)
                im->p[i] = (unsigned char)tu_rand(rng);
        }
    }
}

static void apply_op(struct image *im, const struct op *o, int tear, uint64_t *rng)
{
    switch (o->kind) {
    case OP_WRITE:
        apply_write(im, o, tear, rng);
        break;
    case OP_SIZE:
        if (o->len < im->len)
            im->len = (size_t)o->len;
        else
            img_size(im, (size_t)o->len);
        break;
    case OP_EXTEND:
        if (o->off + o->len > im->len)
            img_size(im, (size_t)(o->off + o->len));
        break;
    }
}

#define NVARIANTS 9
static const char *const variant_name[NVARIANTS] = {
    "nothing pending", "all pending",     "all pending, last writes torn", "only the log's pending",
    "only the store's pending", "random subset", "random subset", "random subset, torn", "random subset, torn"};

/* Builds crash image v of file f from its durable image and pending ops. */
static void build(struct image *out, const struct image *durable, const size_t *pending, size_t np, int f, int v,
                  uint64_t *rng, int *torn)
{
    size_t i, last_write = (size_t)-1;
    img_copy(out, durable);
    for (i = 0; i < np; i++)
        if (rec.ops[pending[i]].kind == OP_WRITE)
            last_write = i;
    for (i = 0; i < np; i++) {
        const struct op *o = &rec.ops[pending[i]];
        int take, tear = T_FULL;
        switch (v) {
        case 0: take = 0; break;
        case 1: take = 1; break;
        case 2: take = 1, tear = i == last_write ? T_PREFIX : T_FULL; break;
        case 3: take = f == F_LOG; break;
        case 4: take = f == F_STORE; break;
        default:
            take = tu_rand(rng) & 1;
            if (v >= 7 && o->kind == OP_WRITE && tu_rand(rng) % 3 == 0)
                tear = 1 + (int)(tu_rand(rng) % 3);
        }
        if (take && tear != T_FULL)
            (*torn)++;
        if (take)
            apply_op(out, o, tear, rng);
    }
}

struct bounds {
    int64_t lo, hi;
    size_t min_root_lo;
    const char *where;
};

/* The generations allowed after a cut following c recorded calls. */
static struct bounds bounds_at(size_t c, int64_t base_gen, size_t base_root)
{
    struct bounds b = {base_gen, base_gen, base_root, "between commits"};
    int i;
    for (i = 0; i < rec.ncommits; i++) {
        const struct commit *k = &rec.commits[i];
        if (k->end <= c || (k->sync && k->sync <= c)) {
            b.lo = b.hi = k->gen, b.min_root_lo = k->min_root;
            b.where = k->end <= c ? "between commits" : "after the commit point";
        } else if (k->start <= c) {
            b.hi = k->gen;
            b.where = "before the commit point";
        }
    }
    return b;
}

static char cur_ctx[300];

static void on_alarm(int sig)
{
    static const char msg[] = "powercut: timed out (a recovery or read transaction that never ends) at: ";
    (void)sig;
    if (write(2, msg, sizeof msg - 1) < 0 || write(2, cur_ctx, strlen(cur_ctx)) < 0 || write(2, "\n", 1) < 0)
        _exit(3);
    _exit(3);
}

struct totals {
    long cuts, images, torn, in_flight_seen, recovered_new;
};

/* Opens the crash image at path and checks it. */
static void check_image(const char *path, struct bounds b, const char *ctx, int use_after, struct totals *t)
{
    tm_options o = popts();
    tm_store *st = NULL;
    struct tm_super *sb;
    tm_stats_t s;
    char why[200] = "";
    int64_t g;
    int r;
    snprintf(cur_ctx, sizeof cur_ctx, "%s", ctx);
    signal(SIGALRM, on_alarm);
    alarm(60); /* a recovery or read that never ends fails the test */
    r = tm_open(path, &o, &st);
    cr_assert_eq(r, 0, "%s: the crash image does not open: %s", ctx, tm_strerror(r));
    sb = super_of(st);
    cr_assert_neq(sb->root, 0, "%s: no root", ctx);
    TU_OK(tm_store_read_begin(st));
    g = root_gen((const unsigned char *)(uintptr_t)sb->root, why, sizeof why);
    TU_OK(tm_store_read_end(st));
    cr_assert_neq(g, -1, "%s: torn state: %s", ctx, why);
    cr_assert(g >= b.lo && g <= b.hi, "%s: generation %lld, want %lld..%lld", ctx, (long long)g, (long long)b.lo,
              (long long)b.hi);
    TU_OK(tm_store_stats(st, &s));
    cr_assert_eq(s.commits, (uint64_t)g + 1, "%s: gen %lld with commit sequence %llu", ctx, (long long)g,
                 (unsigned long long)s.commits);
    if (g == b.lo)
        cr_assert_geq(sb->root_size, b.min_root_lo, "%s: root of %llu bytes", ctx,
                      (unsigned long long)sb->root_size);
    if (g > b.lo)
        t->in_flight_seen++;
    if (use_after) { /* a recovered store takes new commits and keeps them */
        unsigned char *root;
        TU_OK(tm_store_begin(st));
        root = tm_store_root(st, 1);
        fill(root, (uint64_t)g + 100);
        if (ballast)
            fill_ballast(root, sb->root_size, g + 100);
        TU_OK(tm_store_commit(st));
        TU_OK(tm_close(st));
        st = NULL;
        TU_OK(tm_open(path, &o, &st));
        sb = super_of(st);
        g = root_gen((const unsigned char *)(uintptr_t)sb->root, why, sizeof why);
        cr_assert(g >= 100, "%s: the commit after recovery was lost or torn (gen %lld, %s)", ctx, (long long)g,
                  why);
        t->recovered_new++;
    }
    if (ballast)
        check_ballast(st, ctx);
    TU_OK(tm_close(st));
    alarm(0);
}

/* Walks every cut point of the recording; every `stride`-th cut of a run of
 * store writes is tested (1: all), the others skipped. */
static void replay_cuts(int64_t base_gen, size_t base_root, size_t from, size_t stride, unsigned vmask,
                        struct totals *t)
{
    struct image durable[NFILES], crash;
    size_t *pending[NFILES], np[NFILES], c;
    char path[512], log[600], lock[600], ctx[300];
    int f;

    memset(durable, 0, sizeof durable);
    memset(&crash, 0, sizeof crash);
    snprintf(path, sizeof path, "%s", tu_path("cut.tmf"));
    snprintf(log, sizeof log, "%s.log", path);
    snprintf(lock, sizeof lock, "%s.lock", path);
    for (f = 0; f < NFILES; f++) {
        pending[f] = malloc((rec.n + 1) * sizeof(size_t));
        cr_assert_not_null(pending[f]);
        np[f] = 0;
    }
    /* the images when recording began were saved by the caller */
    img_load(&durable[F_STORE], tu_path("base.tmf"));
    img_load(&durable[F_LOG], tu_path("base.tmf.log"));

    for (c = 0; c <= rec.n; c++) {
        struct bounds b;
        int v;
        if (c > 0) { /* op c-1 has happened */
            const struct op *o = &rec.ops[c - 1];
            if (o->kind == OP_SYNC) {
                size_t i;
                for (i = 0; i < np[o->file]; i++)
                    apply_op(&durable[o->file], &rec.ops[pending[o->file][i]], T_FULL, NULL);
                np[o->file] = 0;
            } else {
                pending[o->file][np[o->file]++] = c - 1;
            }
            /* inside a long run of page writes to the store, sample */
            if (c < from)
                continue;
            if (stride > 1 && c < rec.n && o->kind == OP_WRITE && o->file == F_STORE &&
                rec.ops[c].kind == OP_WRITE && rec.ops[c].file == F_STORE && c % stride != 0)
                continue;
        }
        b = bounds_at(c, base_gen, base_root);
        t->cuts++;
        if (getenv("TMF_PC_DEBUG"))
            fprintf(stderr, "cut %zu/%zu\n", c, rec.n);
        for (v = 0; v < NVARIANTS; v++) {
            uint64_t rng = 0x9e3779b9u * (c + 1) + (uint64_t)v * 7919;
            int torn = 0;
            if (!(vmask >> v & 1))
                continue;
            snprintf(ctx, sizeof ctx, "cut after call %zu/%zu (%s %s), %s, variant %d (%s)", c, rec.n,
                     c ? op_name[rec.ops[c - 1].kind] : "-", c ? file_name[rec.ops[c - 1].file] : "-", b.where, v,
                     variant_name[v]);
            unlink(path);
            unlink(log);
            unlink(lock); /* a power cut takes the lock file's state along */
            for (f = 0; f < NFILES; f++) {
                build(&crash, &durable[f], pending[f], np[f], f, v, &rng, &torn);
                img_save(&crash, f == F_STORE ? path : log);
            }
            t->torn += torn;
            t->images++;
            check_image(path, b, ctx, v == 0 || v == 7, t);
        }
    }
    for (f = 0; f < NFILES; f++) {
        free(pending[f]);
        free(durable[f].p);
    }
    free(crash.p);
    unlink(path);
    unlink(log);
    unlink(lock);
}

static void copy_file(const char *from, const char *to)
{
    struct image im;
    memset(&im, 0, sizeof im);
    img_load(&im, from);
    img_save(&im, to);
    free(im.p);
}

/* A store at generation 1, closed (checkpointed: durable), its files copied
 * to base.tmf{,.log}, reopened with recording on. */
static tm_store *start(const char *path)
{
    tm_options o = popts();
    tm_store *st = NULL;
    unsigned char *root;
    char log[600], blog[600];
    TU_OK(tm_open(path, &o, &st));
    cr_assert_not_null(root = tm_store_root(st, ROOT_BYTES));
    TU_OK(tm_store_begin(st));
    fill(root, 1);
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
    snprintf(log, sizeof log, "%s.log", path);
    snprintf(blog, sizeof blog, "%s", tu_path("base.tmf.log"));
    copy_file(path, tu_path("base.tmf"));
    copy_file(log, blog);
    rec_start(path);
    TU_OK(tm_open(path, &o, &st));
    return st;
}

static void count_ops(long *by_kind)
{
    size_t i;
    for (i = 0; i < rec.n; i++)
        by_kind[rec.ops[i].kind]++;
}

Test(powercut, every_step_of_commits_and_checkpoints)
{
    char path[512];
    tm_store *st;
    struct totals t;
    long kinds[4] = {0, 0, 0, 0};
    const size_t big1 = (size_t)256 << 10, big2 = (size_t)1100 << 10;

    snprintf(path, sizeof path, "%s", tu_path("s.tmf"));
    st = start(path);
    rec_commit(st, 2, 0, ROOT_BYTES);
    rec_commit(st, 3, big1, big1); /* grows the arena (fallocate) */
    rec_commit(st, 4, 0, big1);
    { /* an aborted growth: the store file is cut back (ftruncate) */
        unsigned char *root;
        TU_OK(tm_store_begin(st));
        cr_assert_not_null(root = tm_store_root(st, (size_t)2 << 20));
        fill(root, 99);
        tm_store_abort(st);
    }
    TU_OK(tm_close(st)); /* checkpoint: the log is reused from here */
    {
        tm_options o = popts();
        TU_OK(tm_open(path, &o, &st));
    }
    rec_commit(st, 5, 0, big1);
    rec_commit(st, 6, big2, big2); /* grows again; a record larger than LOG_CHUNK */
    rec_commit(st, 7, 0, big2);    /* past the log's length: extended with zeros */
    TU_OK(tm_close(st));
    {
        tm_options o = popts();
        TU_OK(tm_open(path, &o, &st));
    }
    rec_commit(st, 8, 0, big2);
    rec_commit(st, 9, 0, big2);
    TU_OK(tm_close(st));
    rec_stop();
    cr_assert_eq(rec.unknown, 0, "%ld calls on files other than the store and its log", rec.unknown);
    count_ops(kinds);
    cr_assert(kinds[OP_WRITE] && kinds[OP_SIZE] && kinds[OP_EXTEND] && kinds[OP_SYNC], "kinds");

    memset(&t, 0, sizeof t);
    replay_cuts(1, ROOT_BYTES, 0, 8, ~0u, &t);
    cr_log_info("powercut: %zu recorded calls (%ld writes, %ld ftruncate, %ld fallocate, %ld fdatasync), %ld cut "
                "points, %ld crash images (%ld torn writes), in-flight commit recovered %ld times, %ld recovered "
                "stores committed again",
                rec.n, kinds[OP_WRITE], kinds[OP_SIZE], kinds[OP_EXTEND], kinds[OP_SYNC], t.cuts, t.images, t.torn,
                t.in_flight_seen, t.recovered_new);
    cr_assert_gt(t.in_flight_seen, 0, "no crash image ever held the in-flight commit");
    rec_free();
}

/* The checkpoint a commit makes once the log passes CKPT_BYTES (tx.c step
 * 6): about 64 commits of 1 MiB records, then a power cut at every step of
 * the commit that checkpoints (its page writes sampled), of the next commit
 * (whose record reuses the log from LOG_START in the new generation) and of
 * the final tm_close. */
Test(powercut, checkpoint_inside_commit)
{
    char path[512];
    tm_store *st;
    struct totals t;
    tm_stats_t s;
    const size_t big = (size_t)1 << 20;
    int64_t g = 2;
    int ck;

    ballast = 1;
    snprintf(path, sizeof path, "%s", tu_path("s.tmf"));
    st = start(path);
    rec_commit(st, g, big, big);
    for (;;) {
        TU_OK(tm_store_stats(st, &s));
        if (getenv("TMF_PC_DEBUG"))
            fprintf(stderr, "g %lld log %llu ckpts %llu root %llu arena %llu\n", (long long)g,
                    (unsigned long long)s.log_bytes, (unsigned long long)s.checkpoints,
                    (unsigned long long)super_of(st)->root_size, (unsigned long long)s.arena_size);
        if (s.checkpoints > 0)
            break;
        cr_assert_lt(g, 200, "no checkpoint after %lld commits of 1 MiB", (long long)g);
        rec_commit(st, ++g, 0, big);
    }
    ck = rec.ncommits - 1; /* this commit checkpointed */
    rec_commit(st, ++g, 0, big);
    TU_OK(tm_close(st));
    rec_stop();
    cr_assert_eq(rec.unknown, 0);

    memset(&t, 0, sizeof t);
    replay_cuts(1, ROOT_BYTES, rec.commits[ck].start, 32, 1u << 0 | 1u << 1 | 1u << 2 | 1u << 5 | 1u << 7, &t);
    cr_log_info("powercut in-commit checkpoint: %d commits, %zu recorded calls, %ld cut points from call %zu, %ld "
                "crash images (%ld torn writes), in-flight commit recovered %ld times",
                rec.ncommits, rec.n, t.cuts, rec.commits[ck].start, t.images, t.torn, t.in_flight_seen);
    rec_free();
}
