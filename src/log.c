/*
 * log.c — the redo log: format, append, replay.
 *
 * File "<store>.log":
 *
 *   offset 0     log header, one page: "TMFLOG\0\0", store id (u64), then
 *                zeros.  Written once, when the log is created; a log whose
 *                header names another store is refused, never written.
 *   offset 4096  records, back to back, until the first invalid one.
 *
 * A record (struct log_rec, 64 bytes, then its body):
 *
 *   magic u32 | npages u32 | store_id | gen | seq | size | len | checksum | 0
 *   u64 page number  x npages, strictly increasing, each in [1, size/PAGE)
 *   page image       x npages, 4096 bytes each, in the same order
 *
 *   gen      the header's checkpoint generation when the record was written;
 *   seq      the commit sequence number: ckpt_seq + 1, + 2, ... in file order;
 *   size     the arena size after the commit;
 *   len      64 + 8 * npages + 4096 * npages;
 *   checksum of the 64-byte header with checksum = 0, the page numbers and
 *            the page images (checksum.c).
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
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "internal.h"
#include "os.h"

#define IOV_STEP 256

static const uint8_t zeros[64 << 10];

uint64_t log_record_len(size_t npages)
{
    return sizeof(struct log_rec) + (uint64_t)npages * (8 + PAGE);
}

/* L5: the log grows by written zeros, LOG_CHUNK at a time, up to end. */
static int zero_fill(tm_store *st, uint64_t end)
{
    int r;
    end = (end + LOG_CHUNK - 1) & ~(LOG_CHUNK - 1);
    while (st->log_len < end) {
        uint64_t n = end - st->log_len < sizeof zeros ? end - st->log_len : sizeof zeros;
        if ((r = os_pwrite_all(st->log_fd, zeros, n, (off_t)st->log_len)) < 0)
            return r;
        st->log_len += n;
    }
    return 0;
}

int log_create(tm_store *st)
{
    uint8_t page[PAGE];
    int r;
    memset(page, 0, sizeof page);
    memcpy(page, LOG_HDR_MAGIC, 8);
    memcpy(page + 8, &st->store_id, 8);
    if ((r = os_pwrite_all(st->log_fd, page, PAGE, 0)) < 0)
        return r;
    st->log_len = PAGE;
    if ((r = zero_fill(st, LOG_START + LOG_CHUNK)) < 0) /* the first ring */
        return r;
    return os_fdatasync(st->log_fd);
}

int log_check_file(tm_store *st)
{
    uint8_t head[16];
    uint64_t id;
    struct stat sb;
    if (fstat(st->log_fd, &sb) < 0)
        return -errno;
    if (sb.st_size < (off_t)PAGE)
        return -TM_ECORRUPT;
    if (os_pread_all(st->log_fd, head, sizeof head, 0) < 0)
        return -TM_ECORRUPT;
    memcpy(&id, head + 8, 8);
    if (memcmp(head, LOG_HDR_MAGIC, 8) != 0 || id != st->store_id)
        return -TM_ECORRUPT;
    st->log_len = (uint64_t)sb.st_size;
    return 0;
}

/* The log's length as the file has it now: other processes append too. */
int log_refresh_len(tm_store *st)
{
    struct stat sb;
    if (fstat(st->log_fd, &sb) < 0)
        return -errno;
    st->log_len = (uint64_t)sb.st_size;
    return 0;
}

/* L5: make room for len bytes at st->log_off. */
static int reserve(tm_store *st, uint64_t len)
{
    uint64_t end = st->log_off + len;
    int r;
    if (end <= st->log_len || len >= LOG_CHUNK)
        return 0; /* a large record extends the file itself */
    if ((r = log_refresh_len(st)) < 0) /* never write zeros over another's record */
        return r;
    return end <= st->log_len ? 0 : zero_fill(st, end);
}

int log_fits(tm_store *st, uint64_t len)
{
    if (st->log_off + len <= st->log_len || st->log_off == LOG_START)
        return 1;
    if (log_refresh_len(st) < 0)
        return 1; /* reserve() will meet the error */
    return st->log_off + len <= st->log_len;
}

int log_grow_ring(tm_store *st)
{
    uint64_t ring = st->log_len > LOG_START ? st->log_len - LOG_START : LOG_CHUNK / 2;
    if (ring >= CKPT_BYTES)
        return 0;
    return zero_fill(st, LOG_START + (2 * ring < CKPT_BYTES ? 2 * ring : CKPT_BYTES));
}

struct writer {
    tm_store *st;
    struct iovec iov[IOV_STEP];
    int n;
    uint64_t off;
};

static int flush(struct writer *w)
{
    int r = 0;
    if (w->n > 0) {
        uint64_t bytes = 0;
        int i;
        for (i = 0; i < w->n; i++)
            bytes += w->iov[i].iov_len;
        r = os_pwritev_all(w->st->log_fd, w->iov, w->n, (off_t)w->off);
        w->off += bytes;
        w->n = 0;
    }
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

int log_append(tm_store *st, uint64_t seq, const uint64_t *pages, size_t n, uint64_t *len_out)
{
    struct log_rec rec;
    struct writer w;
    hash_state h;
    size_t i;
    int r;

    memset(&rec, 0, sizeof rec);
    rec.magic = (uint32_t)LOG_MAGIC;
    rec.npages = (uint32_t)n;
    rec.store_id = st->store_id;
    rec.gen = st->gen;
    rec.seq = seq;
    rec.size = super_of(st)->size;
    rec.len = log_record_len(n);

    hash_init(&h, st->store_id);
    hash_update(&h, &rec, sizeof rec);
    hash_update(&h, pages, n * sizeof *pages);
    for (i = 0; i < n; i++)
        hash_update(&h, tx_page(st, pages[i]), PAGE);
    rec.checksum = hash_final(&h);

    if ((r = reserve(st, rec.len)) < 0)
        return r;
    w.st = st, w.n = 0, w.off = st->log_off;
    if ((r = put(&w, &rec, sizeof rec)) < 0 || (r = put(&w, pages, n * sizeof *pages)) < 0)
        return r;
    for (i = 0; i < n; i++)
        if ((r = put(&w, tx_page(st, pages[i]), PAGE)) < 0)
            return r;
    if ((r = flush(&w)) < 0)
        return r;
    if (w.off > st->log_len)
        st->log_len = w.off;
    *len_out = rec.len;
    return 0;
}

int log_invalidate(tm_store *st, uint64_t off)
{
    int r = os_pwrite_all(st->log_fd, zeros, sizeof(struct log_rec), (off_t)off);
    if (r == 0 && st->sync == TM_SYNC_FULL)
        r = os_fdatasync(st->log_fd);
    return r;
}

/* ---- replay ---- */

void (*tm__progress)(uint64_t bytes);

#define RBUF (4u << 20)                 /* pages read per step */
#define RBUF_ALLOC (RBUF + RBUF / PAGE * 8) /* and their page numbers */

/* The header at off through the log's mapping, without a system call, when
 * off lies in the part of the file known to exist and never cut: the file
 * only shrinks to LOG_START + CKPT_BYTES (store_checkpoint_at).  Else 0. */
static int map_header(tm_store *st, uint64_t off, struct log_rec *rec)
{
    uint64_t window = st->log_len < LOG_START + CKPT_BYTES ? st->log_len : LOG_START + CKPT_BYTES;
    if (off + sizeof *rec > window)
        return 0;
    if (off + sizeof *rec > st->log_map_len) { /* the ring grew: map it all */
        void *m = mmap(NULL, window, PROT_READ, MAP_SHARED, st->log_fd, 0);
        if (m == MAP_FAILED)
            return 0;
        if (st->log_map)
            munmap((void *)st->log_map, st->log_map_len);
        st->log_map = m;
        st->log_map_len = window;
    }
    memcpy(rec, st->log_map + off, sizeof *rec);
    return 1;
}

/* Reads and checks the record header at off (L1, all but the checksum). */
static int read_header(tm_store *st, uint64_t off, uint64_t seq, struct log_rec *rec)
{
    /* no length test first: the file may have grown since st->log_len */
    if (!map_header(st, off, rec) && os_pread_all(st->log_fd, rec, sizeof *rec, (off_t)off) < 0)
        return 0;
    if (!(rec->magic == (uint32_t)LOG_MAGIC && rec->store_id == st->store_id &&
          rec->gen == st->gen && rec->seq == seq && rec->npages > 0 &&
          rec->len == log_record_len(rec->npages) && rec->size >= 2 * PAGE &&
          rec->size % PAGE == 0 && rec->size <= st->max))
        return 0;
    if (off + rec->len > st->log_len && log_refresh_len(st) < 0)
        return 0;
    return off + rec->len <= st->log_len;
}

int log_pending(tm_store *st, uint64_t off, uint64_t seq)
{
    struct log_rec rec;
    return read_header(st, off, seq, &rec);
}

/* Reads the body [from, from+len) of the record at off in pieces. */
static int for_body(tm_store *st, uint64_t off, uint64_t from, uint64_t len, uint8_t *buf,
                    int (*fn)(void *ctx, const uint8_t *p, size_t n, uint64_t at), void *ctx)
{
    uint64_t done = 0;
    while (done < len) {
        size_t n = len - done < RBUF ? (size_t)(len - done) : RBUF;
        int r = os_pread_all(st->log_fd, buf, n, (off_t)(off + from + done));
        if (r < 0)
            return r;
        if ((r = fn(ctx, buf, n, from + done)) != 0)
            return r;
        done += n;
    }
    return 0;
}

static int hash_piece(void *ctx, const uint8_t *p, size_t n, uint64_t at)
{
    (void)at;
    hash_update(ctx, p, n);
    return 0;
}

struct index_check {
    uint64_t prev, limit;
    int ok;
};

static int check_index(void *ctx, const uint8_t *p, size_t n, uint64_t at)
{
    struct index_check *c = ctx;
    size_t i;
    (void)at;
    for (i = 0; i + 8 <= n; i += 8) {
        uint64_t pg;
        memcpy(&pg, p + i, 8);
        if (pg <= c->prev || pg >= c->limit)
            c->ok = 0;
        c->prev = pg;
    }
    return 0;
}

/* L1: checksum and page numbers.  A body that fits in buf is read once and
 * left there for apply_record (*whole = 1); a larger one is read a piece at
 * a time, and again when it is applied. */
static int verify(tm_store *st, uint64_t off, const struct log_rec *rec, uint8_t *buf, int *whole)
{
    struct log_rec h0 = *rec;
    struct index_check ic = {0, rec->size / PAGE, 1};
    uint64_t blen = rec->len - sizeof *rec, ilen = (uint64_t)rec->npages * 8;
    hash_state h;
    int r;

    h0.checksum = 0;
    hash_init(&h, st->store_id);
    hash_update(&h, &h0, sizeof h0);
    *whole = blen <= RBUF_ALLOC;
    if (*whole) {
        if ((r = os_pread_all(st->log_fd, buf, blen, (off_t)(off + sizeof *rec))) < 0)
            return r;
        hash_update(&h, buf, blen);
        check_index(&ic, buf, ilen, 0);
    } else {
        r = for_body(st, off, sizeof *rec, blen, buf, hash_piece, &h);
        /* page numbers are 8-byte aligned pieces: RBUF is a multiple of 8 */
        if (r == 0)
            r = for_body(st, off, sizeof *rec, ilen, buf, check_index, &ic);
        if (r < 0)
            return r;
    }
    return hash_final(&h) == rec->checksum && ic.ok;
}

/* Writes k pages (numbers in index) into the store file, runs of neighbours
 * in one write; the superblock's image is set aside in super_img. */
static int write_pages(tm_store *st, const uint64_t *index, const uint8_t *pages, uint64_t k, uint8_t *super_img,
                       int *have_super)
{
    uint64_t i, j;
    for (i = 0; i < k; i = j) {
        if (index[i] == 1) {
            memcpy(super_img, pages + i * PAGE, PAGE);
            *have_super = 1;
            j = i + 1;
            continue;
        }
        for (j = i + 1; j < k && index[j] == index[j - 1] + 1; j++)
            ;
        int r = os_pwrite_all(st->fd, pages + i * PAGE, (j - i) * PAGE, (off_t)(index[i] * PAGE));
        if (r < 0)
            return r;
    }
    if (tm__progress)
        tm__progress(k * PAGE);
    return 0;
}

/* Writes the record's pages into the store file, the superblock last: a
 * superblock that names this record's sequence number means every page of it
 * is in place (the test store_heal relies on).  whole: verify left the body
 * in buf. */
static int apply_record(tm_store *st, uint64_t off, const struct log_rec *rec, uint8_t *buf, int whole)
{
    uint8_t *pages = buf;
    uint64_t *index = (uint64_t *)(buf + RBUF);
    uint64_t per = RBUF / PAGE, done = 0;
    uint8_t super_img[PAGE];
    int have_super = 0, r;

    if (whole)
        r = write_pages(st, (const uint64_t *)buf, buf + (uint64_t)rec->npages * 8, rec->npages, super_img,
                        &have_super);
    else
        for (r = 0; r == 0 && done < rec->npages; done += per) {
            uint64_t k = rec->npages - done < per ? rec->npages - done : per;
            r = os_pread_all(st->log_fd, index, k * 8, (off_t)(off + sizeof *rec + done * 8));
            if (r == 0)
                r = os_pread_all(st->log_fd, pages, k * PAGE,
                                 (off_t)(off + sizeof *rec + (uint64_t)rec->npages * 8 + done * PAGE));
            if (r == 0)
                r = write_pages(st, index, pages, k, super_img, &have_super);
        }
    if (r < 0)
        return r;
    return have_super ? os_pwrite_all(st->fd, super_img, PAGE, PAGE) : 0;
}

/* Replay writes the store file through the page cache, and recovery then
 * syncs it: starting the write-back every WRITEBACK_STEP bytes overlaps
 * most of that sync with the replay. */
#define WRITEBACK_STEP (8u << 20)

long log_replay(tm_store *st, uint64_t *off, uint64_t *seq, uint64_t *size)
{
    struct log_rec rec;
    uint8_t *buf = NULL;
    uint64_t file_size = 0, unsynced = 0;
    long count = 0;
    int r = 0, whole;

    while (read_header(st, *off, *seq + 1, &rec)) {
        if (!buf && !(buf = os_alloc(RBUF_ALLOC)))
            return -ENOMEM;
        if ((r = verify(st, *off, &rec, buf, &whole)) <= 0)
            break;
        if (rec.size != file_size && (r = os_ftruncate(st->fd, (off_t)rec.size)) < 0)
            break;
        file_size = rec.size;
        if ((r = apply_record(st, *off, &rec, buf, whole)) < 0)
            break;
        if (st->sync == TM_SYNC_FULL && (unsynced += rec.len) >= WRITEBACK_STEP) {
            sync_file_range(st->fd, 0, 0, SYNC_FILE_RANGE_WRITE); /* a hint: no error matters */
            unsynced = 0;
        }
        *off += rec.len;
        *seq += 1;
        *size = rec.size;
        count++;
    }
    if (buf)
        os_free(buf, RBUF_ALLOC);
    return r < 0 ? r : count;
}
