/*
 * heap_check.c — heap statistics and the checker.
 *
 * The checker reads (never writes) the whole heap and proves the invariants
 * listed in heap.h:
 *   - walking the blocks by their sizes from HEAP_START reaches the fence,
 *     which ends the arena exactly (H1), every header's check is valid;
 *   - B_PINUSE and the footers agree, no two free blocks touch (H2);
 *   - the free tree is ordered, heap-ordered by priority (heap_prio, or
 *     heap_prio_v1 for a heap of format 2); it and the bins together hold
 *     exactly the free blocks: same count, and the same sum of a hash of
 *     their addresses (H3); each bin holds free blocks of its sizes only,
 *     doubly linked, and the bin map names exactly the bins in use (H10);
 *   - each span is aligned, its metadata matches its class, its free count
 *     matches its bitmap; each partial list holds exactly the spans of its
 *     class with room, again by count and address hash (H4);
 *   - each recent list holds nrecent tagged, distinct, in-use slots of its
 *     class (H7);
 *   - each big list holds nbig tagged, distinct, in-use blocks of its
 *     class, and big_bytes is the sum of their sizes (H8);
 *   - the span map is an in-use block whose entries name exactly the live
 *     spans, with their classes, and every free slot below an entry's
 *     high-water mark carries its tag (H9);
 *   - the counters of struct heap_state equal the sums over the blocks (H6).
 * Every pointer is range-checked before it is followed, so a corrupt heap
 * yields TM_ECORRUPT and a message naming the first problem, not a crash.
 */
#include <errno.h>
#include <string.h>

#include "heap.h"
#include "inspect.h"

struct walk {
    const tm_store *st;
    const struct heap_state *h;
    uintptr_t lo, hi;  /* heap bounds */
    uint64_t nfree, free_bytes, free_hash, live_large, live_small, span_slots, nspans;
    uint64_t part_n[NCLASS], part_hash[NCLASS];
    uint64_t tree_n, tree_hash;
    uint64_t smap_spans;    /* spans found in the span map (H9) */
    const fnode *tree_prev;
    char *msg;
    size_t len;
};

/* Writes "what 0x<addr>" into the caller's buffer; returns TM_ECORRUPT. */
static int bad(struct walk *w, const char *what, const void *addr)
{
    size_t n = 0, i;
    uintptr_t a = (uintptr_t)addr;
    if (!w->msg || !w->len)
        return -TM_ECORRUPT;
    for (i = 0; what[i] && n + 1 < w->len; i++)
        w->msg[n++] = what[i];
    if (addr && n + 20 < w->len) {
        w->msg[n++] = ' ', w->msg[n++] = '0', w->msg[n++] = 'x';
        for (i = 0; i < 16; i++)
            w->msg[n++] = "0123456789abcdef"[(a >> (60 - 4 * i)) & 15];
    }
    w->msg[n] = 0;
    return -TM_ECORRUPT;
}

/* Whether [p, p+len) lies in the walked heap, p 16-aligned (p may be wild:
 * compared as an integer). */
static int walk_holds(const struct walk *w, const void *p, uint64_t len)
{
    uintptr_t a = (uintptr_t)p;
    return a >= w->lo && a % QUANTUM == 0 && a < w->hi && len <= w->hi - a;
}

/* H9 for live span s: its map entry, and the tag of every free slot below
 * the entry's high-water mark. */
static int check_smap(struct walk *w, const span *s)
{
    uint64_t i = ((uintptr_t)s >> SPAN_SHIFT) - ((uintptr_t)w->st->base >> SPAN_SHIFT);
    uint32_t e, cap;
    if (i >= w->h->smap_n)
        return bad(w, "span missing from the span map at", s);
    e = w->h->smap[i];
    cap = e >> SM_CAP_SHIFT;
    if ((e & ~SM_CAP_MASK) != (s->cls | SM_SPAN) || cap > s->nslots)
        return bad(w, "span map entry disagrees with its span at", s);
    for (uint32_t k = 0; k < cap; k++) {
        const uint64_t *q = (const uint64_t *)((const char *)s + SPAN_HDR + (size_t)k * s->slot);
        if ((s->bitmap[k / 64] >> (k % 64) & 1) && q[1] != heap_recent_tag(w->h, q, s->cls))
            return bad(w, "free slot without its tag below the span map's mark:", q);
    }
    w->smap_spans++;
    return 0;
}

/* H9, before anything reads the span map: it is an in-use block of the
 * heap large enough for its entries. */
static int check_smap_block(struct walk *w)
{
    const blk *b;
    if (!w->h->smap)
        return w->h->smap_n ? bad(w, "span map missing", NULL) : 0;
    b = (const blk *)((uintptr_t)w->h->smap - BLK_HDR); /* not pointer arithmetic: smap may be wild */
    if (!walk_holds(w, b, BLK_HDR) || !blk_valid(w->h, b) || (b->head & (B_INUSE | B_SPAN | B_FENCE)) != B_INUSE ||
        !walk_holds(w, b, blk_size(b)) || w->h->smap_n > (blk_size(b) - BLK_HDR) / sizeof *w->h->smap)
        return bad(w, "span map is not an in-use block of its size at", w->h->smap);
    return 0;
}

/* H9, after the walk: the map's entries name exactly the live spans
 * (checked span by span, and counted here). */
static int check_smap_count(struct walk *w)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < w->h->smap_n; i++)
        n += w->h->smap[i] != 0;
    if (n != w->smap_spans)
        return bad(w, "span map names spans that do not exist", NULL);
    return 0;
}

static int check_span(struct walk *w, const span *s)
{
    unsigned i, pop = 0, n;
    int r;
    if ((uintptr_t)s % SPAN_SIZE || blk_size(s) != SPAN_SIZE)
        return bad(w, "span not aligned or not 64 KiB at", s);
    if (s->self != ((uintptr_t)s ^ w->h->key) || s->cls >= NCLASS)
        return bad(w, "bad span header at", s);
    n = (unsigned)((SPAN_SIZE - SPAN_HDR) / heap_class_size(s->cls));
    if (s->slot != heap_class_size(s->cls) || s->nslots != n || s->nfree > n ||
        s->recip != (uint32_t)(((1ull << 32) + s->slot - 1) / s->slot))
        return bad(w, "span metadata does not match its class at", s);
    for (i = 0; i < 64; i++) {
        uint64_t valid = n >= (i + 1) * 64 ? ~0ull : n > i * 64 ? (1ull << (n - i * 64)) - 1 : 0;
        if (s->bitmap[i] & ~valid)
            return bad(w, "span bitmap marks slots past its end at", s);
        if (!!s->bitmap[i] != !!(s->summary & (1ull << i)))
            return bad(w, "span summary disagrees with its bitmap at", s);
        pop += (unsigned)__builtin_popcountll(s->bitmap[i]);
    }
    if (pop != s->nfree)
        return bad(w, "span free count disagrees with its bitmap at", s);
    if (heap_smapped(w->h) && (r = check_smap(w, s)) != 0)
        return r;
    w->nspans++;
    w->span_slots += (uint64_t)n * s->slot;
    w->live_small += (uint64_t)(n - s->nfree) * s->slot;
    if (s->nfree) {
        w->part_n[s->cls]++;
        w->part_hash[s->cls] += heap_prio(s);
    }
    return 0;
}

/* H1, H2 and the per-block facts. */
static int walk_blocks(struct walk *w)
{
    const blk *b = (const blk *)w->lo;
    int prev_free = 0, r;
    uint64_t prev_size = 0;
    uintptr_t told = w->lo; /* progress reported up to here */
    for (;;) {
        uint64_t size, fl;
        if (tm__progress && (uintptr_t)b - told >= ((uintptr_t)64 << 20)) {
            tm__progress((uintptr_t)b - told);
            told = (uintptr_t)b;
        }
        if (!walk_holds(w, b, BLK_HDR))
            return bad(w, "block runs past the end of the heap at", b);
        if (!blk_valid(w->h, b))
            return bad(w, "bad block header at", b);
        size = blk_size(b), fl = blk_flags(b);
        if (size < QUANTUM || !walk_holds(w, b, size))
            return bad(w, "bad block size at", b);
        if (!!(fl & B_PINUSE) == prev_free)
            return bad(w, "B_PINUSE disagrees with the previous block at", b);
        if (prev_free && b->prev_foot != prev_size)
            return bad(w, "footer of a free block disagrees with its size at", b);
        if (fl & B_FENCE) {
            if (size != FENCE_SIZE || !(fl & B_INUSE) || (uintptr_t)b + size != w->hi)
                return bad(w, "bad fence at", b);
            return 0;
        }
        if (!(fl & B_INUSE)) {
            if (prev_free)
                return bad(w, "two adjacent free blocks at", b);
            if (size < MIN_BLOCK || (fl & B_SPAN))
                return bad(w, "bad free block at", b);
            w->nfree++;
            w->free_bytes += size;
            w->free_hash += heap_prio(b);
        } else if (fl & B_SPAN) {
            if ((r = check_span(w, (const span *)b)) != 0)
                return r;
        } else {
            if (size < MIN_BLOCK)
                return bad(w, "in-use block below the minimum size at", b);
            w->live_large += size;
        }
        prev_free = !(fl & B_INUSE);
        prev_size = size;
        b = blk_at(b, size);
    }
}

/* One node of the free tree: a free block of the heap, under its parent's
 * priority. */
static int tree_node(struct walk *w, const fnode *t, uint64_t parent_prio, uint64_t (*prio)(const void *))
{
    if (!walk_holds(w, t, MIN_BLOCK) || !blk_valid(w->h, t) || (t->head & B_INUSE) || !walk_holds(w, t, blk_size(t)))
        return bad(w, "free tree node is not a free block at", t);
    if (prio(t) > parent_prio)
        return bad(w, "free tree priority order broken at", t);
    if (w->h->magic == HEAP_MAGIC && blk_size(t) < BIN_MAX)
        return bad(w, "free block of a bin's size in the free tree at", t);
    return 0;
}

/* H3: in order, heap-ordered, every node a free block.  In order with a
 * stack of its own (a format-2 treap can be as deep as it has nodes): a
 * path longer than the free blocks, or more nodes, is a cycle. */
static int walk_tree(struct walk *w)
{
    uint64_t (*prio)(const void *) = heap_prio_of(w->h->magic);
    size_t cap = w->nfree + 1, sp = 0;
    const fnode **stack = os_alloc(cap * sizeof *stack), *t = w->h->root;
    uint64_t pp = ~0ull; /* the priority of t's parent */
    int r = 0;
    if (!stack)
        return -ENOMEM;
    while (r == 0 && (t || sp)) {
        while (t) { /* down the left spine, each node checked before it is read */
            if ((r = tree_node(w, t, pp, prio)) != 0)
                break;
            if (sp == cap) {
                r = bad(w, "free tree cyclic at", t);
                break;
            }
            stack[sp++] = t;
            pp = prio(t);
            t = t->left;
        }
        if (r != 0)
            break;
        t = stack[--sp];
        if (w->tree_prev) {
            const fnode *p = w->tree_prev;
            if (blk_size(p) > blk_size(t) || (blk_size(p) == blk_size(t) && p >= t))
                r = bad(w, "free tree (size, address) order broken at", t);
        }
        if (++w->tree_n > w->nfree)
            r = bad(w, "free tree cyclic at", t);
        w->tree_prev = t;
        w->tree_hash += heap_prio(t);
        pp = prio(t);
        t = t->right;
    }
    os_free(stack, cap * sizeof *stack);
    return r;
}

/* H4: each partial list holds exactly its class's spans with room. */
static int walk_partial(struct walk *w, unsigned c)
{
    const span *s = w->h->partial[c], *prev = NULL;
    uint64_t n = 0, hash = 0;
    for (; s; prev = s, s = s->next) {
        if (++n > w->nspans)
            return bad(w, "partial span list is cyclic", NULL);
        if (!walk_holds(w, s, SPAN_SIZE) || (uintptr_t)s % SPAN_SIZE || !blk_valid(w->h, s) ||
            !(s->head & B_SPAN) || s->self != ((uintptr_t)s ^ w->h->key))
            return bad(w, "partial list entry is not a span:", s);
        if (s->cls != c || s->nfree == 0 || s->prev != prev)
            return bad(w, "partial list entry of the wrong class, full, or mislinked:", s);
        hash += heap_prio(s);
    }
    if (n != w->part_n[c] || hash != w->part_hash[c])
        return bad(w, "a partial list misses spans of its class", NULL);
    return 0;
}

/* The live span that slot p of class c belongs to, after range checks. */
static const span *recent_span(const struct walk *w, const void *p, unsigned c)
{
    const span *s = (const span *)((uintptr_t)p & ~(uintptr_t)(SPAN_SIZE - 1));
    uint64_t off;
    if (!walk_holds(w, p, 16) || !walk_holds(w, s, SPAN_SIZE) || !blk_valid(w->h, s) ||
        (s->head & (B_SIZE | B_INUSE | B_SPAN | B_FENCE)) != (SPAN_SIZE | B_INUSE | B_SPAN) ||
        s->self != ((uintptr_t)s ^ w->h->key) || s->cls != c || s->slot != heap_class_size(c))
        return NULL;
    off = (uintptr_t)p - (uintptr_t)s - SPAN_HDR;
    if ((uintptr_t)p < (uintptr_t)s + SPAN_HDR || off % s->slot || off / s->slot >= s->nslots)
        return NULL;
    return s;
}

/* H8: each big list holds nbig kept blocks of its class. */
static int walk_big(struct walk *w, unsigned i, uint64_t *bytes)
{
    const uint64_t *q = w->h->big[i];
    unsigned n = 0;
    if (w->h->nbig[i] > BIG_LIST_MAX)
        return bad(w, "big list too long", NULL);
    for (; q; q = (const uint64_t *)q[0]) {
        const blk *b = (const blk *)((uintptr_t)q - BLK_HDR); /* q may be wild */
        uint64_t u;
        if (++n > w->h->nbig[i])
            return bad(w, "big list longer than its count (or cyclic) at", q);
        if (!walk_holds(w, b, BLK_HDR + 16) || !blk_valid(w->h, b) || (b->head & (B_INUSE | B_SPAN | B_FENCE)) != B_INUSE ||
            !walk_holds(w, b, blk_size(b)))
            return bad(w, "big list entry is not an in-use block:", q);
        u = blk_size(b) - BLK_HDR;
        if (u < heap_big_size(i) || u - heap_big_size(i) > QUANTUM)
            return bad(w, "big list entry of the wrong size:", q);
        if (q[1] != heap_recent_tag(w->h, q, NCLASS + i))
            return bad(w, "big list entry without its tag:", q);
        *bytes += blk_size(b);
    }
    if (n != w->h->nbig[i])
        return bad(w, "big list shorter than its count", NULL);
    return 0;
}

/* H7, and the slots it keeps out of live_small before format 4. */
static int walk_recent(struct walk *w, unsigned c)
{
    const uint64_t *q = w->h->recent[c];
    unsigned n = 0;
    if (w->h->nrecent[c] > heap_recent_max(w->h))
        return bad(w, "recent list too long", NULL);
    for (; q; q = (const uint64_t *)q[0]) {
        const span *s = recent_span(w, q, c);
        unsigned idx;
        if (++n > w->h->nrecent[c])
            return bad(w, "recent list longer than its count (or cyclic) at", q);
        if (!s)
            return bad(w, "recent list entry is not a slot of its class:", q);
        idx = (unsigned)(((uintptr_t)q - (uintptr_t)s - SPAN_HDR) / s->slot);
        if (s->bitmap[idx / 64] & (1ull << (idx % 64)))
            return bad(w, "recent list entry is free in its span's bitmap:", q);
        if (q[1] != heap_recent_tag(w->h, q, c))
            return bad(w, "recent list entry without its tag:", q);
        if (!heap_smapped(w->h))
            w->live_small -= s->slot;
    }
    if (n != w->h->nrecent[c])
        return bad(w, "recent list shorter than its count", NULL);
    return 0;
}

int heap_check(tm_store *st, char *msg, size_t len)
{
    const struct heap_state *h = heap_state_of(st);
    struct walk w;
    const char *what;
    const void *at;
    unsigned c;
    int r;

    memset(&w, 0, sizeof w);
    w.st = st, w.h = h, w.msg = msg, w.len = len;
    w.lo = (uintptr_t)st->base + HEAP_START;
    w.hi = (uintptr_t)st->base + super_of(st)->size;
    if (msg && len)
        msg[0] = 0;
    if (h->magic == 0)
        return 0; /* nothing allocated yet */
    if (!heap_magic_known(h->magic))
        return bad(&w, "bad heap magic", NULL);
    if (heap_smapped(h) && (r = check_smap_block(&w)) != 0)
        return r;
    if ((r = walk_blocks(&w)) != 0)
        return r;
    if (heap_smapped(h) && (r = check_smap_count(&w)) != 0)
        return r;
    if ((r = walk_tree(&w)) != 0)
        return r;
    if (h->magic == HEAP_MAGIC && (what = heap_bins_check(st, h, w.nfree, &w.tree_n, &w.tree_hash, &at)))
        return bad(&w, what, at);
    if (w.tree_n != w.nfree || w.tree_hash != w.free_hash)
        return bad(&w, "the free tree and bins do not hold exactly the free blocks", NULL);
    for (c = 0; c < NCLASS; c++)
        if ((r = walk_partial(&w, c)) != 0 || (r = walk_recent(&w, c)) != 0)
            return r;
    if (h->magic == HEAP_MAGIC_V3) {
        uint64_t big = 0;
        for (c = 0; c < NBIG; c++)
            if ((r = walk_big(&w, c, &big)) != 0)
                return r;
        if (big != h->big_bytes)
            return bad(&w, "big list byte counter disagrees with its blocks", NULL);
    }
    if (w.nfree != h->free_blocks || w.free_bytes != h->free_bytes)
        return bad(&w, "free block counters disagree with the blocks", NULL);
    if (w.live_large != h->live_large || w.live_small != h->live_small)
        return bad(&w, "live byte counters disagree with the blocks", NULL);
    if (w.nspans != h->nspans || w.span_slots != h->span_slots)
        return bad(&w, "span counters disagree with the spans", NULL);
    return 0;
}

/* The free tree's largest block, reached through links that may be
 * damaged: each must be a valid free block of the heap, and the path no
 * longer than the count of free blocks (or than the heap could hold, should
 * that count be damaged too).  NULL for an empty tree; BAD_NODE. */
#define BAD_NODE ((const fnode *)1)

static const fnode *tree_max(const tm_store *st, const struct heap_state *h)
{
    uintptr_t lo = (uintptr_t)st->base + HEAP_START, hi = (uintptr_t)st->base + super_of(st)->size;
    const fnode *t = h->root;
    for (uint64_t n = 0; t; n++) {
        if (n > h->free_blocks || n > (hi - lo) / MIN_BLOCK || !heap_free_node(st, h, t))
            return BAD_NODE;
        if (!t->right)
            return t;
        t = t->right;
    }
    return NULL;
}

int heap_stats(tm_store *st, tm_stats_t *out)
{
    const struct heap_state *h = heap_state_of(st);
    const fnode *top;
    uint64_t kept, listed;
    int64_t binned;
    if (h->magic == 0) { /* a fresh heap: one free block */
        uint64_t size = super_of(st)->size;
        uint64_t avail = size > HEAP_START + FENCE_SIZE ? size - HEAP_START - FENCE_SIZE : 0;
        out->live_bytes = 0;
        out->free_bytes = out->largest_free = avail;
        out->free_blocks = avail > 0;
        return 0;
    }
    if (!heap_magic_known(h->magic))
        return -TM_ECORRUPT;
    kept = 0;
    if (heap_smapped(h)) { /* the big lists' blocks and the span map are no one's data */
        uintptr_t lo = (uintptr_t)st->base + HEAP_START, hi = (uintptr_t)st->base + super_of(st)->size;
        const blk *m = (const blk *)((uintptr_t)h->smap - BLK_HDR);
        kept = h->magic == HEAP_MAGIC_V3 ? h->big_bytes : 0;
        if (h->smap) {
            if ((uintptr_t)m < lo || (uintptr_t)m > hi - MIN_BLOCK || (uintptr_t)m % QUANTUM || !blk_valid(h, m) ||
                blk_size(m) > h->live_large - kept)
                return -TM_ECORRUPT;
            kept += blk_size(m);
        }
        if (kept > h->live_large)
            return -TM_ECORRUPT;
    }
    listed = 0;
    if (heap_smapped(h)) /* listed slots count in live_small (H7) */
        for (unsigned c = 0; c < NCLASS; c++)
            listed += (uint64_t)h->nrecent[c] * heap_class_size(c);
    if (listed > h->live_small)
        return -TM_ECORRUPT;
    out->live_bytes = h->live_large - kept + h->live_small - listed;
    if (heap_smapped(h) && h->smap) { /* nor is the code layout record (layout.c) */
        uint64_t at = *(const uint64_t *)(const void *)((const char *)super_of(st) + SUPER_LAYOUT_OFF);
        uint64_t rec = heap_counted(st, h, (const blk *)((uintptr_t)h->smap - BLK_HDR), (uintptr_t)at);
        out->live_bytes -= rec <= out->live_bytes ? rec : 0;
    }
    out->free_bytes = h->free_bytes + kept + (h->span_slots - h->live_small) + listed;
    out->free_blocks = h->free_blocks;
    if ((top = tree_max(st, h)) == BAD_NODE)
        return -TM_ECORRUPT;
    binned = !top && h->magic == HEAP_MAGIC ? heap_bins_largest(st, h) : 0; /* else the tree's are larger */
    if (binned < 0)
        return -TM_ECORRUPT;
    out->largest_free = top ? blk_size(top) : (uint64_t)binned;
    return 0;
}

/* ---- the walk for tools (inspect.h heap_walk) ---- */

/* The slots on recent lists and the blocks on big lists, sorted: free,
 * though their bits and headers say in use. */
struct recent_set {
    uintptr_t p[NCLASS * RECENT_MAX4 + NBIG * BIG_LIST_MAX];
    size_t n;
};

static void recent_collect(const struct walk *w, struct recent_set *rs)
{
    size_t i, j;
    rs->n = 0;
    for (unsigned c = 0; c < NCLASS; c++) {
        const uint64_t *q = w->h->recent[c];
        for (unsigned n = 0; q && n < heap_recent_max(w->h) && recent_span(w, q, c); n++, q = (const uint64_t *)q[0])
            rs->p[rs->n++] = (uintptr_t)q;
    }
    for (unsigned b = 0; w->h->magic == HEAP_MAGIC_V3 && b < NBIG; b++) {
        const uint64_t *q = w->h->big[b];
        for (unsigned n = 0; q && n < BIG_LIST_MAX && walk_holds(w, q, 16); n++, q = (const uint64_t *)q[0])
            rs->p[rs->n++] = (uintptr_t)q;
    }
    for (i = 1; i < rs->n; i++) /* insertion sort: lists are rarely full */
        for (j = i; j > 0 && rs->p[j - 1] > rs->p[j]; j--) {
            uintptr_t t = rs->p[j];
            rs->p[j] = rs->p[j - 1];
            rs->p[j - 1] = t;
        }
}

static int recent_has(const struct recent_set *rs, uintptr_t p)
{
    size_t lo = 0, hi = rs->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (rs->p[mid] < p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < rs->n && rs->p[lo] == p;
}

/* The slots of a checked span, in runs of used and free slots. */
static void walk_span_slots(const span *s, uintptr_t base, const struct recent_set *rs, heap_walk_fn *fn,
                            void *ctx)
{
    uint64_t off = (uintptr_t)s - base, run = off + SPAN_HDR;
    int kind = -1;
    unsigned i;
    fn(ctx, off, SPAN_HDR, HK_SPAN_META);
    for (i = 0; i < s->nslots; i++) {
        int k = (s->bitmap[i / 64] >> (i % 64)) & 1 ||
                        recent_has(rs, (uintptr_t)s + SPAN_HDR + (uintptr_t)i * s->slot)
                    ? HK_SPAN_FREE
                    : HK_SPAN_USED;
        uint64_t at = off + SPAN_HDR + (uint64_t)i * s->slot;
        if (k != kind && kind >= 0) {
            fn(ctx, run, at - run, kind);
            run = at;
        }
        kind = k;
    }
    if (kind >= 0)
        fn(ctx, run, off + SPAN_HDR + (uint64_t)s->nslots * s->slot - run, kind);
    run = off + SPAN_HDR + (uint64_t)s->nslots * s->slot; /* the tail no slot fits in */
    if (run < off + SPAN_SIZE)
        fn(ctx, run, off + SPAN_SIZE - run, HK_SPAN_META);
}

static int heap_walk_with(tm_store *st, struct recent_set *rs, heap_walk_fn *fn, void *ctx)
{
    struct walk w;
    const blk *b;
    uintptr_t base = (uintptr_t)st->base;

    memset(&w, 0, sizeof w);
    w.st = st, w.h = heap_state_of(st);
    w.lo = base + HEAP_START;
    w.hi = base + super_of(st)->size;
    fn(ctx, 0, PAGE, HK_HEADER);
    fn(ctx, PAGE, PAGE, HK_SUPER);
    if (w.h->magic == 0) { /* nothing allocated yet: one free stretch */
        fn(ctx, HEAP_START, w.hi - w.lo, HK_FREE);
        return 0;
    }
    if (!heap_magic_known(w.h->magic))
        return -TM_ECORRUPT;
    if (heap_smapped(w.h) && check_smap_block(&w) != 0)
        return -TM_ECORRUPT;
    recent_collect(&w, rs);
    for (b = (const blk *)w.lo;; b = blk_at(b, blk_size(b))) {
        uint64_t size, fl;
        if (!walk_holds(&w, b, BLK_HDR) || !blk_valid(w.h, b))
            return -TM_ECORRUPT;
        size = blk_size(b), fl = blk_flags(b);
        if (size < QUANTUM || !walk_holds(&w, b, size))
            return -TM_ECORRUPT;
        if (fl & B_FENCE) {
            fn(ctx, (uintptr_t)b - base, size, HK_FENCE);
            return (uintptr_t)b + size == w.hi ? 0 : -TM_ECORRUPT;
        }
        if ((fl & (B_INUSE | B_SPAN)) == (B_INUSE | B_SPAN)) {
            if (check_span(&w, (const span *)b) != 0)
                return -TM_ECORRUPT;
            walk_span_slots((const span *)b, base, rs, fn, ctx);
        } else {
            int used = (fl & B_INUSE) && !recent_has(rs, (uintptr_t)b + BLK_HDR);
            fn(ctx, (uintptr_t)b - base, size, used ? HK_USED : HK_FREE);
        }
    }
}

int heap_walk(tm_store *st, heap_walk_fn *fn, void *ctx)
{
    struct recent_set *rs = os_alloc(sizeof *rs); /* 72 KiB: not on the stack */
    int r;
    if (!rs)
        return -ENOMEM;
    r = heap_walk_with(st, rs, fn, ctx);
    os_free(rs, sizeof *rs);
    return r;
}
