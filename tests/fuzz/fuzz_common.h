/*
 * fuzz_common.h — what the libFuzzer targets and the seed generator share.
 *
 * Every target builds, once per process, a deterministic template store in a
 * per-process temporary directory (on /dev/shm when it is writable, so that
 * the fdatasync calls of tm_open cost nothing):
 *
 *   T0   a 512 KiB store whose store id is the constant FZ_ID (so the heap's
 *        key, derived from it, and every log record are the same in every
 *        run and the committed seeds stay valid), holding a root object and a
 *        mix of small and large blocks, some freed.  Closed: checkpointed,
 *        no log record pending.
 *   L    the records of FZ_COMMITS further commits on a copy of T0, copied
 *        while the store was still open (before the closing checkpoint), so
 *        they replay onto T0.
 *
 * Each iteration writes its files into the directory, calls tm_open (which
 * maps at the fixed base and installs the SIGSEGV handler), does its checks
 * and always calls tm_close, so the next iteration can map the base again.
 * The base is TMF_ADDR when set (hex), else the library default.
 */
#ifndef TMF_FUZZ_COMMON_H
#define TMF_FUZZ_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "tmfalloc.h"

#define FZ_ID 0x66757a7a73746f72ull /* "fuzzstor" */
#define FZ_INITIAL ((size_t)512 << 10)
#define FZ_COMMITS 4

/* Offset in the store file where the heap target's input is laid: the heap
 * state in the superblock, then the heap pages. */
#define FZ_HEAP_OFF ((size_t)PAGE + offsetof(struct tm_super, heap))

static char fz_dir_buf[256];

static int fz_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void fz_cleanup(void)
{
    if (fz_dir_buf[0])
        nftw(fz_dir_buf, fz_rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static void fz_die(const char *what, int code)
{
    fprintf(stderr, "fuzz setup: %s: %s\n", what, tm_strerror(code));
    abort();
}

static const char *fz_dir(void)
{
    if (!fz_dir_buf[0]) {
        const char *t = getenv("TMPDIR");
        if (access("/dev/shm", W_OK) == 0)
            t = "/dev/shm";
        snprintf(fz_dir_buf, sizeof fz_dir_buf, "%s/tmffuzz.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(fz_dir_buf))
            fz_die("mkdtemp", errno);
        atexit(fz_cleanup);
    }
    return fz_dir_buf;
}

static const char *fz_path(const char *name)
{
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ & 3];
    snprintf(b, sizeof bufs[0], "%s/%s", fz_dir(), name);
    return b;
}

static tm_options fz_opts(void)
{
    tm_options o;
    const char *a = getenv("TMF_ADDR");
    tm_options_init(&o);
    if (a && *a)
        o.base = (uintptr_t)strtoull(a, NULL, 16);
    o.max_size = (size_t)64 << 20;
    o.initial_size = FZ_INITIAL;
    o.sync = TM_SYNC_NONE;
    return o;
}

static void fz_write(const char *path, const void *a, size_t alen, const void *b, size_t blen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (alen && write(fd, a, alen) != (ssize_t)alen) ||
        (blen && write(fd, b, blen) != (ssize_t)blen))
        fz_die(path, errno);
    close(fd);
}

static uint8_t *fz_read(const char *path, size_t *len)
{
    struct stat sb;
    uint8_t *p;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) < 0)
        fz_die(path, errno);
    p = malloc((size_t)sb.st_size + 1);
    if (!p || read(fd, p, (size_t)sb.st_size) != (ssize_t)sb.st_size)
        fz_die(path, errno);
    close(fd);
    *len = (size_t)sb.st_size;
    return p;
}

/* Recomputes the checksum of each header slot that carries the magic. */
static void fz_fix_header(uint8_t *page0, size_t len)
{
    int i;
    for (i = 0; i < 2; i++) {
        struct hdr_slot s;
        if ((i + 1) * HDR_SLOT_SIZE > len)
            break;
        memcpy(&s, page0 + i * HDR_SLOT_SIZE, sizeof s);
        if (memcmp(s.magic, HDR_MAGIC, 8) != 0)
            continue;
        s.checksum = hdr_checksum(&s);
        memcpy(page0 + i * HDR_SLOT_SIZE, &s, sizeof s);
    }
}

__attribute__((unused)) static void fz_fix_super(uint8_t *file, size_t len)
{
    struct tm_super sb;
    if (len < 2 * PAGE)
        return;
    memcpy(&sb, file + PAGE, sizeof sb);
    sb.checksum = super_checksum(&sb);
    memcpy(file + PAGE, &sb, sizeof sb);
}

/* Gives the closed store at path the store id FZ_ID (before its heap exists,
 * since the heap's key derives from it) and removes its log. */
static void fz_rekey(const char *path)
{
    char log[600];
    size_t len;
    uint8_t *f = fz_read(path, &len);
    int i;
    for (i = 0; i < 2; i++) {
        struct hdr_slot s;
        memcpy(&s, f + i * HDR_SLOT_SIZE, sizeof s);
        s.store_id = FZ_ID;
        memcpy(f + i * HDR_SLOT_SIZE, &s, sizeof s);
    }
    fz_fix_header(f, len);
    fz_write(path, f, len, NULL, 0);
    free(f);
    snprintf(log, sizeof log, "%s.log", path);
    unlink(log);
}

static tm_store *fz_open_or_die(const char *path)
{
    tm_options o = fz_opts();
    tm_store *st;
    int r = tm_open(path, &o, &st);
    if (r)
        fz_die(path, r);
    return st;
}

/* Allocations whose sizes and frees depend only on round. */
static void fz_work(tm_store *st, int round)
{
    static const size_t sizes[] = {24, 40, 24, 3000, 40, 5000, 24, 9000};
    static void *keep[32];
    uint64_t s = 0x1234 + (uint64_t)round;
    int i, r, n_ops = round < 2 ? 32 : 6;
    uint64_t *root;
    if ((r = tm_store_begin(st)))
        fz_die("begin", r);
    root = tm_store_root(st, 256);
    if (!root)
        fz_die("root", errno);
    root[0] += 1;
    for (i = 0; i < n_ops; i++) {
        size_t n;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        n = sizes[(s >> 33) % 8];
        int k = (i * 7 + round * 3) % 32;
        if (keep[k] && (s >> 20) % 3 == 0) {
            tm_store_free(st, keep[k]);
            keep[k] = NULL;
        } else if (!keep[k]) {
            keep[k] = tm_store_malloc(st, n);
            if (!keep[k])
                fz_die("malloc", errno);
            memset(keep[k], k + round, n < 64 ? n : 64);
        }
    }
    root[1] = (uint64_t)(uintptr_t)keep[0];
    if ((r = tm_store_commit(st)))
        fz_die("commit", r);
}

struct fz_template {
    uint8_t *store; /* T0 */
    size_t store_len;
    uint8_t *log;   /* L: the whole log file, header page included */
    size_t log_len;
};

static void fz_copy(const char *from, const char *to)
{
    size_t len;
    uint8_t *f = fz_read(from, &len);
    fz_write(to, f, len, NULL, 0);
    free(f);
}

static const struct fz_template *fz_template(void)
{
    static struct fz_template t;
    tm_store *st;
    int i;
    if (t.store)
        return &t;
    unlink(fz_path("t0.tmf"));
    unlink(fz_path("t0.tmf.log"));
    st = fz_open_or_die(fz_path("t0.tmf"));
    tm_close(st);
    fz_rekey(fz_path("t0.tmf"));
    st = fz_open_or_die(fz_path("t0.tmf"));
    fz_work(st, 0);
    fz_work(st, 1);
    tm_close(st);
    unlink(fz_path("t0.tmf.log"));
    t.store = fz_read(fz_path("t0.tmf"), &t.store_len);

    /* L: records on a copy of T0, taken while it is open. */
    fz_copy(fz_path("t0.tmf"), fz_path("t1.tmf"));
    st = fz_open_or_die(fz_path("t1.tmf"));
    for (i = 0; i < FZ_COMMITS; i++)
        fz_work(st, 2 + i);
    t.log = fz_read(fz_path("t1.tmf.log"), &t.log_len);
    tm_close(st);
    unlink(fz_path("t1.tmf"));
    unlink(fz_path("t1.tmf.log"));
    /* The log is padded with zeros (log.c L5): keep the records only. */
    {
        size_t off = LOG_START;
        while (off + sizeof(struct log_rec) <= t.log_len) {
            struct log_rec rec;
            memcpy(&rec, t.log + off, sizeof rec);
            if (rec.magic != (uint32_t)LOG_MAGIC || rec.len > t.log_len - off)
                break;
            off += rec.len;
        }
        if (off == LOG_START)
            fz_die("no log records", 0);
        t.log_len = off;
    }
    return &t;
}

/* Recomputes the checksum of every record of a log body (the bytes from
 * LOG_START on) whose header and length fit, as log_append does. */
__attribute__((unused)) static void fz_fix_records(uint8_t *body, size_t len)
{
    size_t off = 0;
    while (off + sizeof(struct log_rec) <= len) {
        struct log_rec rec;
        hash_state h;
        memcpy(&rec, body + off, sizeof rec);
        if (rec.len < sizeof rec || rec.len > len - off)
            break;
        rec.checksum = 0;
        hash_init(&h, FZ_ID);
        hash_update(&h, &rec, sizeof rec);
        hash_update(&h, body + off + sizeof rec, (size_t)rec.len - sizeof rec);
        rec.checksum = hash_final(&h);
        memcpy(body + off, &rec, sizeof rec);
        off += (size_t)rec.len;
    }
}

/* What the inputs did, printed at exit ("bad inputs tried"). */
static unsigned long fz_n[4]; /* inputs, refused by tm_open, checked clean, found corrupt */

static void fz_report(void)
{
    fprintf(stderr,
            "tmf-fuzz: %lu inputs: %lu refused by tm_open with an error code, %lu opened and "
            "checked clean, %lu opened and reported corrupt by tm_store_check\n",
            fz_n[0], fz_n[1], fz_n[2], fz_n[3]);
}

__attribute__((unused)) static void fz_count(int open_rc, int check_rc)
{
    if (!fz_n[0]++)
        atexit(fz_report);
    fz_n[open_rc ? 1 : check_rc ? 3 : 2]++;
}

/* libFuzzer calls this once, before the first input: the template is built
 * outside the timed iterations. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fz_template();
    return 0;
}

#endif
