/*
 * log.c — the redo log: create, append, replay (format in format.h).
 *
 * It knows the log file and the store file's descriptor to replay into,
 * nothing of transactions: a commit hands it its pages through a callback.
 *
 * Invariants
 *   L1. A record is valid iff magic, store id, gen, seq and len are what the
 *       reader expects at that offset and the checksum matches.  Replay stops
 *       at the first invalid record: a torn or corrupt tail is discarded and
 *       every earlier record is kept.
 *   L2. Within one generation the log only grows: an offset is written at
 *       most once, so a stale record can never sit where a newer one of the
 *       same generation is expected.  A checkpoint bumps the generation and
 *       restarts the log at LOG_START; the old records then fail L1's gen test.
 *   L3. A commit is durable when its record is (fdatasync of the log with
 *       TMF_SYNC=full).  Pages reach the store file only after that.
 *   L4. Replaying a record writes whole page images: replay is idempotent, so
 *       a crash during replay is repaired by replaying again.
 *   L5. The log is a ring of written zeros (LOG_CHUNK at creation) that
 *       records overwrite, so that a small commit's fdatasync flushes data,
 *       not file-system metadata.  A record that does not fit in what is
 *       left of the ring first checkpoints (the ring restarts at LOG_START);
 *       a ring that fills in fewer than RING_MIN_COMMITS commits doubles,
 *       up to CKPT_BYTES.  Only a record larger than the ring extends the
 *       file by itself.
 *
 * With TMF_SYNC=none a writer appends through a writable shared mapping of
 * the ring (os_write_mapped: a memcpy into the page cache, which pwritev
 * would fill the same) instead of a pwritev per record.  Not with
 * TMF_SYNC=full: its fdatasync would write-protect the mapped page again,
 * and the next record's write would fault, dearer than the pwritev.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "internal.h"

#define IOV_STEP 256 /* vectors per pwritev */
#define WMAP_LEN (LOG_START + CKPT_BYTES) /* the ring never grows past it (L5) */

static const uint8_t zeros[64 << 10];

/* L5: the log grows by written zeros, LOG_CHUNK at a time, up to end. */
static int zero_fill(struct tm_log *lg, uint64_t end)
{
    int r;
    end = (end + LOG_CHUNK - 1) & ~(LOG_CHUNK - 1);
    while (lg->len < end) {
        uint64_t n = end - lg->len < sizeof zeros ? end - lg->len : sizeof zeros;
        if ((r = os_pwrite_small(lg->fd, zeros, n, (off_t)lg->len)) < 0)
            return r;
        lg->len += n;
    }
    return 0;
}

int log_create(struct tm_log *lg)
{
    uint8_t page[PAGE];
    int r;
    log_head_init(page, lg->store_id);
    if ((r = os_pwrite_all(lg->fd, page, PAGE, 0)) < 0)
        return r;
    lg->len = PAGE;
    if ((r = zero_fill(lg, LOG_START + LOG_CHUNK)) < 0) /* the first ring */
        return r;
    return os_fdatasync(lg->fd);
}

int log_open_check(struct tm_log *lg)
{
    uint8_t head[sizeof(struct log_head)];
    struct stat sb;
    int r;
    if ((r = os_fstat(lg->fd, &sb)) < 0)
        return r;
    if (sb.st_size < (off_t)PAGE || os_pread_all(lg->fd, head, sizeof head, 0) < 0)
        return -TM_ECORRUPT;
    if ((r = log_head_check(head, sizeof head, lg->store_id)) < 0)
        return r;
    lg->len = (uint64_t)sb.st_size;
    return 0;
}

void log_close(struct tm_log *lg)
{
    if (lg->map)
        os_munmap((void *)lg->map, lg->map_len);
    if (lg->wmap)
        os_munmap(lg->wmap, WMAP_LEN);
    if (lg->fd >= 0)
        os_close(lg->fd);
    lg->map = NULL;
    lg->wmap = NULL;
    lg->fd = -1;
}

/* The log's length as the file has it now: other processes append too. */
int log_refresh_len(struct tm_log *lg)
{
    struct stat sb;
    int r;
    if ((r = os_fstat(lg->fd, &sb)) < 0)
        return r;
    lg->len = (uint64_t)sb.st_size;
    return 0;
}

/* L5: make room for len bytes at lg->off. */
static int reserve(struct tm_log *lg, uint64_t len)
{
    uint64_t end = lg->off + len;
    int r;
    if (end <= lg->len || len >= LOG_CHUNK)
        return 0; /* a large record extends the file itself */
    if ((r = log_refresh_len(lg)) < 0) /* never write zeros over another's record */
        return r;
    return end <= lg->len ? 0 : zero_fill(lg, end);
}

int log_fits(struct tm_log *lg, uint64_t len)
{
    if (lg->off + len <= lg->len || lg->off == LOG_START)
        return 1;
    if (log_refresh_len(lg) < 0)
        return 1; /* reserve() will meet the error */
    return lg->off + len <= lg->len;
}

int log_grow_ring(struct tm_log *lg)
{
    uint64_t ring = lg->len > LOG_START ? lg->len - LOG_START : LOG_CHUNK / 2;
    if (ring >= CKPT_BYTES)
        return 0;
    return zero_fill(lg, LOG_START + (2 * ring < CKPT_BYTES ? 2 * ring : CKPT_BYTES));
}

void log_restart(struct tm_log *lg)
{
    lg->off = LOG_START;
    /* Only the space goes back: a failed cut leaves a longer ring. */
    if (lg->len > LOG_START + 2 * CKPT_BYTES && os_ftruncate(lg->fd, LOG_START + CKPT_BYTES) == 0)
        lg->len = LOG_START + CKPT_BYTES;
}

/* ---- append ---- */

struct writer {
    int fd;
    struct iovec iov[IOV_STEP];
    int n;
    uint64_t off;
    char *map;           /* the writable mapping, or NULL */
    uint64_t map_end;    /* writes through it end here at most: within the ring's written zeros */
};

/* The writable mapping of the ring (TMF_SYNC=none), made on first use;
 * NULL where mapping fails: then records go by pwritev. */
static char *wmap(struct tm_log *lg)
{
    if (!lg->wmap && lg->sync == TM_SYNC_NONE) {
        void *m = os_mmap(NULL, WMAP_LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, lg->fd, 0);
        lg->wmap = os_map_failed(m) ? NULL : m;
    }
    return lg->wmap;
}

static int flush(struct writer *w)
{
    int r = 0, i;
    uint64_t bytes = 0, off = w->off;
    if (w->n == 0)
        return 0;
    for (i = 0; i < w->n; i++)
        bytes += w->iov[i].iov_len;
    if (w->map && w->off + bytes <= w->map_end) {
        for (i = 0; i < w->n && r == 0; off += w->iov[i++].iov_len)
            r = os_write_mapped(w->fd, w->map, w->iov[i].iov_base, w->iov[i].iov_len, (off_t)off);
    } else {
        r = os_pwritev_all(w->fd, w->iov, w->n, (off_t)w->off);
    }
    w->off += bytes;
    w->n = 0;
    return r;
}

static int put(struct writer *w, const void *p, size_t len)
{
    if (w->n > 0) { /* coalesce with the previous vector when contiguous */
        struct iovec *last = &w->iov[w->n - 1];
        if ((const char *)last->iov_base + last->iov_len == (const char *)p) {
            last->iov_len += len;
            return 0;
        }
    }
    if (w->n == IOV_STEP) {
        int r = flush(w);
        if (r < 0)
            return r;
    }
    w->iov[w->n].iov_base = (void *)p;
    w->iov[w->n].iov_len = len;
    w->n++;
    return 0;
}

int log_append(struct tm_log *lg, uint64_t seq, uint64_t size, const struct log_piece *p, size_t n,
               uint64_t *len_out)
{
    struct log_rec rec;
    struct writer w;
    hash_state h;
    size_t i;
    int r;

    memset(&rec, 0, sizeof rec);
    rec.magic = LOG_MAGIC;
    rec.n = (uint32_t)n;
    rec.store_id = lg->store_id;
    rec.gen = lg->gen;
    rec.seq = seq;
    rec.size = size;
    rec.len = sizeof rec;
    for (i = 0; i < n; i++)
        rec.len += log_range_bytes(p[i].g.len);

    log_rec_hash_init(&h, &rec);
    for (i = 0; i < n; i++) {
        hash_update(&h, &p[i].g, sizeof p[i].g);
        hash_update(&h, p[i].src, p[i].g.len);
        hash_update(&h, zeros, log_range_bytes(p[i].g.len) - sizeof p[i].g - p[i].g.len);
    }
    rec.checksum = hash_final(&h);

    if ((r = reserve(lg, rec.len)) < 0)
        return r;
    w.fd = lg->fd, w.n = 0, w.off = lg->off;
    w.map = wmap(lg);
    w.map_end = lg->len < WMAP_LEN ? lg->len : WMAP_LEN;
    if ((r = put(&w, &rec, sizeof rec)) < 0)
        return r;
    for (i = 0; i < n; i++) {
        size_t pad = log_range_bytes(p[i].g.len) - sizeof p[i].g - p[i].g.len;
        if ((r = put(&w, &p[i].g, sizeof p[i].g)) < 0 || (r = put(&w, p[i].src, p[i].g.len)) < 0 ||
            (pad && (r = put(&w, zeros, pad)) < 0))
            return r;
    }
    if ((r = flush(&w)) < 0)
        return r;
    if (w.off > lg->len)
        lg->len = w.off;
    *len_out = rec.len;
    lg->last_off = lg->off;
    lg->last_sum = rec.checksum;
    return 0;
}

int log_invalidate(struct tm_log *lg, uint64_t off)
{
    int r = os_pwrite_all(lg->fd, zeros, sizeof(struct log_rec), (off_t)off);
    if (r == 0 && lg->sync == TM_SYNC_FULL)
        r = os_fdatasync(lg->fd);
    return r;
}

/* ---- replay ---- */

/* The header at off through the log's mapping, without a system call, when
 * off lies in the part of the file known to exist and never cut: the file
 * only shrinks to LOG_START + CKPT_BYTES (log_restart).  Else 0. */
static int map_header(struct tm_log *lg, uint64_t off, struct log_rec *rec)
{
    uint64_t window = lg->len < LOG_START + CKPT_BYTES ? lg->len : LOG_START + CKPT_BYTES;
    if (off > window || sizeof *rec > window - off)
        return 0;
    if (off + sizeof *rec > lg->map_len) { /* the ring grew: map it all */
        void *m = os_mmap(NULL, window, PROT_READ, MAP_SHARED, lg->fd, 0);
        if (os_map_failed(m))
            return 0; /* read it instead */
        if (lg->map)
            os_munmap((void *)lg->map, lg->map_len);
        lg->map = m;
        lg->map_len = window;
    }
    memcpy(rec, lg->map + off, sizeof *rec);
    return 1;
}

/* Reads and checks the record header at off (L1, all but the checksum). */
static int read_header(struct tm_log *lg, uint64_t off, uint64_t seq, struct log_rec *rec)
{
    /* no length test first: the file may have grown since lg->len */
    if (!map_header(lg, off, rec) && os_pread_all(lg->fd, rec, sizeof *rec, (off_t)off) < 0)
        return 0;
    if (!log_rec_header_ok(rec, lg->store_id, lg->gen, seq, lg->max) || rec->len > UINT64_MAX - off)
        return 0;
    if (off + rec->len > lg->len && log_refresh_len(lg) < 0)
        return 0;
    return off + rec->len <= lg->len;
}

int log_pending(struct tm_log *lg, uint64_t off, uint64_t seq)
{
    struct log_rec rec;
    return read_header(lg, off, seq, &rec);
}

int log_is(struct tm_log *lg, uint64_t off, uint64_t seq, uint64_t sum, uint64_t end)
{
    struct log_rec rec;
    return read_header(lg, off, seq, &rec) && rec.checksum == sum && off + rec.len == end;
}

int log_valid(struct tm_log *lg, uint64_t off, uint64_t seq)
{
    struct log_rec rec;
    uint8_t *buf;
    int whole, r;
    if (!read_header(lg, off, seq, &rec))
        return 0;
    if (!(buf = os_alloc(REPLAY_BUF)))
        return -ENOMEM;
    r = rec_verify(lg->fd, off, &rec, buf, &whole);
    os_free(buf, REPLAY_BUF);
    return r;
}

/* Replay writes the store file through the page cache, and recovery then
 * syncs it: starting the write-back every WRITEBACK_STEP bytes overlaps
 * most of that sync with the replay. */
#define WRITEBACK_STEP (8u << 20)

long log_replay(struct tm_log *lg, int fd, uint64_t keep, uint64_t *off, uint64_t *seq, uint64_t *size)
{
    struct log_rec rec;
    uint8_t *buf = NULL;
    uint64_t file_size = 0, unsynced = 0, want;
    long count = 0;
    int r = 0, whole;

    while (read_header(lg, *off, *seq + 1, &rec)) {
        if (!buf && !(buf = os_alloc(REPLAY_BUF)))
            return -ENOMEM;
        if ((r = rec_verify(lg->fd, *off, &rec, buf, &whole)) <= 0)
            break;
        if (fd >= 0) {
            want = rec.size > keep ? rec.size : keep;
            if (want != file_size && (r = os_ftruncate(fd, (off_t)want)) < 0)
                break;
            file_size = want;
            if ((r = rec_apply(lg->fd, fd, *off, &rec, buf, whole)) < 0)
                break;
            if (lg->sync == TM_SYNC_FULL && (unsynced += rec.len) >= WRITEBACK_STEP) {
                os_writeback(fd);
                unsynced = 0;
            }
        }
        lg->last_off = *off;
        lg->last_sum = rec.checksum;
        *off += rec.len;
        *seq += 1;
        *size = rec.size;
        count++;
    }
    os_free(buf, REPLAY_BUF);
    return r < 0 ? r : count;
}
