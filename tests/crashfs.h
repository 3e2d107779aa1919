/*
 * crashfs.h — what a power cut may leave of a directory and its files: a
 * model of a file system after a crash, and a recorder of the core's file
 * calls to feed it (test_explore.c).
 *
 * The recorder (struct cf_rec) replaces the entries of the os_calls table
 * (src/os.h) that change a file or a directory, or make them durable: open
 * (O_CREAT, O_TMPFILE), link_fd, unlink, write_at, writev_at, write_mapped,
 * ftruncate,
 * fallocate, fsync and fdatasync.  Every call runs for real, the process
 * carries on, and a call that touches the watched directory or a file in it
 * is recorded, with its bytes.  Files are told apart by inode, so a
 * nameless O_TMPFILE file is followed from its creation to its link.  The
 * workload adds marks of its own between the calls (cf_mark).
 *
 * The model (that of ALICE, OSDI'14, and CrashMonkey, OSDI'18): at a cut
 * (a point of the recording),
 *   - a file holds what its last fsync or fdatasync made durable (its
 *     bytes and size; the bytes when recording began count as durable), and
 *     each write since then may be lost, applied, or torn at 512-byte
 *     sectors, in any order at page granularity: each page reaches the disk
 *     as it was at some moment since that sync, whatever the order of the
 *     writes, and a page's write-back may itself be torn, some sectors
 *     older than others;
 *   - its size changes since then (ftruncate, fallocate, a write past its
 *     end) may be lost too;
 *   - the directory holds the entries its last fsync made durable; each
 *     entry made or removed since then (a creating open, a link, an unlink)
 *     may be lost, whether or not the file itself was synced;
 *   - a file named volatile (a lock file, whose state a power cut takes
 *     along) is in no image.
 *
 * A walk (struct cf_walk) moves the cut along the recording; cf_image
 * builds the crash image a seed chooses, cf_save writes it into an empty
 * directory.  Seed 0 is
 * the durable state alone, seed 1 everything applied; any other seed draws
 * a policy for each file and one for the directory:
 *   NONE    nothing since the last sync
 *   ALL     everything
 *   PREFIX  the calls before a moment t, the one at t torn at sectors (the
 *           order of the calls; what the power-cut suite explores)
 *   PAGES   each page as it was at a moment of its own, the size as at
 *           another
 *   TORN    PAGES, and one page in four torn: each of its sectors as it
 *           was at a moment no later than the page's
 *   RANDOM  (the directory) each entry change kept or lost by itself
 */
#ifndef TMF_TEST_CRASHFS_H
#define TMF_TEST_CRASHFS_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "format.h"
#include "os.h"

#define CF_SECTOR 512u
#define CF_PAGE 4096u
#define CF_FILES 32
#define CF_NAME 64

enum cf_kind { CF_WRITE, CF_SIZE, CF_SYNC, CF_LINK, CF_UNLINK, CF_DIRSYNC, CF_MARK };

struct cf_op {
    int kind;
    int file;              /* CF_WRITE, CF_SIZE, CF_SYNC, CF_LINK */
    uint64_t off, len;     /* CF_WRITE: the range; CF_SIZE: len is the new size */
    unsigned char *data;   /* CF_WRITE */
    char name[CF_NAME];    /* CF_LINK, CF_UNLINK: the entry */
    int mark;              /* CF_MARK: the workload's, with arg */
    long arg;
};

struct cf_file {
    dev_t dev;
    ino_t ino;
    char name[CF_NAME];    /* its last name in the live directory ("" while it has none) */
    uint64_t size;         /* its size as the process sees it */
    unsigned char *base;   /* its bytes when recording began */
    uint64_t base_len;
};

struct cf_entry {
    char name[CF_NAME];
    int file;
};

struct cf_rec {
    char dir[PATH_MAX];
    dev_t dir_dev;
    ino_t dir_ino;
    char volatile_name[CF_NAME];
    struct cf_file files[CF_FILES];
    int nfiles;
    struct cf_entry base_dir[CF_FILES]; /* the entries when recording began */
    int nbase;
    struct cf_op *ops;
    size_t n, cap;
    tm_os saved;           /* the table the recorder replaced */
    int on;
};

static struct cf_rec *cf_cur; /* the recorder the wrappers feed */

static uint64_t cf_mix(uint64_t a, uint64_t b)
{
    uint64_t z = a ^ (b + 0x9E3779B97F4A7C15ull + (a << 6) + (a >> 2));
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ---- recording ---- */

static struct cf_op *cf_push(struct cf_rec *r, int kind, int file)
{
    struct cf_op *o;
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 1024;
        r->ops = realloc(r->ops, r->cap * sizeof *r->ops);
        cr_assert_not_null(r->ops);
    }
    o = &r->ops[r->n++];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->file = file;
    return o;
}

/* The entry's name when path names one in the watched directory, else NULL. */
static const char *cf_name_in_dir(const struct cf_rec *r, const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t n = strlen(r->dir);
    if (!slash || (size_t)(slash - path) != n || strncmp(path, r->dir, n) != 0 || strlen(slash + 1) >= CF_NAME)
        return NULL;
    return slash + 1;
}

static int cf_find(const struct cf_rec *r, const struct stat *sb)
{
    for (int f = 0; f < r->nfiles; f++)
        if (r->files[f].dev == sb->st_dev && r->files[f].ino == sb->st_ino)
            return f;
    return -1;
}

static int cf_add(struct cf_rec *r, const struct stat *sb, const char *name)
{
    struct cf_file *f;
    cr_assert_lt(r->nfiles, CF_FILES, "crashfs: too many files");
    f = &r->files[r->nfiles];
    memset(f, 0, sizeof *f);
    f->dev = sb->st_dev;
    f->ino = sb->st_ino;
    f->size = (uint64_t)sb->st_size;
    snprintf(f->name, sizeof f->name, "%s", name);
    return r->nfiles++;
}

/* The watched file fd refers to, or -1. */
static int cf_file_of(const struct cf_rec *r, int fd)
{
    struct stat sb;
    return fstat(fd, &sb) == 0 ? cf_find(r, &sb) : -1;
}

static int cf_recording(void)
{
    return cf_cur && cf_cur->on;
}

static int cf_open(const char *path, int flags, unsigned mode)
{
    struct cf_rec *r = cf_cur;
    struct stat sb;
    const char *name = NULL;
    int existed = 1, fd, f;
    if (cf_recording() && (flags & O_CREAT))
        existed = lstat(path, &sb) == 0;
    fd = r->saved.open(path, flags, mode);
    if (fd < 0 || !cf_recording() || fstat(fd, &sb) < 0)
        return fd;
    if ((flags & O_TMPFILE) == O_TMPFILE) {
        struct stat d;
        if (stat(path, &d) == 0 && d.st_dev == r->dir_dev && d.st_ino == r->dir_ino)
            cf_add(r, &sb, ""); /* a new inode, nameless until linked */
        return fd;
    }
    if (!S_ISREG(sb.st_mode) || !(name = cf_name_in_dir(r, path)) || !strcmp(name, r->volatile_name))
        return fd;
    if ((f = cf_find(r, &sb)) < 0)
        f = cf_add(r, &sb, name);
    if (!existed)
        snprintf(cf_push(r, CF_LINK, f)->name, CF_NAME, "%s", name);
    return fd;
}

static int cf_link_fd(int fd, const char *to)
{
    struct cf_rec *r = cf_cur;
    const char *name;
    int rc = r->saved.link_fd(fd, to), f;
    if (rc == 0 && cf_recording() && (name = cf_name_in_dir(r, to)) && strcmp(name, r->volatile_name) &&
        (f = cf_file_of(r, fd)) >= 0) {
        snprintf(cf_push(r, CF_LINK, f)->name, CF_NAME, "%s", name);
        snprintf(r->files[f].name, CF_NAME, "%s", name);
    }
    return rc;
}

static int cf_unlink(const char *path)
{
    struct cf_rec *r = cf_cur;
    const char *name;
    int rc = r->saved.unlink(path);
    if (rc == 0 && cf_recording() && (name = cf_name_in_dir(r, path)) && strcmp(name, r->volatile_name))
        snprintf(cf_push(r, CF_UNLINK, -1)->name, CF_NAME, "%s", name);
    return rc;
}

/* The file's size grew to end: a size change of its own, which may be lost
 * while the bytes are not, or the other way round. */
static void cf_grew(struct cf_rec *r, int f, uint64_t end)
{
    if (end > r->files[f].size) {
        cf_push(r, CF_SIZE, f)->len = end;
        r->files[f].size = end;
    }
}

static void cf_wrote(int fd, const struct iovec *iov, int cnt, off_t off, ssize_t n)
{
    struct cf_rec *r = cf_cur;
    struct cf_op *o;
    size_t done = 0;
    int f;
    if (n <= 0 || !cf_recording() || (f = cf_file_of(r, fd)) < 0)
        return;
    o = cf_push(r, CF_WRITE, f);
    o->off = (uint64_t)off;
    o->len = (uint64_t)n;
    cr_assert_not_null(o->data = malloc((size_t)n));
    for (int i = 0; i < cnt && done < (size_t)n; i++) {
        size_t k = iov[i].iov_len < (size_t)n - done ? iov[i].iov_len : (size_t)n - done;
        memcpy(o->data + done, iov[i].iov_base, k);
        done += k;
    }
    cf_grew(r, f, (uint64_t)off + (uint64_t)n);
}

static ssize_t cf_write_at(int fd, const void *buf, size_t len, off_t off)
{
    ssize_t n = cf_cur->saved.write_at(fd, buf, len, off);
    struct iovec v = {(void *)buf, len};
    cf_wrote(fd, &v, 1, off, n);
    return n;
}

static ssize_t cf_write_mapped(int fd, char *map, const void *buf, size_t len, off_t off)
{
    ssize_t n = cf_cur->saved.write_mapped(fd, map, buf, len, off);
    struct iovec v = {(void *)buf, len};
    cf_wrote(fd, &v, 1, off, n);
    return n;
}

static ssize_t cf_writev_at(int fd, const struct iovec *iov, int cnt, off_t off)
{
    ssize_t n = cf_cur->saved.writev_at(fd, iov, cnt, off);
    cf_wrote(fd, iov, cnt, off, n);
    return n;
}

static int cf_ftruncate(int fd, off_t len)
{
    struct cf_rec *r = cf_cur;
    int rc = r->saved.ftruncate(fd, len), f;
    if (rc == 0 && cf_recording() && (f = cf_file_of(r, fd)) >= 0 && r->files[f].size != (uint64_t)len) {
        cf_push(r, CF_SIZE, f)->len = (uint64_t)len;
        r->files[f].size = (uint64_t)len;
    }
    return rc;
}

static int cf_fallocate(int fd, off_t off, off_t len)
{
    struct cf_rec *r = cf_cur;
    int rc = r->saved.fallocate(fd, off, len), f;
    if (rc == 0 && cf_recording() && (f = cf_file_of(r, fd)) >= 0)
        cf_grew(r, f, (uint64_t)(off + len));
    return rc;
}

static void cf_synced(int fd)
{
    struct cf_rec *r = cf_cur;
    struct stat sb;
    int f;
    if (!cf_recording() || fstat(fd, &sb) < 0)
        return;
    if (S_ISDIR(sb.st_mode) && sb.st_dev == r->dir_dev && sb.st_ino == r->dir_ino)
        cf_push(r, CF_DIRSYNC, -1);
    else if ((f = cf_find(r, &sb)) >= 0)
        cf_push(r, CF_SYNC, f);
}

static int cf_fsync(int fd)
{
    int rc = cf_cur->saved.fsync(fd);
    if (rc == 0)
        cf_synced(fd);
    return rc;
}

static int cf_fdatasync(int fd)
{
    int rc = cf_cur->saved.fdatasync(fd);
    if (rc == 0)
        cf_synced(fd);
    return rc;
}

static void cf_load(const char *path, unsigned char **p, uint64_t *len)
{
    struct stat sb;
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "crashfs: open %s", path);
    cr_assert_eq(fstat(fd, &sb), 0);
    *len = (uint64_t)sb.st_size;
    cr_assert_not_null(*p = malloc(*len ? *len : 1));
    cr_assert_eq(pread(fd, *p, *len, 0), (ssize_t)*len, "crashfs: read %s", path);
    close(fd);
}

/* Starts recording the calls on dir (an absolute path, as the workload
 * names its files) and its files; what they hold now counts as durable. */
static void cf_start(struct cf_rec *r, const char *dir, const char *volatile_name)
{
    struct dirent *e;
    struct stat sb;
    DIR *d;
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    snprintf(r->volatile_name, sizeof r->volatile_name, "%s", volatile_name);
    cr_assert_eq(stat(dir, &sb), 0, "crashfs: %s", dir);
    r->dir_dev = sb.st_dev;
    r->dir_ino = sb.st_ino;
    cr_assert_not_null(d = opendir(dir));
    while ((e = readdir(d))) {
        char path[PATH_MAX + CF_NAME];
        int f;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (strlen(e->d_name) >= CF_NAME || !strcmp(e->d_name, volatile_name) || lstat(path, &sb) < 0 ||
            !S_ISREG(sb.st_mode))
            continue;
        f = cf_add(r, &sb, e->d_name);
        cf_load(path, &r->files[f].base, &r->files[f].base_len);
        r->files[f].size = r->files[f].base_len;
        cr_assert_lt(r->nbase, CF_FILES);
        snprintf(r->base_dir[r->nbase].name, CF_NAME, "%s", e->d_name);
        r->base_dir[r->nbase++].file = f;
    }
    closedir(d);
    r->saved = os_calls;
    os_calls.open = cf_open;
    os_calls.link_fd = cf_link_fd;
    os_calls.unlink = cf_unlink;
    os_calls.write_at = cf_write_at;
    os_calls.writev_at = cf_writev_at;
    os_calls.write_mapped = cf_write_mapped;
    os_calls.ftruncate = cf_ftruncate;
    os_calls.fallocate = cf_fallocate;
    os_calls.fsync = cf_fsync;
    os_calls.fdatasync = cf_fdatasync;
    cf_cur = r;
    r->on = 1;
}

static void cf_stop(struct cf_rec *r)
{
    if (!r->on)
        return;
    r->on = 0;
    os_calls = r->saved;
    cf_cur = NULL;
}

static void cf_free(struct cf_rec *r)
{
    cf_stop(r);
    for (size_t i = 0; i < r->n; i++)
        free(r->ops[i].data);
    for (int f = 0; f < r->nfiles; f++)
        free(r->files[f].base);
    free(r->ops);
    r->ops = NULL;
    r->n = r->cap = 0;
}

static void cf_mark(struct cf_rec *r, int mark, long arg)
{
    struct cf_op *o = cf_push(r, CF_MARK, -1);
    o->mark = mark;
    o->arg = arg;
}

/* Whether op i makes something durable: the cuts worth exploring are just
 * before these (and at the end): any state a cut in between may leave is a
 * state the next one may leave too. */
static int cf_is_sync(const struct cf_rec *r, size_t i)
{
    return r->ops[i].kind == CF_SYNC || r->ops[i].kind == CF_DIRSYNC;
}

/* ---- file contents ---- */

/* A file's bytes: p[0, ext) are meaningful, zeros follow up to size. */
struct cf_buf {
    unsigned char *p;
    size_t cap;
    uint64_t ext, size;
    size_t *pend;          /* the ops since its last sync (walk) */
    size_t npend, cappend;
};

static void cf_reserve(struct cf_buf *b, uint64_t len)
{
    if (len > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < len)
            cap *= 2;
        cr_assert_not_null(b->p = realloc(b->p, cap));
        b->cap = cap;
    }
}

static void cf_buf_write(struct cf_buf *b, uint64_t off, const unsigned char *p, uint64_t len)
{
    cf_reserve(b, off + len);
    if (off > b->ext)
        memset(b->p + b->ext, 0, off - b->ext);
    memcpy(b->p + off, p, len);
    if (off + len > b->ext)
        b->ext = off + len;
}

static void cf_buf_size(struct cf_buf *b, uint64_t size)
{
    if (size < b->ext)
        b->ext = size; /* cut: what lay past it reads as zeros if the file grows again */
    b->size = size;
}

static void cf_buf_copy(struct cf_buf *dst, const struct cf_buf *src)
{
    cf_reserve(dst, src->ext);
    memcpy(dst->p, src->p, src->ext);
    dst->ext = src->ext;
    dst->size = src->size;
}

static void cf_buf_free(struct cf_buf *b)
{
    free(b->p);
    free(b->pend);
    memset(b, 0, sizeof *b);
}

/* ---- the walk ---- */

struct cf_walk {
    const struct cf_rec *r;
    size_t cut;                      /* ops [0, cut) have happened */
    struct cf_buf f[CF_FILES];       /* durable bytes, and pending ops */
    struct cf_entry dir[CF_FILES];   /* durable entries */
    int ndir;
    size_t *dpend, ndpend;           /* pending entry changes */
    struct cf_entry ient[CF_FILES];  /* the last image built: its entries, */
    struct cf_buf img[CF_FILES];     /* and their bytes */
    int nimg;
};

static void cf_walk_init(struct cf_walk *w, const struct cf_rec *r)
{
    memset(w, 0, sizeof *w);
    w->r = r;
    for (int f = 0; f < r->nfiles; f++)
        if (r->files[f].base_len)
            cf_buf_write(&w->f[f], 0, r->files[f].base, r->files[f].base_len);
    for (int f = 0; f < r->nfiles; f++)
        w->f[f].size = r->files[f].base_len;
    memcpy(w->dir, r->base_dir, sizeof r->base_dir);
    w->ndir = r->nbase;
    cr_assert_not_null(w->dpend = malloc((r->n + 1) * sizeof *w->dpend));
}

static void cf_walk_free(struct cf_walk *w)
{
    for (int f = 0; f < CF_FILES; f++) {
        cf_buf_free(&w->f[f]);
        cf_buf_free(&w->img[f]);
    }
    free(w->dpend);
}

static void cf_pend(struct cf_buf *b, size_t i)
{
    if (b->npend == b->cappend) {
        b->cappend = b->cappend ? 2 * b->cappend : 256;
        cr_assert_not_null(b->pend = realloc(b->pend, b->cappend * sizeof *b->pend));
    }
    b->pend[b->npend++] = i;
}

static void cf_apply(struct cf_buf *b, const struct cf_op *o)
{
    if (o->kind == CF_WRITE)
        cf_buf_write(b, o->off, o->data, o->len);
    else
        cf_buf_size(b, o->len);
}

static void cf_dir_apply(struct cf_entry *dir, int *n, const struct cf_op *o)
{
    int i;
    for (i = 0; i < *n && strcmp(dir[i].name, o->name); i++)
        ;
    if (o->kind == CF_UNLINK) {
        if (i < *n)
            dir[i] = dir[--*n];
        return;
    }
    if (i == *n) {
        cr_assert_lt(*n, CF_FILES);
        snprintf(dir[(*n)++].name, CF_NAME, "%s", o->name);
    }
    dir[i].file = o->file;
}

/* Moves the cut past the next op. */
static void cf_walk_step(struct cf_walk *w)
{
    const struct cf_op *o = &w->r->ops[w->cut++];
    struct cf_buf *b = o->file >= 0 ? &w->f[o->file] : NULL;
    switch (o->kind) {
    case CF_WRITE:
    case CF_SIZE:
        cf_pend(b, w->cut - 1);
        break;
    case CF_SYNC:
        for (size_t i = 0; i < b->npend; i++)
            cf_apply(b, &w->r->ops[b->pend[i]]);
        b->npend = 0;
        break;
    case CF_LINK:
    case CF_UNLINK:
        w->dpend[w->ndpend++] = w->cut - 1;
        break;
    case CF_DIRSYNC:
        for (size_t i = 0; i < w->ndpend; i++)
            cf_dir_apply(w->dir, &w->ndir, &w->r->ops[w->dpend[i]]);
        w->ndpend = 0;
        break;
    }
}

/* ---- crash images ---- */

enum { CF_NONE, CF_ALL, CF_PREFIX, CF_PAGES, CF_TORN, CF_RANDOM };
static const char *const cf_policy_name[] = {"none", "all", "prefix", "pages", "torn pages", "random"};

struct cf_policy {
    int kind;
    uint64_t seed;
    size_t n, t; /* pending ops; PREFIX: the moment */
};

static struct cf_policy cf_policy(uint64_t seed, uint64_t salt, size_t n, int dir)
{
    struct cf_policy p = {CF_NONE, cf_mix(seed, salt), n, 0};
    if (seed == 1)
        p.kind = CF_ALL;
    else if (seed > 1)
        p.kind = (int)(cf_mix(p.seed, 1) % 5);
    if (dir && p.kind >= CF_PAGES) /* entries have no pages */
        p.kind = p.kind == CF_PAGES ? CF_PREFIX : CF_RANDOM;
    p.t = (size_t)(cf_mix(p.seed, 2) % (n + 1));
    return p;
}

/* Whether sector s of the file holds the bytes of the j-th pending op. */
static int cf_sector_taken(const struct cf_policy *p, size_t j, uint64_t s)
{
    uint64_t page = s / (CF_PAGE / CF_SECTOR), t;
    switch (p->kind) {
    case CF_NONE:
        return 0;
    case CF_ALL:
        return 1;
    case CF_PREFIX:
        return j < p->t || (j == p->t && (cf_mix(p->seed ^ 3, s) & 1));
    default:
        t = cf_mix(p->seed ^ 4, page) % (p->n + 1);
        if (p->kind == CF_TORN && cf_mix(p->seed ^ 5, page) % 4 == 0)
            t = cf_mix(p->seed ^ 6, s) % (t + 1);
        return j < t;
    }
}

/* Whether the j-th pending op, a size change or an entry change, happened. */
static int cf_change_taken(const struct cf_policy *p, size_t j)
{
    switch (p->kind) {
    case CF_NONE:
        return 0;
    case CF_ALL:
        return 1;
    case CF_RANDOM:
        return cf_mix(p->seed ^ 7, j) & 1;
    case CF_PREFIX:
        return j < p->t;
    default:
        return j < cf_mix(p->seed ^ 8, 0) % (p->n + 1);
    }
}

static void cf_build(const struct cf_walk *w, int f, const struct cf_policy *p, struct cf_buf *out)
{
    const struct cf_buf *d = &w->f[f];
    cf_buf_copy(out, d);
    for (size_t j = 0; j < d->npend; j++) {
        const struct cf_op *o = &w->r->ops[d->pend[j]];
        uint64_t a = o->off, end = o->off + o->len;
        if (o->kind == CF_SIZE || p->kind == CF_NONE || p->kind == CF_ALL) {
            if (o->kind == CF_SIZE ? cf_change_taken(p, j) : p->kind == CF_ALL)
                cf_apply(out, o);
            continue;
        }
        while (a < end) { /* sector by sector */
            uint64_t b = (a / CF_SECTOR + 1) * CF_SECTOR;
            if (b > end)
                b = end;
            if (cf_sector_taken(p, j, a / CF_SECTOR))
                cf_buf_write(out, a, o->data + (a - o->off), b - a);
            a = b;
        }
    }
}

/* Builds the crash image `seed` of the walk's cut, in memory (cf_save
 * writes it), says in desc what it took, and returns a hash of it: its
 * names and bytes. */
static uint64_t cf_image(struct cf_walk *w, uint64_t seed, char *desc, size_t len)
{
    struct cf_policy dp = cf_policy(seed, 0xd1, w->ndpend, 1);
    uint64_t h = 0;
    size_t used;
    int n = w->ndir;
    memcpy(w->ient, w->dir, sizeof w->ient);
    for (size_t j = 0; j < w->ndpend; j++)
        if (cf_change_taken(&dp, j))
            cf_dir_apply(w->ient, &n, &w->r->ops[w->dpend[j]]);
    w->nimg = n;
    used = (size_t)snprintf(desc, len, "entries: %s (%zu pending)", cf_policy_name[dp.kind], w->ndpend);
    for (int i = 0; i < n; i++) {
        int f = w->ient[i].file;
        struct cf_policy p = cf_policy(seed, (uint64_t)f + 1, w->f[f].npend, 0);
        struct cf_buf *b = &w->img[i];
        cf_build(w, f, &p, b);
        h = cf_mix(h, hash_bytes(w->ient[i].name, strlen(w->ient[i].name), 1));
        h = cf_mix(h, hash_bytes(b->p, b->ext < b->size ? b->ext : b->size, b->size));
        if (used < len)
            used += (size_t)snprintf(desc + used, len - used, ", %s: %s (%zu pending)", w->ient[i].name,
                                     cf_policy_name[p.kind], w->f[f].npend);
    }
    return h;
}

/* Writes the image cf_image built last into dir, which must be empty. */
static void cf_save(const struct cf_walk *w, const char *dir)
{
    for (int i = 0; i < w->nimg; i++) {
        const struct cf_buf *b = &w->img[i];
        uint64_t have = b->ext < b->size ? b->ext : b->size;
        char path[PATH_MAX + CF_NAME];
        int fd;
        snprintf(path, sizeof path, "%s/%s", dir, w->ient[i].name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        cr_assert_geq(fd, 0, "crashfs: create %s", path);
        cr_assert_eq(pwrite(fd, b->p, have, 0), (ssize_t)have, "crashfs: write %s", path);
        cr_assert_eq(ftruncate(fd, (off_t)b->size), 0);
        close(fd);
    }
}

#endif
