/*
 * replay.c — the bodies of log records: checking them (L1) and writing them
 * into the store file (L4), for both kinds of record (format.h): byte
 * ranges, and the page records of stores of format 3 and older.
 *
 * A body that fits in the buffer is read once, checked there and applied
 * from there (*whole = 1); a larger one is read a piece at a time, and
 * again when it is applied.  Writing a record's bytes twice does no harm:
 * replay is idempotent (L4).
 */
#include <errno.h>
#include <string.h>

#include "inspect.h"
#include "internal.h"

void (*tm__progress)(uint64_t bytes);

#define RBUF (4u << 20) /* a multiple of 8: no page number straddles two pieces */

typedef int piece_fn(void *ctx, const uint8_t *p, size_t n, uint64_t at);

/* Reads the body [from, from+len) of the record at off, RBUF at a time. */
static int for_body(int log_fd, uint64_t off, uint64_t from, uint64_t len, uint8_t *buf, piece_fn *fn, void *ctx)
{
    uint64_t done = 0;
    while (done < len) {
        size_t n = len - done < RBUF ? (size_t)(len - done) : RBUF;
        int r = os_pread_all(log_fd, buf, n, (off_t)(off + from + done));
        if (r < 0)
            return r;
        if ((r = fn(ctx, buf, n, from + done)) != 0)
            return r;
        done += n;
    }
    return 0;
}

/* ---- range records ---- */

/* A walk over the ranges of a body fed in pieces: headers are checked,
 * the bytes of each range handed to data(). */
struct walk {
    uint64_t size, blen, at;   /* arena size; body length; body bytes seen */
    uint64_t prev_end, nleft;  /* end of the last range; ranges still to come */
    uint8_t hbuf[sizeof(struct log_range)];
    unsigned hgot;             /* bytes of a header split between pieces */
    uint64_t doff, dleft, pad; /* the range being read: where, bytes, padding */
    int ok;
    int (*data)(void *ctx, uint64_t aoff, const uint8_t *p, size_t n);
    void *ctx;
    hash_state *h;
};

static int range_header(struct walk *w)
{
    struct log_range g;
    memcpy(&g, w->hbuf, sizeof g);
    w->hgot = 0;
    if (w->nleft == 0 || !log_range_ok(&g, w->prev_end, w->size, w->blen - (w->at - sizeof g)))
        return w->ok = 0;
    w->nleft--;
    w->prev_end = g.off + g.len;
    w->doff = g.off;
    w->dleft = g.len;
    w->pad = log_range_bytes(g.len) - sizeof g - g.len;
    return 1;
}

static int walk_piece(void *ctx, const uint8_t *p, size_t n, uint64_t at)
{
    struct walk *w = ctx;
    (void)at;
    if (w->h)
        hash_update(w->h, p, n);
    while (n > 0 && w->ok) {
        size_t k;
        if (w->dleft) {
            k = n < w->dleft ? n : (size_t)w->dleft;
            if (w->data) {
                int r = w->data(w->ctx, w->doff, p, k);
                if (r < 0)
                    return r;
            }
            w->doff += k, w->dleft -= k;
        } else if (w->pad) {
            k = n < w->pad ? n : (size_t)w->pad;
            w->pad -= k;
        } else {
            k = sizeof w->hbuf - w->hgot < n ? sizeof w->hbuf - w->hgot : n;
            memcpy(w->hbuf + w->hgot, p, k);
            w->hgot += (unsigned)k;
            w->at += k;
            if (w->hgot == sizeof w->hbuf)
                range_header(w);
            p += k, n -= k;
            continue;
        }
        w->at += k;
        p += k, n -= k;
    }
    return 0;
}

static void walk_init(struct walk *w, const struct log_rec *rec, hash_state *h)
{
    memset(w, 0, sizeof *w);
    w->size = rec->size;
    w->blen = rec->len - sizeof *rec;
    w->nleft = rec->n;
    w->ok = 1;
    w->h = h;
}

static int walk_done(const struct walk *w)
{
    return w->ok && w->nleft == 0 && w->dleft == 0 && w->pad == 0 && w->hgot == 0 && w->at == w->blen;
}

/* ---- page records (format <= 3) ---- */

static int hash_piece(void *ctx, const uint8_t *p, size_t n, uint64_t at)
{
    (void)at;
    hash_update(ctx, p, n);
    return 0;
}

static int index_piece(void *ctx, const uint8_t *p, size_t n, uint64_t at)
{
    (void)at;
    log_index_check(ctx, p, n);
    return 0;
}

static int verify_pages(int log_fd, uint64_t off, const struct log_rec *rec, uint8_t *buf, int whole, hash_state *h)
{
    struct log_index_check ic;
    uint64_t blen = rec->len - sizeof *rec, ilen = (uint64_t)rec->n * 8;
    int r;
    log_index_check_init(&ic, rec);
    if (whole) {
        hash_update(h, buf, blen);
        log_index_check(&ic, buf, ilen);
    } else if ((r = for_body(log_fd, off, sizeof *rec, blen, buf, hash_piece, h)) < 0 ||
               (r = for_body(log_fd, off, sizeof *rec, ilen, buf, index_piece, &ic)) < 0) {
        return r;
    }
    return ic.ok;
}

/* Writes k pages (numbers in index) into the store file, runs of neighbours
 * in one write; the superblock's image is set aside in super_img. */
static int write_pages(int fd, const uint64_t *index, const uint8_t *pages, uint64_t k, uint8_t *super_img,
                       int *have_super)
{
    uint64_t i, j;
    for (i = 0; i < k; i = j) {
        int r;
        if (index[i] == 1) {
            memcpy(super_img, pages + i * PAGE, PAGE);
            *have_super = 1;
            j = i + 1;
            continue;
        }
        for (j = i + 1; j < k && index[j] == index[j - 1] + 1; j++)
            ;
        /* whole runs: one write a run keeps replay above 1 GB/s, where
         * pieces of small folios (os_pwrite_small) cost it a sixth */
        if ((r = os_pwrite_all(fd, pages + i * PAGE, (j - i) * PAGE, (off_t)(index[i] * PAGE))) < 0)
            return r;
    }
    return 0;
}

/* The superblock last, as format 3 had it. */
static int apply_pages(int log_fd, int fd, uint64_t off, const struct log_rec *rec, uint8_t *buf, int whole)
{
    uint8_t *pages = buf;
    uint64_t *index = (uint64_t *)(buf + RBUF);
    uint64_t per = RBUF / PAGE, done = 0;
    uint8_t super_img[PAGE];
    int have_super = 0, r;

    if (whole)
        r = write_pages(fd, (const uint64_t *)buf, buf + (uint64_t)rec->n * 8, rec->n, super_img, &have_super);
    else
        for (r = 0; r == 0 && done < rec->n; done += per) {
            uint64_t k = rec->n - done < per ? rec->n - done : per;
            r = os_pread_all(log_fd, index, k * 8, (off_t)(off + sizeof *rec + done * 8));
            if (r == 0)
                r = os_pread_all(log_fd, pages, k * PAGE,
                                 (off_t)(off + sizeof *rec + (uint64_t)rec->n * 8 + done * PAGE));
            if (r == 0)
                r = write_pages(fd, index, pages, k, super_img, &have_super);
        }
    if (r < 0)
        return r;
    return have_super ? os_pwrite_all(fd, super_img, PAGE, PAGE) : 0;
}

/* ---- both kinds ---- */

int rec_verify(int log_fd, uint64_t off, const struct log_rec *rec, uint8_t *buf, int *whole)
{
    uint64_t blen = rec->len - sizeof *rec;
    hash_state h;
    struct walk w;
    int ok, r;

    log_rec_hash_init(&h, rec);
    *whole = blen <= REPLAY_BUF;
    if (*whole && (r = os_pread_all(log_fd, buf, blen, (off_t)(off + sizeof *rec))) < 0)
        return r;
    if (rec->magic == LOG_MAGIC_PAGES) {
        if ((ok = verify_pages(log_fd, off, rec, buf, *whole, &h)) < 0)
            return ok;
    } else {
        walk_init(&w, rec, &h);
        if (*whole)
            walk_piece(&w, buf, blen, 0);
        else if ((r = for_body(log_fd, off, sizeof *rec, blen, buf, walk_piece, &w)) < 0)
            return r;
        ok = walk_done(&w);
    }
    return hash_final(&h) == rec->checksum && ok;
}

static int write_range(void *ctx, uint64_t aoff, const uint8_t *p, size_t n)
{
    return os_pwrite_all(*(int *)ctx, p, n, (off_t)aoff);
}

static int apply_ranges(int log_fd, int fd, uint64_t off, const struct log_rec *rec, uint8_t *buf, int whole)
{
    struct walk w;
    walk_init(&w, rec, NULL);
    w.data = write_range;
    w.ctx = &fd;
    if (whole)
        return walk_piece(&w, buf, rec->len - sizeof *rec, 0);
    return for_body(log_fd, off, sizeof *rec, rec->len - sizeof *rec, buf, walk_piece, &w);
}

int rec_apply(int log_fd, int fd, uint64_t off, const struct log_rec *rec, uint8_t *buf, int whole)
{
    int r = rec->magic == LOG_MAGIC_PAGES ? apply_pages(log_fd, fd, off, rec, buf, whole)
                                          : apply_ranges(log_fd, fd, off, rec, buf, whole);
    if (r == 0 && tm__progress)
        tm__progress(rec->len);
    return r;
}
