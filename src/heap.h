/*
 * heap.h — the layout of the persistent heap, shared by heap.c (dispatch and
 * small size classes), heap_large.c (boundary-tagged blocks, the free tree,
 * growth) and heap_check.c (statistics and the checker).
 *
 * The heap owns the arena bytes [HEAP_START, size).  They are cut into a
 * sequence of blocks, each starting with a 16-byte header and ending where
 * the next begins; the last block is a 16-byte in-use fence:
 *
 *   HEAP_START                                                    size-16  size
 *   | blk | blk (free) ...........| span (64 KiB, aligned) |  blk  | fence |
 *
 *   block:  +-----------+-----------------------------+----------------...
 *           | prev_foot | head = check:16 size:44 fl:4 | payload (16-aligned)
 *           +-----------+-----------------------------+----------------...
 *   prev_foot  the size of the previous block when it is free (a free
 *              block's footer lives in its successor's header), else stale.
 *   flags      B_INUSE, B_PINUSE (the previous block is in use), B_SPAN,
 *              B_FENCE.
 *   check      16 bits of a keyed hash of (address, size, flags): a pointer
 *              the heap never returned almost never has a valid header.
 *   free block additionally holds left/right links of the free tree.
 *
 *   span (small objects):  a 64 KiB in-use block at a 64 KiB-aligned
 *   address whose header is followed by the span metadata and the slots:
 *           +--------+------+------------------------------+--------+-------
 *           | header | self | next/prev, slot, nslots, ... | bitmap | slots..
 *           +--------+------+------------------------------+--------+-------
 *           0        16     24                        64   576 = SPAN_HDR
 *   A set bitmap bit is a free slot; summary bit w says bitmap[w] != 0.
 *   self = address ^ key: with the header check it proves a live span.
 *
 * Invariants (heap_check proves them):
 *   H1. Blocks tile [HEAP_START, size) exactly; the fence ends it.
 *   H2. No two adjacent blocks are free (free neighbours coalesce), and
 *       B_PINUSE of each block tells the truth about its predecessor; a free
 *       block's size is repeated in its successor's prev_foot.
 *   H3. The free tree holds exactly the free blocks, ordered by (size,
 *       address), a treap whose priorities are a hash of the address.
 *   H4. A span's free count equals its bitmap's population; a class's
 *       partial list holds exactly its spans with a free slot.
 *   H5. A 64 KiB-aligned address carries a valid span header only while a
 *       live span starts there; freed headers are rewritten as free ones,
 *       so a second free of the same pointer is recognised.
 *   H6. The counters in struct heap_state match the blocks.
 *   H7. A class's recent list holds nrecent <= RECENT_MAX distinct slots of
 *       its spans (freed lately, or taken along from a span being filled),
 *       linked through their first word and tagged in their second
 *       (heap_recent_tag); their bitmap bits say in use, but they are free
 *       (live_small leaves them out).  A store of format 1, from before the
 *       lists, has zeros there: empty lists.
 */
#ifndef TMF_HEAP_H
#define TMF_HEAP_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "internal.h"

#define HEAP_START (2 * (uint64_t)PAGE)
#define HEAP_MAGIC 0x3270616568666d74ull    /* "tmfheap2": heap_prio orders the treap */
#define HEAP_MAGIC_V1 0x3170616568666d74ull /* "tmfheap1": heap_prio_v1 does (format <= 2) */
#define QUANTUM 16u
#define HDR 16u          /* block header bytes */
#define MIN_BLOCK 32u    /* header + two tree links */
#define SPAN_SHIFT 16
#define SPAN_SIZE ((uint64_t)1 << SPAN_SHIFT)
#define SPAN_HDR 576u
#define SMALL_MAX 4096u
#define NCLASS 32
#define FENCE_SIZE 16u
#define RECENT_MAX 64u   /* slots per recent list */

#define B_INUSE 1ull
#define B_PINUSE 2ull
#define B_SPAN 4ull
#define B_FENCE 8ull
#define B_FLAGS 15ull
#define B_SIZE 0x0000fffffffffff0ull

typedef struct blk {
    uint64_t prev_foot;
    uint64_t head;
} blk;

typedef struct fnode { /* a free block */
    uint64_t prev_foot;
    uint64_t head;
    struct fnode *left, *right;
} fnode;

typedef struct span {
    uint64_t prev_foot;
    uint64_t head;
    uint64_t self;        /* address ^ key */
    struct span *next, *prev; /* the class's partial list */
    uint32_t slot;        /* slot size */
    uint32_t recip;       /* ceil(2^32 / slot): division by multiplication */
    uint16_t cls, nslots, nfree, pad;
    uint64_t summary;
    uint64_t bitmap[64];
} span;

_Static_assert(sizeof(span) == SPAN_HDR, "span header layout");

struct heap_state {
    uint64_t magic;
    uint64_t key;         /* random per store: seeds header checks */
    fnode *root;          /* the free tree */
    uint64_t free_bytes;  /* in free blocks */
    uint64_t free_blocks;
    uint64_t live_large;  /* bytes of in-use blocks, spans and fence excluded */
    uint64_t live_small;  /* bytes of in-use slots */
    uint64_t span_slots;  /* bytes of all slots of all spans */
    uint64_t nspans;
    span *partial[NCLASS];
    void *recent[NCLASS];  /* per class: slots freed lately, last first (H7) */
    uint16_t nrecent[NCLASS];
};

_Static_assert(sizeof(struct heap_state) <= SUPER_HEAP_BYTES, "heap state fits the superblock");

static inline struct heap_state *heap_state_of(const tm_store *st)
{
    return (struct heap_state *)super_of(st)->heap;
}

static inline uint64_t blk_size(const void *b)
{
    return ((const blk *)b)->head & B_SIZE;
}

static inline uint64_t blk_flags(const void *b)
{
    return ((const blk *)b)->head & B_FLAGS;
}

static inline blk *blk_at(const void *b, uint64_t off)
{
    return (blk *)((char *)b + off);
}

static inline uint64_t heap_check16(const struct heap_state *h, const void *b, uint64_t sf)
{
    uint64_t x = ((uintptr_t)b ^ sf ^ h->key) * 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    return (x * 0xBF58476D1CE4E5B9ull) >> 48;
}

static inline void blk_set(const struct heap_state *h, void *b, uint64_t size, uint64_t flags)
{
    uint64_t sf = size | flags;
    ((blk *)b)->head = sf | heap_check16(h, b, sf) << 48;
}

static inline int blk_valid(const struct heap_state *h, const void *b)
{
    uint64_t head = ((const blk *)b)->head;
    return head >> 48 == heap_check16(h, b, head & 0xffffffffffffull);
}

/* The second word of a slot on class c's recent list.  Popping trusts a
 * link only with it, so a write after free that changes a link must also
 * forge the tag of the slot it points to, for the right class; freeing
 * again takes it as a hint only (the list itself decides). */
static inline uint64_t heap_recent_tag(const struct heap_state *h, const void *p, unsigned c)
{
    return (((uintptr_t)p ^ h->key) + c) * 0xD6E8FEB86659FD93ull | 1;
}

/* Size classes: 16..256 by 16, then four per power of two up to 4096. */
static inline unsigned heap_class(size_t n)
{
    unsigned b;
    if (n <= 256)
        return n ? (unsigned)(n - 1) >> 4 : 0;
    b = 63 - (unsigned)__builtin_clzll(n - 1);
    return 16 + (b - 8) * 4 + (unsigned)((n - 1) >> (b - 2)) - 4;
}

static inline uint32_t heap_class_size(unsigned c)
{
    if (c < 16)
        return (c + 1) * 16;
    c -= 16;
    return (5 + c % 4) << (8 + c / 4 - 2);
}

/* heap_large.c */
int heap_init(tm_store *st);
blk *heap_large_alloc(tm_store *st, uint64_t need, uint64_t align, uint64_t off, int exact);
void heap_large_free(tm_store *st, blk *b);
int heap_large_resize(tm_store *st, blk *b, uint64_t need);
uint64_t heap_prio(const void *n);
uint64_t heap_prio_v1(const void *n);

/* The priority a heap of this magic orders its treap by. */
static inline uint64_t (*heap_prio_of(uint64_t magic))(const void *)
{
    return magic == HEAP_MAGIC_V1 ? heap_prio_v1 : heap_prio;
}

/* Rebuilds the free tree with the priorities the magic names, and sets it:
 * a format-2 heap (HEAP_MAGIC_V1) is rebuilt by its first write
 * transaction once its store is upgraded.  -TM_ECORRUPT, the heap
 * unchanged, when its blocks cannot be walked.  Inside the write
 * transaction. */
int heap_rebuild_tree(tm_store *st, uint64_t magic);


/* Reports a misuse or a damaged heap, naming the address, and aborts as
 * glibc does. */
static inline __attribute__((noreturn, cold)) void heap_die(const char *what, const void *p)
{
    os_say(what, NULL, (uintptr_t)p);
    abort();
}

#endif
