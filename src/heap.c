/*
 * heap.c — allocation inside the arena.
 *
 * For now a bump allocator over the arena after the superblock: blocks are
 * never reused.  Its state is the first word of the superblock's heap area,
 * so transactions cover it.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

struct heap_state {
    uint64_t top; /* offset of the first unused byte; 0: 2 * PAGE */
    uint64_t live;
};

static struct heap_state *state(tm_store *st)
{
    return (struct heap_state *)super_of(st)->heap;
}

void *heap_alloc(tm_store *st, size_t size, size_t align)
{
    struct heap_state *h = state(st);
    uint64_t top = h->top ? h->top : 2 * PAGE, start, end;
    int r;
    if (!tx_owned(st)) {
        errno = TM_ENOTX;
        return NULL;
    }
    if (align < 16)
        align = 16;
    start = (top + align - 1) & ~(uint64_t)(align - 1);
    if (size > st->max || start + size > st->max) {
        errno = ENOMEM;
        return NULL;
    }
    end = start + ((size + 15) & ~(uint64_t)15);
    if (end > super_of(st)->size && (r = store_grow(st, end - super_of(st)->size)) < 0) {
        errno = r == -TM_EFULL ? ENOMEM : -r;
        return NULL;
    }
    h->top = end;
    h->live += end - start;
    return st->base + start;
}

void heap_free(tm_store *st, void *p)
{
    (void)st;
    (void)p;
}

void heap_stats(tm_store *st, tm_stats_t *out)
{
    struct heap_state *h = state(st);
    out->live_bytes = h->live;
    out->free_bytes = super_of(st)->size - (h->top ? h->top : 2 * PAGE);
    out->free_blocks = out->free_bytes > 0;
    out->largest_free = out->free_bytes;
}
