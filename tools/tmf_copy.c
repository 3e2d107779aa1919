/*
 * tmf_copy.c — the subcommands that write: copy (a consistent copy while
 * writers run) and recover (a read-write open that replays the log).
 *
 * copy: inside a read transaction of a read-only handle no commit is being
 * applied, so the store file's first "superblock size" bytes are exactly a
 * committed state.  They go to DEST.tmp with a new header: both slots say
 * "checkpointed at this commit", one generation later than the source's,
 * so no superblock's log position refers to the copy's log, which is a
 * fresh, empty one for the same store id.  Log, then store, are synced and
 * renamed into place, then the directory is synced.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tmf.h"

#define COPY_CHUNK (1u << 20)

static int exists(const char *p)
{
    struct stat sb;
    return lstat(p, &sb) == 0;
}

static int write_all(int fd, const void *buf, size_t n, off_t off)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        p += w, n -= (size_t)w, off += w;
    }
    return 0;
}

/* [off, end) of the store, COPY_CHUNK at a time. */
static int copy_range(tm_store *st, int out, uint8_t *buf, uint64_t off, uint64_t end)
{
    int r = 0;
    while (r == 0 && off < end) {
        size_t n = end - off < COPY_CHUNK ? (size_t)(end - off) : COPY_CHUNK;
        ssize_t got = pread(st->fd, buf, n, (off_t)off);
        r = got == (ssize_t)n ? write_all(out, buf, n, (off_t)off) : got < 0 ? -errno : -EIO;
        off += n;
        tmf_progress_set(off);
    }
    return r;
}

/* The extents of data in [0, size) of the store file, holes skipped (they
 * read as zeros, and stay holes in the copy).  Without SEEK_DATA the whole
 * range is data.  Seeking moves st->fd's offset, which nothing else uses:
 * the library reads and writes at explicit offsets. */
static int copy_data(tm_store *st, int out, uint8_t *buf, uint64_t size)
{
    uint64_t off = 0;
    int r = 0;
    while (r == 0 && off < size) {
        off_t data = lseek(st->fd, (off_t)off, SEEK_DATA), hole;
        if (data < 0 && errno != ENXIO) /* ENXIO: only a hole is left */
            data = (off_t)off;
        if (data < 0 || (uint64_t)data >= size)
            break;
        hole = lseek(st->fd, data, SEEK_HOLE);
        if (hole < 0 || (uint64_t)hole > size)
            hole = (off_t)size;
        r = copy_range(st, out, buf, (uint64_t)data, (uint64_t)hole);
        off = (uint64_t)hole;
    }
    return r == 0 && ftruncate(out, (off_t)size) < 0 ? -errno : r;
}

/* The store's committed bytes, then a header checkpointed at sb. */
static int copy_bytes(tm_store *st, int out, const struct tm_super *sb)
{
    uint8_t *buf = malloc(COPY_CHUNK);
    int r = buf ? 0 : -ENOMEM;
    tmf_progress_start("copying", sb->size);
    if (r == 0 && (r = copy_data(st, out, buf, sb->size)) == 0)
        tmf_progress_set(sb->size);
    tmf_progress_end();
    if (r == 0) {
        struct hdr_slot h = st->hdr;
        memset(buf, 0, PAGE);
        h.gen += 1;
        h.ckpt_seq = sb->seq;
        h.ckpt_size = sb->size;
        h.checksum = hdr_checksum(&h);
        memcpy(buf, &h, sizeof h);
        memcpy(buf + HDR_SLOT_SIZE, &h, sizeof h);
        r = write_all(out, buf, PAGE, 0);
    }
    free(buf);
    return r;
}

/* A fresh log for store id: the header page only. */
static int write_log(const char *path, uint64_t id)
{
    uint8_t page[PAGE];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), r;
    if (fd < 0)
        return -errno;
    memset(page, 0, sizeof page);
    memcpy(page, LOG_HDR_MAGIC, 8);
    memcpy(page + 8, &id, 8);
    r = write_all(fd, page, PAGE, 0);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    close(fd);
    return r;
}

static int sync_dir(const char *path)
{
    char *d = strdup(path);
    int fd, r = 0;
    if (!d)
        return -ENOMEM;
    fd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(d);
    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        r = -errno;
    close(fd);
    return r;
}

/* Inside the read transaction: DEST.tmp and DEST.log.tmp written and synced. */
static int copy_locked(tm_store *st, const char *tmp, const char *logtmp)
{
    struct tm_super sb;
    int out, r;
    memcpy(&sb, super_of(st), sizeof sb);
    if ((out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
        return -errno;
    r = copy_bytes(st, out, &sb);
    if (r == 0 && fsync(out) < 0)
        r = -errno;
    close(out);
    return r == 0 ? write_log(logtmp, st->hdr.store_id) : r;
}

static int copy_into(tm_store *st, const char *dest, const char *src)
{
    char tmp[PATH_MAX], logtmp[PATH_MAX], log[PATH_MAX];
    struct log_scan scan;
    int r, own;
    snprintf(tmp, sizeof tmp, "%s.tmp", dest);
    snprintf(log, sizeof log, "%s.log", dest);
    snprintf(logtmp, sizeof logtmp, "%s.log.tmp", dest);
    if ((r = tmf_read_begin(st, &scan, &own)) != 0) {
        tmf_err(src, "%s", r == EROFS ? "recovery pending: run 'tmf recover' first"
                                      : tm_strerror(r));
        return EXIT_DAMAGED;
    }
    r = copy_locked(st, tmp, logtmp);
    tmf_read_end(st, own);
    if (r == 0 && (rename(logtmp, log) < 0 || rename(tmp, dest) < 0))
        r = -errno;
    if (r == 0)
        r = sync_dir(dest);
    if (r < 0) {
        unlink(tmp), unlink(logtmp);
        tmf_err(dest, "%s", strerror(-r));
        return EXIT_DAMAGED;
    }
    return EXIT_CLEAN;
}

int tmf_copy(const struct tmf_args *a)
{
    char log[PATH_MAX];
    struct stat sb;
    tm_store *st;
    int ex;
    snprintf(log, sizeof log, "%s.log", a->dest);
    if (stat(a->dest, &sb) == 0 && S_ISDIR(sb.st_mode)) { /* before anything is renamed into place */
        tmf_err(a->dest, "is a directory; name the copy's file");
        return EXIT_DAMAGED;
    }
    if (!a->force && (exists(a->dest) || exists(log))) { /* a log alone may hold a lost store's commits */
        tmf_err(exists(a->dest) ? a->dest : log, "exists; use --force to overwrite it");
        return EXIT_DAMAGED;
    }
    if ((ex = tmf_open_ro(a->file, &st, NULL, 0)) != EXIT_CLEAN)
        return ex;
    ex = copy_into(st, a->dest, a->file);
    tm_close(st);
    if (ex == EXIT_CLEAN)
        printf("copied %s to %s\n", a->file, a->dest);
    return ex;
}

/* ---- recover ---- */

struct before {
    struct tm_super sb;
    struct hdr_slot hdr;
    struct log_scan log;
    int live; /* another process has the store open */
};

/* Reads the state without a handle (no locks are held yet). */
static int look(const char *path, struct before *b)
{
    char lp[PATH_MAX];
    uint8_t page[2 * PAGE];
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = LOCK_OPEN, .l_len = 1};
    int fd = open(path, O_RDONLY | O_CLOEXEC), lfd, i, r = -1;
    memset(b, 0, sizeof *b);
    if (fd < 0)
        return -1;
    if (pread(fd, page, sizeof page, 0) == (ssize_t)sizeof page) {
        b->live = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
        memcpy(&b->sb, page + PAGE, sizeof b->sb);
        for (i = 0; i < 2; i++) {
            const struct hdr_slot *s = (const void *)(page + i * HDR_SLOT_SIZE);
            if (hdr_checksum(s) == s->checksum && (r < 0 || s->gen > b->hdr.gen))
                b->hdr = *s, r = 0;
        }
    }
    close(fd);
    snprintf(lp, sizeof lp, "%s.log", path);
    if (r == 0 && (lfd = open(lp, O_RDONLY | O_CLOEXEC)) >= 0) {
        r = tmf_scan_log(lfd, &b->hdr, &b->sb, b->hdr.max_size, &b->log);
        close(lfd);
    }
    return r;
}

static void report(const char *path, const struct before *b, const struct before *after)
{
    if (b->live) {
        printf("%s: live: other processes have it open; recovery belongs to the first opener.\n"
               "%s: %s; commit seq %llu -> %llu\n", path, path,
               b->log.pending ? "healed the durable commit(s) a dead writer left unapplied"
                              : "nothing to heal, left as is",
               (unsigned long long)b->sb.seq, (unsigned long long)after->sb.seq);
        return;
    }
    printf("%s: replayed %llu log record(s) (%llu not yet applied before); commit seq %llu -> %llu\n",
           path, (unsigned long long)b->log.records, (unsigned long long)b->log.pending,
           (unsigned long long)b->sb.seq, (unsigned long long)after->sb.seq);
    printf("%s: %s at commit seq %llu\n", path,
           after->log.records ? "not checkpointed (another process opened it meanwhile)"
                              : "checkpointed",
           (unsigned long long)after->hdr.ckpt_seq);
}

int tmf_recover(const struct tmf_args *a)
{
    struct before b, after;
    tm_options o;
    tm_store *st;
    char msg[512];
    int r;
    look(a->file, &b);
    tm_options_init(&o);
    o.no_create = 1;
    o.max_size = b.hdr.max_size ? b.hdr.max_size : o.max_size;
    /* The replay is the library's: its hook counts the page images written.
     * The first opener replays every record after the checkpoint; a live
     * store's heal, the pending ones. */
    tmf_progress_start("replaying the log", (b.live ? b.log.pending_pages : b.log.pages) * PAGE);
    tm__progress = tmf_progress_add;
    if ((r = tm_open(a->file, &o, &st)) != 0) {
        int ex = tmf_diagnose(a->file, r, msg, sizeof msg);
        tm__progress = NULL;
        tmf_progress_end();
        tmf_err(a->file, "%s", msg);
        return ex;
    }
    /* An empty write transaction heals a dead writer's unapplied commit. */
    if ((r = tm_store_begin(st)) == 0)
        r = tm_store_commit(st);
    tm__progress = NULL;
    tmf_progress_end();
    tm_close(st); /* the last handle checkpoints */
    if (r != 0) {
        tmf_err(a->file, "cannot heal: %s", tm_strerror(r));
        return EXIT_DAMAGED;
    }
    look(a->file, &after);
    report(a->file, &b, &after);
    return EXIT_CLEAN;
}
