/*
 * hot.c — the hot set: pages that transactions keep writing, tracked by the
 * kernel instead of by faults (userfaultfd in asynchronous write-protect
 * mode, Linux 6.7; TMF_TRACK=uffd, or auto where the kernel allows).
 *
 * A hot page is writable and registered with the store's userfaultfd: a
 * write to it takes no signal; the kernel resolves the fault itself and
 * marks the page written.  One PAGEMAP_SCAN over the hot ranges then lists
 * the written pages and write-protects them again (PM_SCAN_WP_MATCHING),
 * at the cost of each registered mapping, not of the arena's size.  A page
 * becomes hot on its first write in a transaction when an earlier
 * transaction wrote it too (it is among the kept copies, track.c): pages
 * written once stay cold, so scattered writes never grow the hot set.
 *
 * The set is capped by ranges (each a mapping the scan pays for, and a
 * mapping of vm.max_map_count), HOT_RANGES, and by pages (each a possible
 * private copy), HOT_PAGES.  A page near a range, or any page once the
 * ranges are used up, joins the nearest range with the gap between (a
 * working set scattered over a few hundred pages becomes one range).  A
 * transaction that meets the page cap with a page worth promoting, or
 * the last of HOT_REFUSED pages too far from every range, marks the set
 * for a reset: its commit demotes every hot page (unregistered, read-only,
 * copy dropped), and the next working set forms; but a set that fills
 * again soon after a reset is kept longer each time (may_reset).  A set
 * that HOT_IDLE commits in a row left unchanged is demoted too (track.c):
 * scattered writes promote a page now and then, and the two scans a
 * transaction makes of an idle set cost it more than the pages' cold
 * faults would.  So is a large set that few commits change, and then no
 * page is promoted for a while (track.c, retire).
 *
 * A hot page stays writable outside transactions.  A stray write to it
 * lands in the private copy, never in the file, and the scan at the next
 * write transaction's begin finds it and reports it (track_begin).
 *
 * Open pages.  Write-protecting a written page again costs a TLB flush,
 * and its next write a fault: on a virtual machine, 10-20 us each, more
 * than a small transaction's own work.  So a commit leaves the hot pages
 * it wrote writable (open) while there are fewer than HOT_OPEN of them:
 * every scan lists them, the commit's diff finds what changed in them,
 * and the next begin compares them with the committed bytes (a stray
 * write shows as a difference).  The commit that finds HOT_OPEN open
 * pages write-protects them all, with one flush, and opens again those it
 * changed itself (lifting a write protection needs no flush): a page that
 * every transaction writes stays open, while pages written once in a
 * while are protected again.  The next protection waits for HOT_OPEN
 * open pages beyond those.  At most DIFF_PAGES - HOT_OPEN pages are
 * opened again, and none by a commit that logged its pages whole without
 * comparing them (past DIFF_PAGES): open pages must stay few enough for
 * the next commits to compare.
 *
 * Every function runs on the writer's thread, or in the fault handler on
 * it, and makes no allocation.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "internal.h"

/* userfaultfd and PAGEMAP_SCAN, declared here for older headers. */
#define UFFD_API_ 0xAA
#define UFFD_USER_MODE_ONLY_ 1
#define UFFD_FEATURE_WP_UNPOPULATED_ (1ull << 13)
#define UFFD_FEATURE_WP_ASYNC_ (1ull << 15)
#define UFFDIO_REGISTER_MODE_WP_ (1ull << 1)
struct uffd_api_ {
    uint64_t api, features, ioctls;
};
struct uffd_range_ {
    uint64_t start, len;
};
struct uffd_register_ {
    struct uffd_range_ range;
    uint64_t mode, ioctls;
};
#define UFFDIO_API_ _IOWR(0xAA, 0x3F, struct uffd_api_)
#define UFFDIO_REGISTER_ _IOWR(0xAA, 0x00, struct uffd_register_)
#define UFFDIO_UNREGISTER_ _IOR(0xAA, 0x01, struct uffd_range_)
struct uffd_wp_ {
    struct uffd_range_ range;
    uint64_t mode;
};
#define UFFDIO_WRITEPROTECT_ _IOWR(0xAA, 0x06, struct uffd_wp_)
#define UFFDIO_WRITEPROTECT_MODE_DONTWAKE_ (1ull << 1)

/* The kernel's answer, the first time a store asks: 0 or why not. */
static int probe(int uffd)
{
    struct uffd_api_ api = {UFFD_API_, UFFD_FEATURE_WP_ASYNC_ | UFFD_FEATURE_WP_UNPOPULATED_, 0};
    int r = os_ioctl(uffd, UFFDIO_API_, &api);
    if (r < 0)
        return r == -EINVAL ? -ENOSYS : r; /* features this kernel lacks */
    return 0;
}

/* After the arena is mapped: a userfaultfd, and PAGEMAP_SCAN's support
 * of it (probed on page 1, which is registered to nobody). */
int hot_open(tm_store *st)
{
    struct hot *h = &st->trk.hot;
    uint64_t none[1];
    size_t n = 0;
    int r;
    h->uffd = os_userfaultfd(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY_);
    if (h->uffd < 0)
        return h->uffd;
    if ((r = probe(h->uffd)) < 0 || (r = pagemap_open(st)) < 0 || (r = pagemap_written(st, 1, 2, none, &n, 1)) < 0) {
        hot_close(st);
        return r == -ENOTTY || r == -EINVAL ? -ENOSYS : r;
    }
    h->nranges = h->npages = h->refused = h->idle = h->commits = h->hold = h->window = h->hits = h->quiet = 0;
    h->reset = 0;
    return 0;
}

void hot_close(tm_store *st)
{
    struct hot *h = &st->trk.hot;
    if (h->uffd >= 0)
        os_close(h->uffd);
    h->uffd = -1;
    h->nranges = h->npages = h->refused = 0;
}

/* Whether page is hot: a binary search of the ranges. */
int hot_has(const tm_store *st, uint64_t page)
{
    const struct hot *h = &st->trk.hot;
    size_t lo = 0, hi = h->nranges;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (page < h->start[mid])
            hi = mid;
        else if (page >= h->end[mid])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

/* Pages of a gap that a promotion bridges rather than start a range: the
 * scan walks a registered page for a few nanoseconds, but pays for each
 * mapping: 0.1-0.2 us to read it, and 15-20 us (measured on a virtual
 * machine) to write-protect pages again in it, a TLB flush each.  So a
 * page joins a range within HOT_BRIDGE pages, within the range's own
 * length, or within a quarter of the hot pages (within), and two ranges
 * that close join (join_gaps): a working set spread over a heap grows
 * into one mapping, while pages written now and then far apart, each a
 * range of one page in a small set, bridge little.  Once the ranges are
 * used up, a page joins the nearest one across at most HOT_BRIDGE_FULL
 * pages, its length or that quarter; farther pages stay cold, and after
 * HOT_REFUSED of them the set resets at commit (scattered writes do not
 * make a working set, but a new working set must get in). */
#define HOT_BRIDGE 16
#define HOT_BRIDGE_FULL 64
#define HOT_REFUSED 64

/* Whether a gap of gap pages next to range i may be bridged: within
 * bridge pages, the range's length or a quarter of the hot pages. */
static int within(const struct hot *h, size_t i, uint64_t gap, uint64_t bridge)
{
    return gap <= bridge || gap <= h->end[i] - h->start[i] || gap <= h->npages / 4;
}

/* The range page should join: its nearest, within(HOT_BRIDGE), or, when
 * no range is free, within(HOT_BRIDGE_FULL); nranges when it starts its
 * own, HOT_RANGES when it may not join.  *from, *to: the pages to
 * register, page and the gap up to that range. */
static size_t where(const struct hot *h, uint64_t page, uint64_t *from, uint64_t *to)
{
    size_t i, best = h->nranges;
    uint64_t gap = UINT64_MAX, g;
    for (i = 0; i < h->nranges; i++) {
        g = page < h->start[i] ? h->start[i] - page : page - h->end[i] + 1;
        if (g < gap)
            gap = g, best = i;
    }
    *from = page, *to = page + 1;
    if (best == h->nranges)
        return h->nranges;
    if (!within(h, best, gap, HOT_BRIDGE) && h->nranges < HOT_RANGES)
        return h->nranges;
    if (!within(h, best, gap, HOT_BRIDGE_FULL))
        return HOT_RANGES;
    if (page < h->start[best])
        *to = h->start[best];
    else
        *from = h->end[best];
    return best;
}

/* Adds [from, to) to range i (adjacent to it), or as a range of its own
 * when i == nranges (there is room), then joins ranges that now touch. */
static void add(struct hot *h, size_t i, uint64_t from, uint64_t to)
{
    size_t j;
    if (i < h->nranges) {
        h->start[i] = from < h->start[i] ? from : h->start[i];
        h->end[i] = to > h->end[i] ? to : h->end[i];
    } else {
        for (i = 0; i < h->nranges && h->start[i] < from; i++)
            ;
        memmove(&h->start[i + 1], &h->start[i], (h->nranges - i) * sizeof *h->start);
        memmove(&h->end[i + 1], &h->end[i], (h->nranges - i) * sizeof *h->end);
        h->start[i] = from, h->end[i] = to;
        h->nranges++;
    }
    for (j = 0; j + 1 < h->nranges;) {
        if (h->end[j] >= h->start[j + 1]) {
            h->end[j] = h->end[j + 1] > h->end[j] ? h->end[j + 1] : h->end[j];
            memmove(&h->start[j + 1], &h->start[j + 2], (h->nranges - j - 2) * sizeof *h->start);
            memmove(&h->end[j + 1], &h->end[j + 2], (h->nranges - j - 2) * sizeof *h->end);
            h->nranges--;
        } else {
            j++;
        }
    }
    h->npages += to - from;
}

/* A set that is full, or refuses page after page, resets at commit, so
 * that a new working set gets in: unless it reset less than h->hold
 * commits ago, and each reset doubles that hold (HOT_HOLD to
 * HOT_HOLD_MAX).  A working set larger than the cap would otherwise fill
 * the set, reset it and fill it again, paying a registration for every
 * page of each round and a demotion at its end: a random record of
 * 100,000 (1,563 pages) cost 79 us a transaction that way, against 43
 * with no hot set at all. */
static void may_reset(struct hot *h)
{
    if (h->reset || h->commits < h->hold)
        return;
    h->reset = 1;
    h->hold = hot_longer(h->hold);
}

/* Registers [from, to) and makes it writable: 0, or a negative errno with
 * the pages as they were (an unregistered read-only page faults as any
 * cold page). */
static int enroll(tm_store *st, uint64_t from, uint64_t to)
{
    struct uffd_register_ reg;
    int r;
    memset(&reg, 0, sizeof reg);
    reg.range.start = (uintptr_t)st->base + from * PAGE;
    reg.range.len = (to - from) * PAGE;
    reg.mode = UFFDIO_REGISTER_MODE_WP_;
    if ((r = os_ioctl(st->trk.hot.uffd, UFFDIO_REGISTER_, &reg)) < 0)
        return r;
    if ((r = os_mprotect(st->base + from * PAGE, (to - from) * PAGE, PROT_READ | PROT_WRITE)) < 0) {
        /* It may have made some of the range's mappings writable before
         * failing: a writable page that is neither hot nor cold would
         * take writes no commit lists. */
        (void)os_mprotect(st->base + from * PAGE, (to - from) * PAGE, PROT_READ);
        (void)os_ioctl(st->trk.hot.uffd, UFFDIO_UNREGISTER_, &reg.range);
    }
    return r;
}

/* Ranges whose gap a promotion would bridge (where) become one, gap and
 * all, as long as the page cap allows: a working set that grew in pieces
 * ends in one mapping.  A gap that cannot be registered stays a gap. */
static void join_gaps(tm_store *st)
{
    struct hot *h = &st->trk.hot;
    size_t j = 0;
    while (j + 1 < h->nranges) {
        uint64_t gap = h->start[j + 1] - h->end[j];
        if ((within(h, j, gap, HOT_BRIDGE) || within(h, j + 1, gap, HOT_BRIDGE)) && h->npages + gap <= HOT_PAGES &&
            enroll(st, h->end[j], h->start[j + 1]) == 0)
            add(h, j, h->end[j], h->start[j + 1]); /* j and j + 1 are one now */
        else
            j++;
    }
}

/* In the fault handler: makes page hot, writable and registered, with the
 * gap to its nearest range when it is small or no range is left (the
 * gap's pages are hot too: their writes are tracked, and the commit's
 * scan write-protects them), then joins ranges close enough.  1 when
 * done, 0 when the set is full or resting (the caller tracks the page by
 * its fault; a full set may reset at commit), or a negative errno.  The caller takes the
 * pages made hot out of the kept list (kept_remove_hot). */
int hot_promote(tm_store *st, uint64_t page)
{
    struct hot *h = &st->trk.hot;
    uint64_t from, to;
    size_t i;
    int r;
    if (h->commits < h->quiet) /* resting after a retirement for little use (track.c) */
        return 0;
    if ((i = where(h, page, &from, &to)) == HOT_RANGES) {
        if (++h->refused >= HOT_REFUSED)
            may_reset(h);
        return 0;
    }
    if (h->npages + (to - from) > HOT_PAGES) {
        may_reset(h);
        return 0;
    }
    if ((r = enroll(st, from, to)) < 0)
        return r;
    add(h, i, from, to);
    join_gaps(st);
    return 1;
}

/* Appends the hot pages written since the last scan to out[*n], in
 * ascending order, and write-protects them again. */
int hot_scan(tm_store *st, uint64_t *out, size_t *n)
{
    struct hot *h = &st->trk.hot;
    if (h->nranges == 0)
        return 0;
    h->open = 0;
    return pagemap_written(st, h->start[0], h->end[h->nranges - 1], out, n, 1);
}

/* The same, but the pages stay writable: they are open. */
int hot_peek(tm_store *st, uint64_t *out, size_t *n)
{
    const struct hot *h = &st->trk.hot;
    if (h->nranges == 0)
        return 0;
    return pagemap_written(st, h->start[0], h->end[h->nranges - 1], out, n, 0);
}

/* The hot pages of [from, to) opened again (see the top of the file);
 * returns how many.  On failure a page stays protected, and its next
 * write faults as any hot page's does. */
size_t hot_reopen(tm_store *st, uint64_t from, uint64_t to)
{
    const struct hot *h = &st->trk.hot;
    size_t opened = 0;
    for (size_t i = 0; i < h->nranges && h->start[i] < to; i++) {
        uint64_t a = from > h->start[i] ? from : h->start[i], b = to < h->end[i] ? to : h->end[i];
        struct uffd_wp_ wp = {{(uintptr_t)st->base + a * PAGE, (b - a) * PAGE}, UFFDIO_WRITEPROTECT_MODE_DONTWAKE_};
        if (a < b && os_ioctl(h->uffd, UFFDIO_WRITEPROTECT_, &wp) == 0)
            opened += b - a;
    }
    return opened;
}

/* Keeps those of pages[0..n) whose bytes differ from the committed ones
 * (the store file's, through the view); returns how many. */
size_t hot_changed(const tm_store *st, uint64_t *pages, size_t n)
{
    size_t i, k = 0;
    for (i = 0; i < n; i++)
        if (memcmp(st->base + pages[i] * PAGE, st->view + pages[i] * PAGE, PAGE) != 0)
            pages[k++] = pages[i];
    return k;
}

/* At the end of a bulk transaction, which made the whole arena read-only
 * again: the hot pages write-protected for the kernel (those written in
 * bulk mode are listed with every copy; scratch holds HOT_PAGES entries)
 * and writable again. */
int hot_resume(tm_store *st, uint64_t *scratch)
{
    struct hot *h = &st->trk.hot;
    size_t n = 0;
    int r;
    if ((r = hot_scan(st, scratch, &n)) < 0)
        return r;
    for (size_t i = 0; i < h->nranges; i++)
        if ((r = os_mprotect(st->base + h->start[i] * PAGE, (h->end[i] - h->start[i]) * PAGE,
                             PROT_READ | PROT_WRITE)) < 0)
            return r;
    return 0;
}

/* Another process committed: the hot copies are stale.  Dropped, the pages
 * stay hot: the next write copies the file's page again, tracked. */
void hot_drop(tm_store *st)
{
    struct hot *h = &st->trk.hot;
    for (size_t i = 0; i < h->nranges; i++) /* dropping our own copies cannot fail */
        (void)os_madvise(st->base + h->start[i] * PAGE, (h->end[i] - h->start[i]) * PAGE, MADV_DONTNEED);
}

/* Every hot page back to cold: read-only, unregistered, copy dropped (the
 * caller has listed the written ones first).  A range that cannot be made
 * read-only stays hot, registered and scanned: writable pages that no scan
 * covers would take writes no commit lists.  (One left registered when
 * read-only is harmless: its writes fault as a cold page's.) */
int hot_demote(tm_store *st)
{
    struct hot *h = &st->trk.hot;
    size_t i, k = 0;
    int r = 0, e;
    for (i = 0; i < h->nranges; i++) {
        struct uffd_range_ g = {(uintptr_t)st->base + h->start[i] * PAGE, (h->end[i] - h->start[i]) * PAGE};
        if ((e = os_mprotect((void *)(uintptr_t)g.start, g.len, PROT_READ)) < 0) {
            r = r ? r : e;
            h->start[k] = h->start[i], h->end[k++] = h->end[i];
            continue;
        }
        (void)os_ioctl(h->uffd, UFFDIO_UNREGISTER_, &g);
        (void)os_madvise((void *)(uintptr_t)g.start, g.len, MADV_DONTNEED);
    }
    h->nranges = k;
    for (h->npages = 0, i = 0; i < k; i++)
        h->npages += h->end[i] - h->start[i];
    h->refused = h->stay = h->open = h->idle = h->commits = h->window = h->hits = 0;
    /* the hold and the quiet stay */
    h->reset = 0;
    return r;
}
