/*
 * heap_smap.c — the heap's span map (heap.h H9): one 32-bit word per 64 KiB
 * of arena, saying whether a live span starts there, its class and how many
 * slots it has handed out, so that a free learns what it needs without
 * reading the span's header.  The map is an in-use block of the heap,
 * grown by copying, so transactions cover it like any other.
 */
#include <errno.h>
#include <string.h>

#include "heap.h"

/* Makes the span map cover map index i: a larger map block, copied, the
 * old one freed.  0, or -1 with errno ENOMEM. */
int heap_smap_reserve(tm_store *st, struct heap_state *h, uint64_t i)
{
    uint64_t n = (super_of(st)->size >> SPAN_SHIFT) + 1, old = h->smap_n;
    uint32_t *old_map = h->smap;
    blk *b;
    if (i < old)
        return 0;
    n = n > i + 1 ? n : i + 1;
    n = (n + n / 2 + 63) & ~(uint64_t)63; /* room to grow into */
    b = heap_large_alloc(st, n * sizeof *h->smap + BLK_HDR, QUANTUM, BLK_HDR, 0);
    if (!b)
        return -1;
    h->live_large += blk_size(b); /* an in-use block like any other (H6) */
    h->smap = (uint32_t *)(b + 1);
    if (old)
        memcpy(h->smap, old_map, old * sizeof *h->smap);
    memset(h->smap + old, 0, (n - old) * sizeof *h->smap);
    h->smap_n = n;
    if (old_map) {
        h->live_large -= blk_size((blk *)old_map - 1);
        heap_large_free(st, (blk *)old_map - 1);
    }
    return 0;
}


/* Enters every live span of the heap into a new span map (a heap of an
 * older format has none).  0, or -1 with errno. */
int heap_smap_build(tm_store *st, struct heap_state *h)
{
    uintptr_t lo = (uintptr_t)st->base + HEAP_START, hi = (uintptr_t)st->base + super_of(st)->size;
    blk *b;
    h->smap = NULL;
    h->smap_n = 0;
    if (heap_smap_reserve(st, h, (hi >> SPAN_SHIFT) - ((uintptr_t)st->base >> SPAN_SHIFT)) < 0)
        return -1;
    hi = (uintptr_t)st->base + super_of(st)->size; /* the map's block may have grown the arena */
    for (b = (blk *)lo; !(b->head & B_FENCE); b = blk_at(b, blk_size(b))) {
        if ((uintptr_t)b > hi - FENCE_SIZE || !blk_valid(h, b) || blk_size(b) < QUANTUM ||
            blk_size(b) > hi - (uintptr_t)b) {
            h->live_large -= blk_size((blk *)h->smap - 1);
            heap_large_free(st, (blk *)h->smap - 1);
            h->smap = NULL;
            h->smap_n = 0;
            errno = TM_ECORRUPT;
            return -1;
        }
        if ((b->head & (B_INUSE | B_SPAN)) == (B_INUSE | B_SPAN) && (uintptr_t)b % SPAN_SIZE == 0)
            *heap_smap_entry(st, h, b) = ((span *)b)->cls | SM_SPAN; /* high-water mark 0: H9 */
    }
    return 0;
}
