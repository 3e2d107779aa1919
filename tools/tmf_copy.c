/*
 * tmf_copy.c — the subcommands that write: copy (a consistent copy while
 * writers run, whatever state the store is in) and recover (a read-write
 * open that replays the log).
 *
 * copy: inside a read transaction of a read-only handle no commit is being
 * applied, so the store file's first "committed size" bytes are exactly a
 * committed state.  When the read transaction is refused because recovery
 * is pending (EROFS: durable commits in the log may not all be in the store
 * file), the whole store file is read instead and the log's valid records
 * since the checkpoint are replayed over the copy by the library's own
 * replay (inspect_replay_into), which also says whether a checkpoint came
 * in between (then the copy starts again).  Either way the bytes go to
 * DEST.tmp with a new header: both slots say "checkpointed at this commit",
 * one generation later than the source's, so no record of the source's log
 * can be taken for one of the copy's, whose log is a fresh, empty one for
 * the same store id.  Log, then store, are synced and renamed into place,
 * then the directory is synced.  The source is never written.
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

/* [off, end) of the store, COPY_CHUNK at a time. */
static int copy_range(int fd, int out, uint8_t *buf, uint64_t off, uint64_t end)
{
    int r = 0;
    while (r == 0 && off < end) {
        size_t n = end - off < COPY_CHUNK ? (size_t)(end - off) : COPY_CHUNK;
        if ((r = os_pread_all(fd, buf, n, (off_t)off)) == 0)
            r = os_pwrite_all(out, buf, n, (off_t)off);
        off += n;
        tmf_progress_set(off);
    }
    return r == -ENODATA ? -EIO : r;
}

/* The extents of data in [0, size) of the store file, holes skipped (they
 * read as zeros, and stay holes in the copy).  Without SEEK_DATA the whole
 * range is data.  Seeking moves the handle's descriptor's offset, which
 * nothing else uses: the library reads and writes at explicit offsets. */
static int copy_data(int fd, int out, uint8_t *buf, uint64_t size)
{
    uint64_t off = 0;
    int r = 0;
    while (r == 0 && off < size) {
        off_t data = lseek(fd, (off_t)off, SEEK_DATA), hole;
        if (data < 0 && errno != ENXIO) /* ENXIO: only a hole is left */
            data = (off_t)off;
        if (data < 0 || (uint64_t)data >= size)
            break;
        hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0 || (uint64_t)hole > size)
            hole = (off_t)size;
        r = copy_range(fd, out, buf, (uint64_t)data, (uint64_t)hole);
        off = (uint64_t)hole;
    }
    return r == 0 && ftruncate(out, (off_t)size) < 0 ? -errno : r;
}

/* What a copy holds: the commit, and whether recovery was pending in the
 * source (its log's records were replayed into the copy). */
struct copied {
    struct tm_committed c;
    int pending;
    struct log_scan log;
};

/* Recovery pending: the whole store file, then the log's records since the
 * checkpoint replayed over it; c gets the commit they end at. */
static int copy_and_replay(tm_store *st, const struct tm_view *v, int out, uint8_t *buf, struct copied *k)
{
    struct stat sb;
    int r;
    if (fstat(v->fd, &sb) < 0)
        return -errno;
    tmf_progress_start("copying", (uint64_t)sb.st_size);
    r = copy_data(v->fd, out, buf, (uint64_t)sb.st_size);
    tmf_progress_end();
    if (r < 0)
        return r;
    tmf_progress_start("replaying the log", k->log.bytes);
    tm__progress = tmf_progress_add;
    r = inspect_replay_into(st, out, &k->c.seq, &k->c.size);
    tm__progress = NULL;
    tmf_progress_end();
    return r;
}

/* The store's committed bytes, then a header checkpointed at their commit. */
static int copy_bytes(tm_store *st, const struct tm_view *v, int out, struct copied *k)
{
    uint8_t *buf = malloc(COPY_CHUNK);
    int r = buf ? 0 : -ENOMEM;
    if (r == 0 && k->pending) {
        r = copy_and_replay(st, v, out, buf, k);
    } else if (r == 0) {
        tmf_progress_start("copying", k->c.size);
        if ((r = copy_data(v->fd, out, buf, k->c.size)) == 0)
            tmf_progress_set(k->c.size);
        tmf_progress_end();
    }
    if (r == 0) {
        struct hdr_slot h = v->hdr;
        memset(buf, 0, PAGE);
        h.gen += 1;
        h.ckpt_seq = k->c.seq;
        h.ckpt_size = k->c.size;
        h.checksum = hdr_checksum(&h);
        memcpy(buf, &h, sizeof h);
        memcpy(buf + HDR_SLOT_SIZE, &h, sizeof h);
        r = os_pwrite_all(out, buf, PAGE, 0);
    }
    free(buf);
    return r == -ENODATA ? -EIO : r;
}

/* A fresh log for store id: the header page only. */
static int write_log(const char *path, uint64_t id)
{
    uint8_t page[PAGE];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), r;
    if (fd < 0)
        return -errno;
    log_head_init(page, id);
    r = os_pwrite_all(fd, page, PAGE, 0);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    close(fd);
    return r;
}

/* DEST.tmp and DEST.log.tmp written and synced (inside the read
 * transaction, unless recovery is pending). */
static int copy_files(tm_store *st, const char *tmp, const char *logtmp, struct copied *k)
{
    struct tm_view v;
    int out, r;
    inspect_view(st, &v);
    inspect_state(st, &k->c);
    if ((out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
        return -errno;
    r = copy_bytes(st, &v, out, k);
    if (r == 0 && fsync(out) < 0)
        r = -errno;
    close(out);
    return r == 0 ? write_log(logtmp, v.hdr.store_id) : r;
}

/* EXIT_CLEAN, EXIT_DAMAGED (reported), or -EAGAIN: a checkpoint came in
 * while a store that needed recovery was copied; nothing is left behind. */
static int copy_into(tm_store *st, const char *dest, const char *src, struct copied *k)
{
    char tmp[PATH_MAX], logtmp[PATH_MAX], log[PATH_MAX];
    int r;
    snprintf(tmp, sizeof tmp, "%s.tmp", dest);
    snprintf(log, sizeof log, "%s.log", dest);
    snprintf(logtmp, sizeof logtmp, "%s.log.tmp", dest);
    memset(k, 0, sizeof *k);
    if ((r = tmf_read_begin(st, &k->log)) != 0 && r != EROFS) {
        tmf_err(src, "%s", tm_strerror(r));
        return EXIT_DAMAGED;
    }
    k->pending = r == EROFS;
    r = copy_files(st, tmp, logtmp, k);
    if (!k->pending)
        tm_store_read_end(st);
    if (r == 0 && (rename(logtmp, log) < 0 || rename(tmp, dest) < 0))
        r = -errno;
    if (r == 0)
        r = os_fsync_dir(dest);
    if (r < 0) {
        unlink(tmp), unlink(logtmp);
        if (r == -EAGAIN)
            return r;
        tmf_err(r <= -TM_EFIRST ? src : dest, "%s", tm_strerror(-r)); /* our codes speak of the source */
        return EXIT_DAMAGED;
    }
    return EXIT_CLEAN;
}

#define COPY_ATTEMPTS 3

int tmf_copy(const struct tmf_args *a)
{
    char log[PATH_MAX];
    struct copied k;
    struct stat sb;
    tm_store *st;
    int ex, i;
    snprintf(log, sizeof log, "%s.log", a->dest);
    if (stat(a->dest, &sb) == 0 && S_ISDIR(sb.st_mode)) { /* before anything is renamed into place */
        tmf_err(a->dest, "is a directory; name the copy's file");
        return EXIT_DAMAGED;
    }
    if (!a->force && (exists(a->dest) || exists(log))) { /* a log alone may hold a lost store's commits */
        tmf_err(exists(a->dest) ? a->dest : log, "exists; use --force to overwrite it");
        return EXIT_DAMAGED;
    }
    for (i = 0, ex = -EAGAIN; ex == -EAGAIN && i < COPY_ATTEMPTS; i++) {
        if ((ex = tmf_open_ro(a->file, &st, NULL, 0)) != EXIT_CLEAN)
            return ex == TMF_UNFINISHED ? EXIT_DAMAGED : ex; /* no log, no commit: nothing to copy yet */
        ex = copy_into(st, a->dest, a->file, &k);
        tm_close(st);
    }
    if (ex == -EAGAIN) {
        tmf_err(a->file, "checkpointed by a writer during each of %d attempts to copy it; try again",
                COPY_ATTEMPTS);
        return EXIT_DAMAGED;
    }
    if (ex == EXIT_CLEAN && k.pending)
        printf("copied %s to %s at commit seq %llu: recovery is pending in %s, so its log's durable "
               "commits were replayed into the copy\n",
               a->file, a->dest, (unsigned long long)k.c.seq, a->file);
    else if (ex == EXIT_CLEAN)
        printf("copied %s to %s at commit seq %llu\n", a->file, a->dest, (unsigned long long)k.c.seq);
    return ex;
}

/* ---- recover ---- */

struct before {
    struct hdr_slot hdr;
    struct log_scan log;
    uint64_t seq, unapplied; /* the last durable commit; how many of them are not in the store file */
    int live;                /* another process has the store open */
    char why[256];
};

/* The state before or after recovery: a read-only handle's view, closed
 * again so that the read-write open after it is the first. */
static int look(const char *path, struct before *b)
{
    struct tm_committed c;
    struct tm_view v;
    tm_store *st;
    uint8_t page[PAGE];
    int fd = open(path, O_RDONLY | O_CLOEXEC), r;
    memset(b, 0, sizeof *b);
    if (fd < 0)
        return -1;
    b->live = os_pread_all(fd, page, PAGE, 0) == 0 && inspect_live(fd) > 0;
    close(fd);
    if (tmf_open_ro(path, &st, b->why, sizeof b->why) != EXIT_CLEAN)
        return -1;
    inspect_view(st, &v);
    inspect_state(st, &c);
    b->hdr = v.hdr;
    b->seq = c.seq;
    b->unapplied = c.seq - c.applied;
    r = tmf_scan_log(v.log_fd, &v.hdr, c.applied, v.max, &b->log);
    tm_close(st);
    return r;
}

static void report(const char *path, const struct before *b, const struct before *after)
{
    if (b->live) {
        printf("%s: live: other processes have it open; recovery belongs to the first opener.\n"
               "%s: %s; commit seq %llu -> %llu\n", path, path,
               b->unapplied ? "healed the durable commit(s) a dead writer left unapplied"
                            : "nothing to heal, left as is",
               (unsigned long long)b->seq, (unsigned long long)after->seq);
        return;
    }
    printf("%s: replayed %llu log record(s) (%llu not yet applied before); commit seq %llu\n", path,
           (unsigned long long)b->log.records, (unsigned long long)b->unapplied, (unsigned long long)after->seq);    printf("%s: %s at commit seq %llu\n", path,
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
    tmf_progress_start("replaying the log", b.live ? b.log.pending_bytes : b.log.bytes);
    tm__progress = tmf_progress_add;
    if ((r = tm_open(a->file, &o, &st)) != 0) {
        int ex = tmf_diagnose(a->file, r, msg, sizeof msg);
        ex = ex == TMF_UNFINISHED ? EXIT_DAMAGED : ex;
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
