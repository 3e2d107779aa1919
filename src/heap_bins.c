/*
 * heap_bins.c — the bins of a format-5 heap (heap.h H10).
 *
 * Free blocks below BIN_MAX bytes sit in segregated lists, sixteen per
 * power of two, with a bitmap of the lists that are not empty; larger ones
 * stay in the free tree (heap_large.c).  A request looks at the first
 * BIN_PROBE blocks of its own bin for one that fits, then takes the head of
 * the first non-empty bin above it, whose every block fits: a good fit in
 * a few loads, where the tree's best fit reads O(log n) nodes spread over
 * the arena.  Free blocks still merge with their neighbours at once, so a
 * transaction's blocks pack as tightly as under best fit (within 1% of it
 * in pages dirtied, measured on heap_bench's 1-64 KiB trace).  Lists are
 * last in, first out: the block freed last, whose pages the transaction
 * has just written, is the one used again.
 *
 * A link lives in a free block, where a write after free can reach it: a
 * block reached through a link must lie in the heap and carry a valid
 * free header before it is used, and an unlink checks that both
 * neighbours point back (a damaged list is reported, not followed).
 */
#include "heap.h"

static void bin_corrupt(const void *p) __attribute__((noreturn, cold));
static void bin_corrupt(const void *p)
{
    heap_die("heap corrupt: free list damaged (write after free?) at", p);
}

/* x, reached through a link (or NULL), unless it is not a free block of
 * the heap: in range, with a valid free header. */
static inline fnode *bin_link(const tm_store *st, const struct heap_state *h, fnode *x)
{
    if (x && unlikely(!heap_free_node(st, h, x)))
        bin_corrupt(x);
    return x;
}

/* The head of bin i, which the bin map says is in use. */
static inline fnode *bin_head(const tm_store *st, const struct heap_state *h, unsigned i)
{
    fnode *x = bin_link(st, h, h->bins[i]);
    if (unlikely(!x))
        heap_die("heap corrupt: the bin map names an empty bin, number", (void *)(uintptr_t)i);
    return x;
}

void heap_bin_push(struct heap_state *h, fnode *x)
{
    unsigned i = heap_bin(blk_size(x));
    fnode *head = h->bins[i];
    x->left = head;
    x->right = NULL;
    if (head)
        head->right = x;
    else
        h->bin_map[i / 64] |= 1ull << (i % 64);
    h->bins[i] = x;
}

void heap_bin_remove(const tm_store *st, struct heap_state *h, fnode *x)
{
    unsigned i = heap_bin(blk_size(bin_link(st, h, x)));
    fnode *n = bin_link(st, h, x->left), *p = bin_link(st, h, x->right);
    if ((p ? p->left : h->bins[i]) != x || (n && n->right != x))
        bin_corrupt(x);
    if (p)
        p->left = n;
    else if (!(h->bins[i] = n))
        h->bin_map[i / 64] &= ~(1ull << (i % 64));
    if (n)
        n->right = p;
}

/* Bin map word w, without bits past the last bin (a damaged map's). */
static inline uint64_t bin_word(const struct heap_state *h, unsigned w)
{
    return NBIN % 64 && w == NBIN / 64 ? h->bin_map[w] & ((1ull << (NBIN % 64)) - 1) : h->bin_map[w];
}

/* The first bin from i on that is not empty, or NBIN. */
static unsigned bin_next(const struct heap_state *h, unsigned i)
{
    unsigned w = i / 64;
    uint64_t m;
    if (i >= NBIN)
        return NBIN;
    for (m = bin_word(h, w) & (~0ull << (i % 64)); !m; m = bin_word(h, w))
        if (++w == (NBIN + 63) / 64)
            return NBIN;
    return w * 64 + (unsigned)__builtin_ctzll(m);
}

fnode *heap_bin_best(const tm_store *st, const struct heap_state *h, uint64_t need)
{
    unsigned i = heap_bin(need);
    fnode *x = bin_link(st, h, h->bins[i]);
    for (unsigned k = 0; x && k < BIN_PROBE; k++, x = bin_link(st, h, x->left))
        if (blk_size(x) >= need)
            return x;
    i = bin_next(h, i + 1);
    return i < NBIN ? bin_head(st, h, i) : NULL;
}

fnode *heap_bin_best_aligned(const tm_store *st, const struct heap_state *h, uint64_t need, uint64_t align,
                             uint64_t off, int exact, uintptr_t *start)
{
    uint64_t any = need + align + 2 * MIN_BLOCK; /* fits, however aligned */
    unsigned tries = 64, i;
    fnode *x;
    for (i = bin_next(h, heap_bin(need)); i < NBIN && tries; i = bin_next(h, i + 1))
        for (x = bin_head(st, h, i); x && tries; x = bin_link(st, h, x->left), tries--)
            if ((*start = heap_fit(x, need, align, off, exact)) != 0)
                return x;
    if (any >= BIN_MAX || (i = bin_next(h, heap_bin(any) + 1)) == NBIN)
        return NULL;
    x = bin_head(st, h, i);
    *start = heap_fit(x, need, align, off, exact);
    return x;
}

/* ---- for the checker and the statistics (heap_check.c) ---- */

const char *heap_bins_check(const tm_store *st, const struct heap_state *h, uint64_t nfree, uint64_t *n,
                            uint64_t *hash, const void **at)
{
    for (unsigned i = 0; i < NBIN; i++) {
        const fnode *x = h->bins[i], *prev = NULL;
        *at = x;
        if (!x != !(h->bin_map[i / 64] & (1ull << (i % 64))))
            return "bin map disagrees with its bin, head";
        for (; x; prev = x, x = x->left) {
            *at = x;
            if (!heap_free_node(st, h, x))
                return "bin entry is not a free block at";
            if (blk_size(x) >= BIN_MAX || heap_bin(blk_size(x)) != i)
                return "free block in the wrong bin at";
            if (x->right != prev)
                return "bin back link broken at";
            if (++*n > nfree)
                return "bin cyclic at";
            *hash += heap_prio(x);
        }
    }
    for (unsigned i = NBIN; i < 64 * ((NBIN + 63) / 64); i++)
        if (h->bin_map[i / 64] & (1ull << (i % 64))) {
            *at = NULL;
            return "bin map names a bin past the last";
        }
    return NULL;
}

int64_t heap_bins_largest(const tm_store *st, const struct heap_state *h)
{
    uint64_t best = 0, n = 0, most = (super_of(st)->size - HEAP_START) / MIN_BLOCK; /* free_blocks may be damaged too */
    unsigned i = NBIN;
    while (i-- > 0 && !h->bins[i])
        ;
    if (i >= NBIN)
        return 0;
    for (const fnode *x = h->bins[i], *prev = NULL; x; prev = x, x = x->left) {
        if (!heap_free_node(st, h, x) || x->right != prev || ++n > h->free_blocks || n > most)
            return -1;
        if (blk_size(x) > best)
            best = blk_size(x);
    }
    return (int64_t)best;
}
