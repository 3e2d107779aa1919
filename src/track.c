/*
 * track.c — the tracker: which pages the write transaction changed, and
 * the private copies they live in.
 *
 * Outside a write transaction the arena is mapped read-only.  Inside one,
 * the first write to a page faults; the fault handler (fault.c) calls
 * track_fault, which makes that page writable and lists it, so tracking
 * costs one fault per page dirtied, whatever the arena's size.  Changed
 * pages are private copy-on-write copies of the file's pages (MAP_PRIVATE):
 * nothing reaches the store file before commit, and abort drops them.
 *
 * Each such fault costs a signal and an mprotect that splits the mapping.
 * Once a transaction has taken enough of them that one walk over the whole
 * arena is cheaper than what they cost so far, the whole arena is made
 * writable instead (bulk mode: later first writes are plain copy-on-write
 * faults) and the end of the transaction finds the private copies with one
 * PAGEMAP_SCAN of the page tables.  The switch comes after 1/BULK_RATIO of
 * the arena's pages (at least BULK_MIN, at most BULK_PAGES): a transaction
 * never pays much more than twice what the better of the two ways would
 * have cost, and none runs into vm.max_map_count.  In bulk mode a stray
 * write by another thread is not caught: it joins the transaction.
 *
 * With the hot set (hot.c, TMF_TRACK=uffd or auto), a page that faults in
 * a transaction and was written by an earlier one too is made hot
 * instead: the kernel tracks its later writes without a fault, and the
 * end of each transaction adds the hot pages it wrote to the list.  Hot
 * pages stay writable; a bulk transaction lists them with every other
 * copy, and gives them back their writable, tracked state at its end.
 */
#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "internal.h"

/* TMF_TRACK: protect, uffd or auto (the default); -EINVAL otherwise. */
int track_choice(void)
{
    const char *s = getenv("TMF_TRACK");
    if (!s || !*s || strcmp(s, "auto") == 0)
        return TM_TRACK_AUTO;
    if (strcmp(s, "protect") == 0)
        return TM_TRACK_PROTECT;
    if (strcmp(s, "uffd") == 0)
        return TM_TRACK_UFFD;
    os_say("TMF_TRACK must be protect, uffd or auto, not", s, 0);
    return -EINVAL;
}

/* Entries of the dirty list: every page once, and the repeats a
 * transaction can add before it sorts them (its cold pages, fewer than
 * BULK_MIN unless the arena's own count is larger, then hot pages listed
 * when promoted and again by the scans, with and without write-protection). */
static size_t dirty_cap(const tm_store *st)
{
    return st->max / PAGE + BULK_MIN + 3 * HOT_PAGES;
}

int track_alloc(tm_store *st, int track)
{
    struct tm_tracker *t = &st->trk;
    t->pm_fd = -1;
    t->hot.uffd = -1;
    t->want_uffd = track;
    t->dirty = os_alloc(dirty_cap(st) * sizeof *t->dirty);
    t->kept = os_alloc(2 * KEEP_MAX * sizeof *t->kept);
    t->before = os_alloc(SAVED * PAGE);
    return t->dirty && t->kept && t->before ? 0 : -ENOMEM;
}

/* Once the arena is mapped: the hot set, as TMF_TRACK asks.  auto takes
 * it where the kernel gives it; uffd insists. */
int track_start(tm_store *st)
{
    int r;
    if (st->read_only || st->trk.want_uffd == TM_TRACK_PROTECT)
        return 0;
    r = hot_open(st);
    return r < 0 && st->trk.want_uffd == TM_TRACK_UFFD ? r : 0;
}

int track_uses_uffd(const tm_store *st)
{
    return st->trk.hot.uffd >= 0;
}

void track_free(tm_store *st)
{
    struct tm_tracker *t = &st->trk;
    hot_close(st);
    os_free(t->dirty, dirty_cap(st) * sizeof *t->dirty);
    os_free(t->kept, 2 * KEEP_MAX * sizeof *t->kept);
    os_free(t->before, SAVED * PAGE);
    if (t->pm_fd >= 0)
        os_close(t->pm_fd);
    t->dirty = t->kept = NULL;
    t->before = NULL;
    t->pm_fd = -1;
}

/* ---- runs of pages ---- */

static int protect(char *p, size_t len)
{
    return os_mprotect(p, len, PROT_READ);
}

/* Spans of at most this many pages are write-protected in one call (the
 * clean pages inside are read-only already): one VMA merge, not one a run. */
#define PROTECT_SPAN 4096

/* The listed pages: each has a private copy. */
const uint64_t *track_copies(tm_store *st, size_t *n)
{
    *n = st->trk.ndirty;
    return st->trk.dirty;
}

/* Write-protects the runs of the listed pages that are not hot. */
static int protect_cold(tm_store *st, const uint64_t *d, size_t n)
{
    size_t i = 0, j;
    int r = 0;
    while (i < n && r == 0) {
        if (hot_has(st, d[i])) {
            i++;
            continue;
        }
        for (j = i + 1; j < n && d[j] == d[j - 1] + 1 && !hot_has(st, d[j]); j++)
            ;
        r = protect(st->base + d[i] * PAGE, (j - i) * PAGE);
        i = j;
    }
    return r;
}

/* Read-only again (but hot pages): from here on a stray write by another
 * thread faults instead of making a copy that nobody would log or drop. */
int track_protect(tm_store *st)
{
    size_t i, n;
    const uint64_t *d = track_copies(st, &n);
    uint64_t lo = UINT64_MAX, hi = 0;
    if (st->trk.mode != TRACK_PAGES) /* the whole arena, unless settled: protected already */
        return st->trk.mode == TRACK_BULK ? protect(st->base + PAGE, st->mapped - PAGE) : 0;
    if (st->trk.hot.nranges)
        return protect_cold(st, d, n);
    for (i = 0; i < n; i++) {
        lo = d[i] < lo ? d[i] : lo;
        hi = d[i] > hi ? d[i] : hi;
    }
    if (n && hi - lo < PROTECT_SPAN)
        return protect(st->base + lo * PAGE, (hi - lo + 1) * PAGE);
    return pages_for_runs(st, d, n, protect);
}

/* ---- kept copies ---- */

/* Another process committed: every private copy kept is stale. */
void track_drop_copies(tm_store *st)
{
    kept_drop_all(st);
    hot_drop(st);
}

/* The hot pages that the commit's npieces ranges changed, write-protected
 * by its scan, opened again (hot.c), a run of pages at a time, at most
 * DIFF_PAGES - HOT_OPEN of them, so that the next commits still compare
 * their pages.  None after a commit past DIFF_PAGES: it logged every page
 * whole, changed or not, and were they all opened again, every later
 * commit would list them, and log them whole, too. */
static void reopen(tm_store *st, size_t npieces)
{
    uint64_t from = 0, to = 0;
    size_t stay = 0, i, most = DIFF_PAGES - HOT_OPEN;
    for (i = 0; i < npieces && st->trk.ndirty <= DIFF_PAGES; i++) {
        const struct log_piece *p = &st->pieces[i];
        uint64_t a = p->g.off / PAGE, b = (p->g.off + p->g.len + PAGE - 1) / PAGE;
        if (a > to) { /* a new run (ranges come sorted) */
            stay += from < to ? hot_reopen(st, from, to) : 0;
            from = a;
        }
        to = b;
        if (stay + (to - from) >= most) {
            to = from + (most - stay);
            break;
        }
    }
    stay += from < to ? hot_reopen(st, from, to) : 0;
    st->trk.hot.stay = stay;
}

/* A hot set that HOT_IDLE commits in a row did not change costs each
 * transaction two scans for nothing (scattered writes promote a page now
 * and then, and seldom come back to it): it goes back to cold.  So does a
 * large set (half the page cap or more) that fewer than half the commits
 * of a window of HOT_WINDOW changed: a working set too large for the cap,
 * of which the set holds only a part.  Its scans and compared pages cost
 * each transaction about what a hit saves (a hot write fault in place of
 * a SIGSEGV and two mprotect calls: measured on a virtual machine, the
 * hot set broke even at 65% of commits and cost 30% more than none at
 * 16%), so after such a retirement no page is promoted for h->quiet
 * commits, HOT_HOLD at first and doubled at each one (to HOT_HOLD_MAX).
 * Its pages hold the committed bytes; the kept list holds none of them. */
static void retire(tm_store *st, size_t npieces)
{
    struct hot *h = &st->trk.hot;
    size_t i;
    int little = 0;
    for (i = 0; i < npieces; i++) {
        const struct log_piece *p = &st->pieces[i];
        if (hot_has(st, p->g.off / PAGE) || hot_has(st, (p->g.off + p->g.len - 1) / PAGE))
            break;
    }
    h->idle = i < npieces ? 0 : h->idle + 1;
    h->hits += i < npieces;
    if (++h->window == HOT_WINDOW) {
        little = h->npages >= HOT_PAGES / 2 && h->hits < HOT_WINDOW / 2;
        h->window = h->hits = 0;
    }
    if (little)
        h->quiet = hot_longer(h->quiet);
    if (h->idle >= HOT_IDLE || little) /* on failure pages stay writable with the file's bytes (track_drop) */
        (void)hot_demote(st);
}

/* Commit's last step (the pages are read-only already, but hot ones):
 * keep the copies.  Room is made by evicting older kept copies, as few as
 * it needs: several at once would cost one TLB flush instead of one a
 * page, but a flush of the whole TLB costs far more than its own time on
 * a virtual machine with shadow page tables (measured: 45 us more a
 * commit when evicting 8 at once).  A transaction with more new pages
 * than half of KEEP_MAX drops its own copies instead. */
int track_keep(tm_store *st, size_t npieces)
{
    struct tm_tracker *t = &st->trk;
    size_t n, i = 0, j = 0, k = 0, fresh = 0;
    const uint64_t *d;
    uint64_t *out = t->kept + KEEP_MAX;
    t->hot.commits++;
    if (t->hot.rearmed) /* set by this commit's settling (hot_list), cleared at begin */
        reopen(st, npieces);
    d = track_copies(st, &n);
    if (t->mode == TRACK_BULK || t->hot.reset)
        return track_drop(st);
    for (j = 0; j < n; j++)
        fresh += !hot_has(st, d[j]) && !kept_has(st, d[j]);
    if (fresh > KEEP_MAX / 2) {
        kept_discard(st, d, n);
        return 0;
    }
    if (t->nkept + fresh > KEEP_MAX)
        kept_evict(st, d, n, t->nkept + fresh - KEEP_MAX);
    if (t->nkept + fresh > KEEP_MAX) { /* most of the kept ones were written again */
        kept_discard(st, d, n);
        return 0;
    }
    j = 0;
    while (i < t->nkept || j < n) { /* merge the sorted lists, hot pages left out */
        if (j < n && hot_has(st, d[j]))
            j++;
        else if (j == n || (i < t->nkept && t->kept[i] < d[j]))
            out[k++] = t->kept[i++];
        else if (i == t->nkept || d[j] < t->kept[i])
            out[k++] = d[j++];
        else
            out[k++] = d[j++], i++;
    }
    memcpy(t->kept, out, k * sizeof *out);
    t->nkept = k;
    if (t->hot.nranges)
        retire(st, npieces);
    return 0;
}

/* Write-protects the listed pages again and drops every private copy: the
 * transaction's and the kept ones (none in bulk mode: entering it dropped
 * them, or left them among the listed pages).  A failed mprotect (its
 * error is returned) leaves pages writable that no fault or scan would
 * list: the caller poisons the handle, or the next transaction's writes
 * to them would never be logged. */
int track_drop(tm_store *st)
{
    size_t n;
    const uint64_t *d = track_copies(st, &n);
    int r = track_protect(st);
    kept_discard(st, d, n);
    kept_drop_all(st);
    if (st->trk.hot.reset || st->trk.mode == TRACK_BULK)
        (void)hot_demote(st); /* a range it cannot protect stays hot */
    return r;
}

/* ---- the transaction's course ---- */

/* A write transaction starts: no hot page may have been written since the
 * last one ended (open pages may have been, but must hold the committed
 * bytes still).  One that was is a write outside a transaction (§2.6):
 * reported, naming its page, and the process stops, as it would at the
 * write itself on a cold page.  -errno when the scan fails. */
int track_begin(tm_store *st)
{
    struct tm_tracker *t = &st->trk;
    size_t n = 0;
    int r;
    t->ndirty = t->ncold = t->nsaved = 0;
    t->mode = TRACK_PAGES;
    t->hot.rearmed = 0;
    if (!t->hot.nranges)
        return 0;
    if ((r = (st->view ? hot_peek : hot_scan)(st, t->dirty, &n)) < 0)
        return r;
    t->hot.open = n;
    if (st->view)
        n = hot_changed(st, t->dirty, n);
    if (n) {
        os_say("write to persistent page", "outside a write transaction (found by the next one)",
               (uintptr_t)st->base + t->dirty[0] * PAGE);
        abort();
    }
    return 0;
}

/* Dirty pages after which bulk mode is cheaper: see the top of the file. */
static size_t bulk_threshold(const tm_store *st)
{
    size_t n = st->mapped / PAGE / BULK_RATIO;
    return n < BULK_MIN ? BULK_MIN : n > BULK_PAGES ? BULK_PAGES : n;
}

/* From now on the scan, not the faults, lists the dirty pages: it finds
 * every private copy whatever the protection, so even a partly failed
 * mprotect leaves nothing untracked (later faults still unprotect pages). */
static void enter_bulk(tm_store *st)
{
    struct tm_tracker *t = &st->trk;
    if (t->hot.nranges) { /* its written pages join the list (the scan at the end lists them again) */
        size_t n = t->ndirty;
        if (hot_scan(st, t->dirty, &n) == 0)
            t->ndirty = n;
        else
            t->hot.reset = 1;
    }
    kept_drop_clean(st); /* or the scan would log them all */
    (void)os_mprotect(st->base + PAGE, st->mapped - PAGE, PROT_READ | PROT_WRITE);
    t->mode = TRACK_BULK;
}

/* In the fault handler: the transaction's first write to page.  0, or the
 * error of the mprotect that failed (vm.max_map_count).
 *
 * The first SAVED cold pages are copied as they are, which is as the
 * store file holds them (the writer's lock: see diff.c), for the commit
 * to compare with: a page of the view that nobody touched lately costs
 * 6-8 us at its first read on a virtual machine with shadow page tables,
 * the copy of the page just faulted on a fraction of that. */
int track_fault(tm_store *st, uint64_t page)
{
    struct tm_tracker *t = &st->trk;
    int kept = kept_has(st, page), r;
    if (t->hot.uffd >= 0 && t->mode == TRACK_PAGES && kept && hot_promote(st, page) == 1) {
        kept_remove_hot(st);
        t->dirty[t->ndirty++] = page;
        return 0;
    }
    if (t->nsaved < SAVED) {
        memcpy(t->before + t->nsaved * PAGE, st->base + page * PAGE, PAGE);
        t->saved[t->nsaved++] = page;
    }
    if ((r = os_mprotect(st->base + page * PAGE, PAGE, PROT_READ | PROT_WRITE)) < 0)
        return r;
    if (!kept) /* make the copy now: a system call costs less than the write's fault */
        (void)os_madvise(st->base + page * PAGE, PAGE, MADV_POPULATE_WRITE); /* a hint */
    t->dirty[t->ndirty++] = page;
    if (++t->ncold >= bulk_threshold(st) && t->mode == TRACK_PAGES) /* hot pages cost no fault */
        enter_bulk(st);
    return 0;
}

/* Page as the transaction found it, when its first write saved it; NULL
 * otherwise. */
const char *track_before(const tm_store *st, uint64_t page)
{
    const struct tm_tracker *t = &st->trk;
    for (size_t i = 0; i < t->nsaved; i++)
        if (t->saved[i] == page)
            return t->before + i * PAGE;
    return NULL;
}

/* The protection new arena pages get when the transaction grows it. */
int track_grow_prot(const tm_store *st)
{
    return st->trk.mode == TRACK_BULK ? PROT_READ | PROT_WRITE : PROT_READ;
}

/* Sorts pages[0..n) and drops repeats; returns the new count. */
static size_t unique(uint64_t *v, size_t n)
{
    size_t i, k = 0;
    sort_pages(v, n);
    for (i = 0; i < n; i++)
        if (k == 0 || v[i] != v[k - 1])
            v[k++] = v[i];
    return k;
}

/* At the end of a transaction in per-page mode: the hot pages written
 * since they were last write-protected join the list at t->dirty[*n].
 * They stay open (writable: see hot.c), unless there are HOT_OPEN of them
 * or more beyond those opened again last time, or the set is to be reset:
 * then a second scan write-protects them, listing any page written in
 * between too (and the commit opens again those it changed). */
static int hot_list(tm_store *st, size_t *n)
{
    struct tm_tracker *t = &st->trk;
    size_t before = *n;
    int r;
    if (!t->hot.nranges)
        return 0;
    if (st->view && (r = hot_peek(st, t->dirty, n)) < 0)
        return r;
    if (st->view && *n - before < t->hot.stay + HOT_OPEN && !t->hot.reset) {
        t->hot.open = *n - before;
        return 0;
    }
    t->hot.rearmed = st->view && !t->hot.reset;
    return hot_scan(st, t->dirty, n);
}

/* The end of the transaction: the sorted list of dirty pages, which are
 * read-only again.  In bulk mode the whole arena is write-protected first,
 * then the copies are listed. */
int track_settle(tm_store *st)
{
    struct tm_tracker *t = &st->trk;
    int r;
    /* The fault handler changed the list behind the compiler's back. */
    atomic_signal_fence(memory_order_seq_cst);
    if (t->mode == TRACK_PAGES) {
        size_t n = t->ndirty;
        if ((r = hot_list(st, &n)) < 0)
            return r;
        t->ndirty = unique(t->dirty, n);
        return track_protect(st);
    }
    if (t->mode == TRACK_BULK) {
        size_t n = 0;
        if ((r = protect(st->base + PAGE, st->mapped - PAGE)) < 0 || (r = pagemap_copies(st, t->dirty, &n)) < 0)
            return r;
        t->ndirty = n;
        t->mode = TRACK_SETTLED;
        if (t->hot.nranges && !t->hot.reset && (r = hot_resume(st, t->kept + KEEP_MAX)) < 0)
            t->hot.reset = 1; /* read-only, written or not: demoted at the end */
    }
    return 0;
}


/* How many pages the open transaction has dirtied so far (in bulk mode,
 * as its end will find them); a negative errno when the scan fails. */
long track_count(tm_store *st)
{
    struct tm_tracker *t = &st->trk;
    size_t n = 0;
    int r;
    if (t->mode == TRACK_BULK) {
        if ((r = pagemap_copies(st, t->dirty, &n)) < 0)
            return r;
        t->ndirty = n;
    } else if (t->mode == TRACK_PAGES && t->hot.nranges) { /* the hot pages changed so far join the list */
        n = t->ndirty;
        if ((r = hot_peek(st, t->dirty, &n)) < 0)
            return r;
        n = t->ndirty + hot_changed(st, t->dirty + t->ndirty, n - t->ndirty);
        t->ndirty = unique(t->dirty, n);
    }
    return (long)t->ndirty;
}

/* Abort: every copy of the transaction goes, listed or not (the hot pages
 * it wrote are listed by settling first). */
int track_rollback(tm_store *st)
{
    int hot = st->trk.mode == TRACK_PAGES && st->trk.hot.nranges, r;
    if ((st->trk.mode == TRACK_BULK || hot) && track_settle(st) < 0) {
        /* No list of the copies: drop them all.  Should the protection
         * fail as well, the arena stays writable but holds the file's
         * bytes (the caller poisons the handle, as track_drop's). */
        (void)os_madvise(st->base + PAGE, st->mapped - PAGE, MADV_DONTNEED); /* our own copies */
        r = protect(st->base + PAGE, st->mapped - PAGE);
        kept_drop_all(st);
        st->trk.hot.reset = 1;
        (void)hot_demote(st);
        return r;
    }
    return track_drop(st);
}

/* In a forked child: the parent's transaction made pages writable, and
 * stray writes must fault here too.  There is no one to tell of a failure
 * here; the child's copies die with it and never reach the file.  The
 * userfaultfd is the parent's: never to be used here (the child's
 * mappings lost their registration with the fork). */
void track_fork_child(tm_store *st)
{
    struct hot *h = &st->trk.hot;
    if (st->tx_tid || h->nranges)
        (void)protect(st->base + PAGE, st->mapped - PAGE);
    if (h->uffd >= 0)
        os_close(h->uffd);
    h->uffd = -1;
    h->nranges = h->npages = 0;
}

/* A revived handle's new mapping has no private copies. */
void track_forget(tm_store *st)
{
    struct tm_tracker *t = &st->trk;
    t->ndirty = 0;
    t->nkept = 0;
    t->mode = TRACK_PAGES;
    if (t->pm_fd >= 0) /* it shows the parent's pages */
        os_close(t->pm_fd);
    t->pm_fd = -1;
}
