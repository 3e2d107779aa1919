/*
 * diff.c — what a transaction changed, as byte ranges of the arena: its
 * dirty pages (private copies) against the committed bytes, read through
 * a read-only shared mapping of the store file (the view).
 *
 * A small transaction logs and applies only the bytes it changed: a
 * counter's update is one range of 8 bytes, not a page.  Pages are
 * compared a cache line at a time; changed lines closer than GAP_MERGE
 * bytes join one range (a range header costs 16 bytes); a page changed in
 * more than FULL_BYTES is logged whole.  Past DIFF_PAGES dirty pages the
 * comparison would cost more than it saves, and every page goes whole.
 * Neighbouring ranges are merged, so a run of whole pages is one range.
 *
 * The comparison is exact only while the store file holds the committed
 * state, which the writer's lock and healing guarantee (checkpoint.c).
 * The first cold pages a transaction writes are compared with copies its
 * faults saved instead (track_before), which hold the same bytes.
 *
 * The view is writable, and a commit applies its ranges through it (a
 * memcpy into the page cache, as a pwrite would, without the system call;
 * os_write_mapped falls back on pwrite where the page has no block and
 * none is left).  But the first write to a page of the view, and the
 * first after the kernel wrote it back, is a fault, dearer than a pwrite:
 * so only a range within a page applied lately goes through the view, and
 * any other by pwrite (a page written once, as scattered writes over a big
 * store are, never costs the fault).  Unlike the arena, the view is not
 * protected: a stray write into it (at an address the kernel chose) would
 * reach the file.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#define LINE 64
#define GAP_MERGE 32
#define FULL_BYTES (PAGE / 4 * 3)
#define APPLIED 512 /* pages remembered as applied lately */

int diff_open(tm_store *st)
{
    void *v = os_mmap(NULL, st->max, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, st->fd, 0);
    if (os_map_failed(v))
        return (int)(intptr_t)v;
    st->view = v;
    st->pieces = os_alloc((st->max / PAGE) * sizeof *st->pieces);
    st->applied = os_alloc(APPLIED * sizeof *st->applied);
    return st->pieces && st->applied ? 0 : -ENOMEM;
}

void diff_close(tm_store *st)
{
    if (st->view)
        os_munmap((void *)st->view, st->max);
    os_free(st->pieces, (st->max / PAGE) * sizeof *st->pieces);
    os_free(st->applied, APPLIED * sizeof *st->applied);
    st->view = NULL;
    st->pieces = NULL;
    st->applied = NULL;
}

/* Appends [off, off+len) of the arena, merged with the last range when
 * they touch. */
static void add(tm_store *st, size_t *n, uint64_t off, uint64_t len)
{
    struct log_piece *last = *n ? &st->pieces[*n - 1] : NULL;
    if (last && last->g.off + last->g.len == off) {
        last->g.len += len;
        return;
    }
    st->pieces[*n].g.off = off;
    st->pieces[*n].g.len = len;
    st->pieces[*n].src = st->base + off;
    ++*n;
}

/* The changed lines of one page; all of it when most of it changed.  An
 * open page (hot.c) is listed by every commit, changed or not: one
 * comparison of the whole page, at memcmp's speed, clears it. */
static void diff_page(tm_store *st, size_t *n, uint64_t pg)
{
    const char *now = st->base + pg * PAGE, *was = track_before(st, pg);
    uint64_t start[PAGE / LINE], end[PAGE / LINE];
    size_t k = 0, changed = 0, i;
    if (!was)
        was = st->view + pg * PAGE;
    if (memcmp(now, was, PAGE) == 0)
        return;
    for (uint64_t at = 0; at < PAGE; at += LINE) {
        if (memcmp(now + at, was + at, LINE) == 0)
            continue;
        changed += LINE;
        if (k && at - end[k - 1] < GAP_MERGE)
            end[k - 1] = at + LINE;
        else
            start[k] = at, end[k] = at + LINE, k++;
    }
    if (changed > FULL_BYTES) { /* cheaper whole */
        add(st, n, pg * PAGE, PAGE);
        return;
    }
    for (i = 0; i < k; i++)
        add(st, n, pg * PAGE + start[i], end[i] - start[i]);
}

/* Fills st->pieces with what the sorted pages[0..n) changed; returns how
 * many ranges (0: the transaction changed nothing). */
size_t diff_pages(tm_store *st, const uint64_t *pages, size_t n)
{
    size_t out = 0, i;
    if (n > DIFF_PAGES || !st->view) {
        for (i = 0; i < n; i++)
            add(st, &out, pages[i] * PAGE, PAGE);
        return out;
    }
    for (i = 0; i < n; i++)
        diff_page(st, &out, pages[i]);
    return out;
}

/* Writes one range into the store file: through the view when it lies in
 * a page applied lately (see the top of the file), else by pwrite. */
int diff_apply(tm_store *st, const struct log_piece *p)
{
    uint64_t pg = p->g.off / PAGE;
    if (st->view && (p->g.off + p->g.len - 1) / PAGE == pg) {
        uint64_t *slot = &st->applied[pg % APPLIED];
        if (*slot == pg + 1)
            return os_write_mapped(st->fd, (char *)st->view, p->src, p->g.len, (off_t)p->g.off);
        *slot = pg + 1;
    }
    return os_pwrite_small(st->fd, p->src, p->g.len, (off_t)p->g.off);
}
