/*
 * heap_large.c — boundary-tagged blocks, the free tree, and growth.
 *
 * Every block of the heap (see heap.h for the layout) is either in use, a
 * span of small slots, the fence, or free.  Free blocks below BIN_MAX sit
 * in bins (heap_bins.c, H10; format 5); the others, and every free block of
 * an older heap, in one tree ordered by (size, address) whose nodes live
 * inside the free blocks themselves: a treap whose priority is a hash of
 * the node's address, so it needs no stored balance data and is balanced
 * in expectation whatever the order of insertions.  Searching is O(log free blocks) reads; inserting and
 * removing rewrite O(1) links in expectation, and a link is only written when
 * it changes, so an operation dirties few pages besides the block itself.
 *
 *   best fit    the leftmost node whose size fits: least size, then least
 *               address.  Aligned requests visit the nodes in order from
 *               there and take the first that fits once aligned.  A
 *               request below BIN_MAX asks the bins first (a good fit).
 *   free        mark the header free (a second free of the same pointer then
 *               reads a free header), merge with free neighbours (H2),
 *               insert the result.
 *   growth      store_grow extends the arena; the old fence and the new bytes
 *               become a free block (merged with a free predecessor) and a
 *               new fence ends the heap.
 *   big lists   (H8, format 4 only) sizes above SMALL_MAX up to BIG_MAX
 *               are rounded up to four classes per power of two; a freed block of a class is
 *               kept whole on its class's list, up to BIG_LIST_MAX, and the
 *               next allocation of the class takes it back (when that
 *               list is empty, a block of one of the next BIG_BORROW
 *               classes does: fewer fresh pages than the tree's): a free
 *               and an allocation touch the block's first page and the
 *               superblock, no neighbour and no tree node.  Before the
 *               arena grows, the lists go back to the tree.
 */
#include <errno.h>
#include <string.h>

#include "heap.h"

/* Writes a pointer only when it changes: an unchanged link dirties no page. */
#define SETP(lv, v)                  \
    do {                             \
        fnode *v_ = (v);             \
        if ((lv) != v_)              \
            (lv) = v_;               \
    } while (0)

/* Format 2's priority: at regular strides of address it is monotonic and
 * the treap degenerates into a list.  Kept by a format-2 heap until its
 * store is upgraded (an older library may share it until then). */
uint64_t heap_prio_v1(const void *n)
{
    uint64_t x = (uintptr_t)n * 0xD6E8FEB86659FD93ull;
    return x ^ (x >> 32);
}

static inline int node_less(const fnode *a, const fnode *b)
{
    uint64_t sa = blk_size(a), sb = blk_size(b);
    return sa < sb || (sa == sb && a < b);
}

/* ---- the treap ---- */

static void tree_insert_by(struct heap_state *h, fnode *x, uint64_t (*prio)(const void *))
{
    fnode **p = &h->root, **l, **r, *t;
    uint64_t px = prio(x);
    while ((t = *p) && prio(t) >= px)
        p = node_less(x, t) ? &t->left : &t->right;
    /* Split the subtree t around x into x's two children. */
    l = &x->left, r = &x->right;
    while (t) {
        if (node_less(t, x)) {
            SETP(*l, t);
            l = &t->right;
            t = t->right;
        } else {
            SETP(*r, t);
            r = &t->left;
            t = t->left;
        }
    }
    SETP(*l, NULL);
    SETP(*r, NULL);
    SETP(*p, x);
}

static void tree_insert(struct heap_state *h, fnode *x)
{
    tree_insert_by(h, x, heap_prio_of(h->magic));
}

static void tree_remove(struct heap_state *h, fnode *x)
{
    uint64_t (*prio)(const void *) = heap_prio_of(h->magic);
    fnode **p = &h->root, *a, *b;
    while (*p != x) {
        if (unlikely(!*p))
            heap_die("heap corrupt: free block missing from the free tree at", x);
        p = node_less(x, *p) ? &(*p)->left : &(*p)->right;
    }
    a = x->left, b = x->right;
    while (a && b) { /* merge the children: the higher priority on top */
        if (prio(a) >= prio(b)) {
            SETP(*p, a);
            p = &a->right;
            a = a->right;
        } else {
            SETP(*p, b);
            p = &b->left;
            b = b->left;
        }
    }
    SETP(*p, a ? a : b);
}

/* The least (size, address) node of at least need bytes, or NULL. */
static fnode *tree_best(const struct heap_state *h, uint64_t need)
{
    fnode *t = h->root, *best = NULL;
    while (t) {
        if (blk_size(t) >= need)
            best = t, t = t->left;
        else
            t = t->right;
    }
    return best;
}

/* ---- free blocks ---- */

/* A free block of a format-5 heap below BIN_MAX sits in a bin (H10); any
 * other, in the tree (H3). */
static inline int binned(uint64_t size, uint64_t magic)
{
    return magic == HEAP_MAGIC && size < BIN_MAX;
}

static void free_add(struct heap_state *h, fnode *b)
{
    h->free_bytes += blk_size(b);
    h->free_blocks++;
    if (binned(blk_size(b), h->magic))
        heap_bin_push(h, b);
    else
        tree_insert(h, b);
}

static void free_del(const tm_store *st, struct heap_state *h, fnode *b)
{
    h->free_bytes -= blk_size(b);
    h->free_blocks--;
    if (binned(blk_size(b), h->magic))
        heap_bin_remove(st, h, b);
    else
        tree_remove(h, b);
}

/* Makes [b, b+size) a free block (merging free neighbours) and tells the
 * successor.  b's header keeps its B_PINUSE flag. */
static void release(const tm_store *st, struct heap_state *h, blk *b, uint64_t size)
{
    uint64_t pin = b->head & B_PINUSE;
    blk *n = blk_at(b, size);

    blk_set(h, b, size, pin); /* H5: a stale copy of this header reads free */
    if (!pin) {
        blk *p = (blk *)((char *)b - b->prev_foot);
        free_del(st, h, (fnode *)p);
        size += blk_size(p);
        pin = p->head & B_PINUSE;
        b = p;
    }
    if (!(n->head & B_INUSE)) {
        free_del(st, h, (fnode *)n);
        size += blk_size(n);
    }
    blk_set(h, b, size, pin);
    n = blk_at(b, size);
    n->prev_foot = size;
    if (n->head & B_PINUSE)
        blk_set(h, n, blk_size(n), blk_flags(n) & ~B_PINUSE);
    free_add(h, (fnode *)b);
}

/* The first node in (size, address) order from need up where an aligned
 * block fits.  Visits a bounded number of candidates, then settles for the
 * least node large enough to fit whatever its alignment. */
static fnode *tree_best_aligned(const struct heap_state *h, uint64_t need, uint64_t align,
                                uint64_t off, int exact, uintptr_t *start)
{
    fnode *stack[64], *t = h->root, *x;
    int n = 0, tries = 0;
    while (t) {
        if (blk_size(t) >= need) {
            if (n < 64)
                stack[n++] = t;
            t = t->left;
        } else {
            t = t->right;
        }
    }
    while (n > 0 && tries++ < 64) {
        x = stack[--n];
        if ((*start = heap_fit(x, need, align, off, exact)) != 0)
            return x;
        for (t = x->right; t && n < 64; t = t->left)
            stack[n++] = t;
    }
    x = tree_best(h, need + align + 2 * MIN_BLOCK); /* fits, however aligned */
    if (x)
        *start = heap_fit(x, need, align, off, exact);
    return x;
}

/* Takes [start, start+need) out of free block x: the gap in front and the
 * rest behind, if big enough, stay free. */
static blk *carve(const tm_store *st, struct heap_state *h, fnode *x, uintptr_t start, uint64_t need)
{
    uint64_t size = blk_size(x), pin = x->head & B_PINUSE, rest;
    blk *b = (blk *)start, *n;

    free_del(st, h, x);
    if (start != (uintptr_t)x) {
        uint64_t gap = start - (uintptr_t)x;
        blk_set(h, x, gap, pin);
        b->prev_foot = gap;
        free_add(h, x);
        size -= gap;
        pin = 0;
    }
    rest = size - need;
    if (rest >= MIN_BLOCK) {
        n = blk_at(b, need);
        blk_set(h, n, rest, B_PINUSE);
        blk_at(n, rest)->prev_foot = rest;
        free_add(h, (fnode *)n);
    } else {
        need = size;
        n = blk_at(b, need);
        blk_set(h, n, blk_size(n), blk_flags(n) | B_PINUSE);
    }
    blk_set(h, b, need, B_INUSE | pin);
    return b;
}

/* ---- growth ---- */

static int grow(tm_store *st, uint64_t need)
{
    struct heap_state *h = heap_state_of(st);
    uint64_t old = super_of(st)->size, nsize;
    blk *fence = (blk *)(st->base + old - FENCE_SIZE), *nf;
    int r = store_grow(st, need);
    if (r < 0) {
        errno = r == -TM_EFULL ? ENOMEM : -r;
        return -1;
    }
    nsize = super_of(st)->size;
    nf = (blk *)(st->base + nsize - FENCE_SIZE);
    blk_set(h, nf, FENCE_SIZE, B_INUSE | B_FENCE);
    /* The old fence starts the new free block, which release merges. */
    blk_set(h, fence, nsize - old, blk_flags(fence) & B_PINUSE);
    release(st, h, fence, nsize - old);
    return 0;
}

static void big_flush(tm_store *st);
static void big_take(tm_store *st, blk *b);

int heap_rebuild_tree(tm_store *st, uint64_t magic)
{
    struct heap_state *h = heap_state_of(st);
    uintptr_t lo = (uintptr_t)st->base + HEAP_START, hi = (uintptr_t)st->base + super_of(st)->size;
    uint64_t (*prio)(const void *) = heap_prio_of(magic);
    uint64_t nfree = 0;
    blk *b;
    for (b = (blk *)lo; !(b->head & B_FENCE); b = blk_at(b, blk_size(b))) { /* walk first, change nothing */
        uintptr_t a = (uintptr_t)b;
        if (a > hi - FENCE_SIZE || !blk_valid(h, b) || blk_size(b) < MIN_BLOCK ||
            blk_size(b) > hi - FENCE_SIZE - a) /* the fence must still follow */
            return -TM_ECORRUPT;
        nfree += !(b->head & B_INUSE);
    }
    if ((uintptr_t)b != hi - FENCE_SIZE || !blk_valid(h, b) || nfree != h->free_blocks)
        return -TM_ECORRUPT;
    if (h->magic == HEAP_MAGIC_V3)
        big_flush(st); /* no other format has big lists */
    if (heap_smapped(h) && magic != HEAP_MAGIC && magic != HEAP_MAGIC_V3) { /* nor a span map */
        for (unsigned c = 0; c < NCLASS; c++) { /* and its own tags and live_small (H7) */
            for (uint64_t *q = h->recent[c]; q; q = (uint64_t *)q[0])
                q[1] = (((uintptr_t)q ^ h->key) + c) * 0xD6E8FEB86659FD93ull | 1;
            h->live_small -= (uint64_t)h->nrecent[c] * heap_class_size(c);
        }
        if (h->smap) {
            blk *m = (blk *)h->smap - 1;
            h->live_large -= blk_size(m);
            release(st, h, m, blk_size(m));
            h->smap = NULL;
            h->smap_n = 0;
        }
    }
    SETP(h->root, NULL);
    memset(h->bins, 0, sizeof h->bins);
    memset(h->bin_map, 0, sizeof h->bin_map);
    for (b = (blk *)lo; !(b->head & B_FENCE); b = blk_at(b, blk_size(b))) {
        if (b->head & B_INUSE)
            continue;
        if (binned(blk_size(b), magic))
            heap_bin_push(h, (fnode *)b);
        else
            tree_insert_by(h, (fnode *)b, prio);
    }
    h->magic = magic;
    return 0;
}

int heap_init(tm_store *st)
{
    struct heap_state *h = heap_state_of(st);
    uint64_t size = super_of(st)->size;
    blk *first = (blk *)(st->base + HEAP_START), *fence;

    memset(h, 0, sizeof *h);
    /* an older store's heap keeps the store's format until a first opener
     * upgrades it: an older library may have it open */
    h->magic = st->hdr.version >= FORMAT_VERSION ? HEAP_MAGIC
               : st->hdr.version >= 4            ? HEAP_MAGIC_V3
               : st->hdr.version >= 3            ? HEAP_MAGIC_V2
                                                 : HEAP_MAGIC_V1;
    h->key = (st->hdr.store_id * 0x9E3779B97F4A7C15ull) ^ 0x5bd1e9955bd1e995ull;
    if (size < HEAP_START + MIN_BLOCK + FENCE_SIZE) {
        int r = store_grow(st, MIN_GROWTH);
        if (r < 0) {
            h->magic = 0;
            errno = r == -TM_EFULL ? ENOMEM : -r;
            return -1;
        }
        size = super_of(st)->size;
    }
    fence = (blk *)(st->base + size - FENCE_SIZE);
    blk_set(h, first, size - FENCE_SIZE - HEAP_START, B_PINUSE);
    fence->prev_foot = blk_size(first);
    blk_set(h, fence, FENCE_SIZE, B_INUSE | B_FENCE);
    free_add(h, (fnode *)first);
    return 0;
}

/* ---- the interface to heap.c ---- */

/* A block of need bytes (a multiple of 16, header included) whose header
 * address plus off is a multiple of align (a power of two; 16 means any
 * block).  It may be up to MIN_BLOCK - 16 bytes larger unless exact (which
 * spans use, always with align > 16).  NULL with errno ENOMEM when the arena
 * cannot grow. */
blk *heap_large_alloc(tm_store *st, uint64_t need, uint64_t align, uint64_t off, int exact)
{
    struct heap_state *h = heap_state_of(st);
    uintptr_t start = 0;
    fnode *x;
    int grown = 0;

    if (need < MIN_BLOCK)
        need = MIN_BLOCK;
    for (;;) {
        if (align <= QUANTUM) {
            if ((need < BIN_MAX && h->magic == HEAP_MAGIC && (x = heap_bin_best(st, h, need)) != NULL) ||
                (x = tree_best(h, need)) != NULL)
                return carve(st, h, x, (uintptr_t)x, need);
        } else if ((h->magic == HEAP_MAGIC && (x = heap_bin_best_aligned(st, h, need, align, off, exact, &start)) &&
                    start) ||
                   ((x = tree_best_aligned(h, need, align, off, exact, &start)) != NULL && start)) {
            return carve(st, h, x, start, need);
        }
        if (h->magic == HEAP_MAGIC_V3 && h->big_bytes) {
            big_flush(st); /* the arena never grows while the big lists keep blocks */
            continue;
        }
        if (grown || grow(st, need + (align > QUANTUM ? align : 0) + 2 * MIN_BLOCK + FENCE_SIZE) < 0)
            break;
        grown = 1;
    }
    if (grown)
        errno = ENOMEM; /* unreachable unless growth lied */
    return NULL;
}

void heap_large_free(tm_store *st, blk *b)
{
    struct heap_state *h = heap_state_of(st);
    release(st, h, b, blk_size(b));
}

/* Resizes in-use block b to need bytes in place: shrinks, or grows into a
 * free successor or into new arena space after it.  1 when done. */
int heap_large_resize(tm_store *st, blk *b, uint64_t need)
{
    struct heap_state *h = heap_state_of(st);
    uint64_t size = blk_size(b), pin = b->head & B_PINUSE, total;
    blk *n = blk_at(b, size);

    if (need < MIN_BLOCK)
        need = MIN_BLOCK;
    if (need <= size) {
        if (size - need >= MIN_BLOCK) {
            blk *r = blk_at(b, need);
            blk_set(h, b, need, B_INUSE | pin);
            blk_set(h, r, size - need, B_INUSE | B_PINUSE);
            release(st, h, r, size - need);
        }
        return 1;
    }
    if (h->magic == HEAP_MAGIC_V3 && (n->head & (B_INUSE | B_SPAN | B_FENCE)) == B_INUSE && heap_big_listed(st, n))
        big_take(st, n); /* a kept block is free space too */
    if (n->head & B_FENCE) {
        /* The last block: grow the arena, then take the new free space. */
        if (grow(st, need - size + MIN_BLOCK + FENCE_SIZE) < 0)
            return 0;
        n = blk_at(b, size);
    }
    if (n->head & B_INUSE)
        return 0;
    total = size + blk_size(n);
    if (total < need)
        return 0;
    free_del(st, h, (fnode *)n);
    if (total - need >= MIN_BLOCK) {
        blk *r = blk_at(b, need);
        blk_set(h, r, total - need, B_PINUSE);
        blk_at(r, total - need)->prev_foot = total - need;
        free_add(h, (fnode *)r);
    } else {
        need = total;
        n = blk_at(b, need);
        blk_set(h, n, blk_size(n), blk_flags(n) | B_PINUSE);
    }
    blk_set(h, b, need, B_INUSE | pin);
    return 1;
}

/* ---- the big lists (H8) ---- */

static void big_corrupt(const void *p) __attribute__((noreturn, cold));
static void big_corrupt(const void *p)
{
    heap_die("malloc(): corrupted free list (write after free?) at", p);
}

/* Whether in-use block b is of a big class (its size that class's plus the
 * header, or 16 bytes more); the class in *i. */
static int big_class_of(const blk *b, unsigned *i)
{
    uint64_t u = blk_size(b) - BLK_HDR;
    if (u <= SMALL_MAX + QUANTUM || u > BIG_MAX + QUANTUM)
        return 0;
    *i = heap_big_class(u - QUANTUM);
    return u - heap_big_size(*i) <= QUANTUM;
}

/* The block on big list i whose payload is q, checked before it is
 * trusted: its link lives in freed memory. */
static blk *big_entry(const tm_store *st, const struct heap_state *h, uint64_t *q, unsigned i)
{
    uintptr_t lo = (uintptr_t)st->base + HEAP_START + BLK_HDR, hi = (uintptr_t)st->base + super_of(st)->size;
    blk *b = (blk *)q - 1;
    unsigned k;
    if ((uintptr_t)q % QUANTUM || (uintptr_t)q < lo || (uintptr_t)q >= hi - FENCE_SIZE ||
        q[1] != heap_recent_tag(h, q, NCLASS + i) || !blk_valid(h, b) ||
        (b->head & (B_INUSE | B_SPAN | B_FENCE)) != B_INUSE || !big_class_of(b, &k) || k != i ||
        blk_size(b) > hi - FENCE_SIZE - (uintptr_t)b)
        big_corrupt(q);
    return b;
}

void *heap_big_alloc(tm_store *st, size_t size)
{
    struct heap_state *h = heap_state_of(st);
    unsigned i = heap_big_class(size), last = i + BIG_BORROW < NBIG ? i + BIG_BORROW : NBIG - 1;
    uint64_t *q = h->big[i];
    blk *b;
    while (!q && i < last) /* a larger class's block, rather than fresh space from the tree */
        q = h->big[++i];
    if (!q)
        return NULL;
    if (h->nbig[i] == 0)
        big_corrupt(q);
    b = big_entry(st, h, q, i);
    h->big[i] = (void *)q[0];
    h->nbig[i]--;
    h->big_bytes -= blk_size(b);
    q[1] = 0; /* popped twice (a double free the tag missed): corrupt, above */
    return q;
}

/* Whether in-use block b is on its big list: its list's head, or tagged
 * and found by a walk of at most BIG_LIST_MAX blocks. */
int heap_big_listed(const tm_store *st, const blk *b)
{
    const struct heap_state *h = heap_state_of(st);
    const uint64_t *p = (const uint64_t *)(b + 1), *q;
    unsigned i, n;
    if (!big_class_of(b, &i))
        return 0;
    if (h->big[i] == p)
        return 1; /* caught even when its tag was overwritten */
    if (p[1] != heap_recent_tag(h, p, NCLASS + i))
        return 0;
    for (q = h->big[i], n = 0; q && n < h->nbig[i]; n++, q = (const uint64_t *)q[0]) {
        big_entry(st, h, (uint64_t *)q, i);
        if (q == p)
            return 1;
    }
    return 0;
}

int heap_big_free(tm_store *st, blk *b)
{
    struct heap_state *h = heap_state_of(st);
    uint64_t *q = (uint64_t *)(b + 1);
    unsigned i;
    if (!big_class_of(b, &i))
        return 0;
    if (heap_big_listed(st, b))
        heap_die("free(): double free detected at", q);
    if (h->nbig[i] >= BIG_LIST_MAX)
        return 0;
    q[0] = (uintptr_t)h->big[i];
    q[1] = heap_recent_tag(h, q, NCLASS + i);
    h->big[i] = q;
    h->nbig[i]++;
    h->big_bytes += blk_size(b);
    return 1;
}

/* Returns every kept block to the free tree. */
static void big_flush(tm_store *st)
{
    struct heap_state *h = heap_state_of(st);
    for (unsigned i = 0; i < NBIG; i++) {
        while (h->big[i]) {
            uint64_t *q = h->big[i];
            blk *b;
            if (h->nbig[i] == 0)
                big_corrupt(q);
            b = big_entry(st, h, q, i);
            h->big[i] = (void *)q[0];
            h->nbig[i]--;
            h->big_bytes -= blk_size(b);
            h->live_large -= blk_size(b);
            q[1] = 0;
            release(st, h, b, blk_size(b));
        }
        if (h->nbig[i])
            heap_die("heap corrupt: a big list shorter than its count, class", (void *)(uintptr_t)i);
    }
}

/* Takes kept block b off its list and frees it into the tree. */
static void big_take(tm_store *st, blk *b)
{
    struct heap_state *h = heap_state_of(st);
    uint64_t *p = (uint64_t *)(b + 1), **link;
    unsigned i, n = 0;
    if (!big_class_of(b, &i))
        big_corrupt(p);
    for (link = (uint64_t **)&h->big[i]; *link != p; link = (uint64_t **)&(*link)[0]) {
        if (!*link || ++n > h->nbig[i])
            big_corrupt(p);
        big_entry(st, h, *link, i);
    }
    *link = (uint64_t *)p[0];
    h->nbig[i]--;
    h->big_bytes -= blk_size(b);
    h->live_large -= blk_size(b);
    p[1] = 0;
    release(st, h, b, blk_size(b));
}
