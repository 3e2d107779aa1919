/*
 * pagemap.c — what the page tables say about the arena: which pages have a
 * private copy (the tracker's bulk mode), and which hot pages were written
 * since the last look (the hot set).  Both are one PAGEMAP_SCAN (Linux
 * 6.7) per walk; before 6.7, /proc/self/pagemap, 8 bytes a page, finds the
 * private copies (the hot set needs 6.7 anyway).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>

#include "internal.h"

/* PAGEMAP_SCAN, declared here for older headers. */
#define PM_IOC_SCAN _IOWR('f', 16, struct pm_scan)
#define PM_IS_WPALLOWED (1u << 0)
#define PM_IS_WRITTEN (1u << 1)
#define PM_IS_FILE (1u << 2)
#define PM_IS_PRESENT (1u << 3)
#define PM_IS_SWAPPED (1u << 4)
#define PM_SCAN_WP_MATCHING (1u << 0)
struct pm_region {
    uint64_t start, end, categories;
};
struct pm_scan {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PM_VEC 128

int pagemap_open(tm_store *st)
{
    if (st->trk.pm_fd < 0)
        st->trk.pm_fd = os_open("/proc/self/pagemap", O_RDONLY, 0);
    return st->trk.pm_fd < 0 ? st->trk.pm_fd : 0;
}

/* One walk of [from, to) with the filter in a: appends the pages of every
 * matching run to out[*n].  -ENOTTY (or -EINVAL) on kernels without it. */
static int walk(tm_store *st, struct pm_scan *a, uintptr_t from, uintptr_t to, uint64_t *out, size_t *n)
{
    struct pm_region vec[PM_VEC];
    while (from < to) {
        long k, i;
        a->size = sizeof *a;
        a->start = from;
        a->end = to;
        a->vec = (uintptr_t)vec;
        a->vec_len = PM_VEC;
        if ((k = os_ioctl(st->trk.pm_fd, PM_IOC_SCAN, a)) < 0)
            return (int)k;
        for (i = 0; i < k; i++)
            for (uintptr_t p = vec[i].start; p < vec[i].end; p += PAGE)
                out[(*n)++] = (p - (uintptr_t)st->base) / PAGE;
        if (a->walk_end <= from)
            return -EIO;
        from = a->walk_end;
    }
    return 0;
}

/* The same from /proc/self/pagemap's entries, on kernels before 6.7. */
#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)
#define PM_FILE (1ull << 61)
#define PM_BATCH 65536

static int copies_read(tm_store *st, uint64_t first, uint64_t npages, uint64_t *out, size_t *n)
{
    uint64_t *pm = os_alloc(PM_BATCH * sizeof *pm), p;
    int r = 0;
    if (!pm)
        return -ENOMEM;
    for (p = first; p < npages && r == 0; p += PM_BATCH) {
        uint64_t k = npages - p < PM_BATCH ? npages - p : PM_BATCH, i;
        uint64_t vpn = ((uintptr_t)st->base >> PAGE_SHIFT) + p;
        if ((r = os_pread_all(st->trk.pm_fd, pm, k * 8, (off_t)(vpn * 8))) < 0)
            break;
        for (i = 0; i < k; i++)
            if ((pm[i] & (PM_PRESENT | PM_SWAPPED)) && !(pm[i] & PM_FILE))
                out[(*n)++] = p + i;
    }
    os_free(pm, PM_BATCH * sizeof *pm);
    return r;
}

/* Every page of the arena (past the header) that has a private copy,
 * present or swapped, in ascending order, into out[0..*n). */
int pagemap_copies(tm_store *st, uint64_t *out, size_t *n)
{
    static atomic_int no_ioctl;
    struct pm_scan a;
    int r;
    if ((r = pagemap_open(st)) < 0)
        return r;
    *n = 0;
    if (!no_ioctl) {
        memset(&a, 0, sizeof a);
        a.category_inverted = PM_IS_FILE;
        a.category_mask = PM_IS_FILE;
        a.category_anyof_mask = PM_IS_PRESENT | PM_IS_SWAPPED;
        a.return_mask = PM_IS_PRESENT | PM_IS_SWAPPED;
        r = walk(st, &a, (uintptr_t)st->base + PAGE, (uintptr_t)st->base + st->mapped, out, n);
        if (r != -ENOTTY && r != -EINVAL)
            return r;
        no_ioctl = 1;
        *n = 0;
    }
    return copies_read(st, 1, st->mapped / PAGE, out, n);
}

/* Appends to out[*n] the pages of [from, to) (page numbers) that are
 * registered for write-protection and were written since they were last
 * write-protected, in ascending order; with wp, write-protects them again
 * (which costs a TLB flush).  Unregistered mappings inside cost one step
 * each. */
int pagemap_written(tm_store *st, uint64_t from, uint64_t to, uint64_t *out, size_t *n, int wp)
{
    struct pm_scan a;
    memset(&a, 0, sizeof a);
    a.flags = wp ? PM_SCAN_WP_MATCHING : 0;
    a.category_mask = PM_IS_WRITTEN | PM_IS_WPALLOWED;
    a.return_mask = PM_IS_WRITTEN;
    return walk(st, &a, (uintptr_t)st->base + from * PAGE, (uintptr_t)st->base + to * PAGE, out, n);
}
