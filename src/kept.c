/*
 * kept.c — lists of pages and the private copies they name: dropping
 * copies, sorting, and the copies kept across commits.
 *
 * Kept copies.  After a commit, the private copies of the pages it wrote
 * hold exactly what the store file holds.  Up to KEEP_MAX of them are kept,
 * read-only, so a later transaction that writes them again takes its fault
 * without copying the page, and its commit has nothing to drop.  They go
 * stale as soon as anyone else commits: every transaction compares the
 * committed sequence number with the one this process's copies reflect
 * (store_catch_up) and drops them all on a difference.  Aborts, failed
 * applies and bulk transactions drop them too.
 */
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "internal.h"

/* Calls fn on each run of consecutive page numbers in pages[0..n); stops at
 * the first error and returns it. */
int pages_for_runs(tm_store *st, const uint64_t *pages, size_t n, int (*fn)(char *, size_t))
{
    size_t i = 0, j;
    int r = 0;
    while (i < n && r == 0) {
        for (j = i + 1; j < n && pages[j] == pages[j - 1] + 1; j++)
            ;
        r = fn(st->base + pages[i] * PAGE, (j - i) * PAGE);
        i = j;
    }
    return r;
}

/* MADV_DONTNEED of a private copy, which only drops memory of ours: it
 * cannot fail for a valid range, and a copy left behind would be found
 * stale by the sequence test, so the result changes nothing. */
static int drop(char *p, size_t len)
{
    (void)os_madvise(p, len, MADV_DONTNEED);
    return 0;
}

/* MADV_DONTNEED on many runs in one process_madvise(2) call on PIDFD_SELF
 * (recent kernels accept any advice for the calling process), else, on
 * older kernels or any error, one madvise each. */
#define IOV_BATCH 64

void kept_discard(tm_store *st, const uint64_t *pages, size_t n)
{
    static atomic_int no_batch;
    struct iovec iov[IOV_BATCH];
    size_t i = 0, j, k;
    while (i < n) {
        size_t first = i;
        ssize_t want = 0;
        for (k = 0; k < IOV_BATCH && i < n; k++, i = j) {
            for (j = i + 1; j < n && pages[j] == pages[j - 1] + 1; j++)
                ;
            iov[k].iov_base = st->base + pages[i] * PAGE;
            iov[k].iov_len = (j - i) * PAGE;
            want += (ssize_t)iov[k].iov_len;
        }
        if (no_batch || k == 1 || os_madvise_self(iov, k, MADV_DONTNEED) != want) {
            no_batch |= k > 1;
            pages_for_runs(st, pages + first, i - first, drop);
        }
    }
}

void kept_drop_all(tm_store *st)
{
    kept_discard(st, st->trk.kept, st->trk.nkept);
    st->trk.nkept = 0;
}

/* The sorted a[0..na) without what the sorted b[0..nb) lists, into out
 * (which may be a: it is written no faster than read); returns how many. */
static size_t minus(const uint64_t *a, size_t na, const uint64_t *b, size_t nb, uint64_t *out)
{
    size_t i, j = 0, k = 0;
    for (i = 0; i < na; i++) {
        while (j < nb && b[j] < a[i])
            j++;
        if (j == nb || b[j] != a[i])
            out[k++] = a[i];
    }
    return k;
}

/* Entering bulk mode: drops the kept copies this transaction has not
 * written (those it has are listed; the scan will list them again). */
void kept_drop_clean(tm_store *st)
{
    struct tm_tracker *t = &st->trk;
    size_t n = t->ndirty;
    uint64_t *out = t->kept + KEEP_MAX;
    if (!t->nkept)
        return;
    sort_pages(t->dirty, n); /* the order no longer matters: the scan replaces the list */
    kept_discard(st, out, minus(t->kept, t->nkept, t->dirty, n, out));
    t->nkept = 0;
}

/* Whether page is among the sorted pages[0..n). */
static int listed(const uint64_t *pages, size_t n, uint64_t page)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (pages[mid] == page)
            return 1;
        if (pages[mid] < page)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

int kept_has(const tm_store *st, uint64_t page)
{
    return listed(st->trk.kept, st->trk.nkept, page);
}

/* A promotion made pages hot, the written one and maybe a gap it bridged:
 * their copies are hot pages' now and leave the kept list, so that the
 * list never holds a hot page (track_keep relies on it). */
void kept_remove_hot(tm_store *st)
{
    struct tm_tracker *t = &st->trk;
    size_t i, k = 0;
    for (i = 0; i < t->nkept; i++)
        if (!hot_has(st, t->kept[i]))
            t->kept[k++] = t->kept[i];
    t->nkept = k;
}

/* Drops m kept copies that the sorted d[0..n) does not list, taken in
 * turn around the list (a rotating cursor: no age is kept), so a full
 * kept set costs each commit the few it makes room for, not all at once. */
void kept_evict(tm_store *st, const uint64_t *d, size_t n, size_t m)
{
    struct tm_tracker *t = &st->trk;
    uint64_t *out = t->kept + KEEP_MAX;
    size_t i = t->evict_at % t->nkept, seen, k = 0;
    for (seen = 0; seen < t->nkept && k < m; seen++, i = (i + 1) % t->nkept)
        if (!listed(d, n, t->kept[i]))
            out[k++] = t->kept[i];
    t->evict_at = i;
    sort_pages(out, k);
    kept_discard(st, out, k);
    t->nkept = minus(t->kept, t->nkept, out, k, t->kept);
}

/* ---- sorting ---- */

/* In-place heapsort: the commit path must not allocate (qsort may call
 * malloc, which the preload would route into the arena being committed). */
static void sift(uint64_t *v, size_t i, size_t n)
{
    uint64_t x = v[i];
    for (size_t c; (c = 2 * i + 1) < n; i = c) {
        if (c + 1 < n && v[c + 1] > v[c])
            c++;
        if (v[c] <= x)
            break;
        v[i] = v[c];
    }
    v[i] = x;
}

void sort_pages(uint64_t *v, size_t n)
{
    size_t i;
    for (i = n / 2; i-- > 0;)
        sift(v, i, n);
    while (n > 1) {
        uint64_t t = v[0];
        v[0] = v[--n];
        v[n] = t;
        sift(v, 0, n);
    }
}
