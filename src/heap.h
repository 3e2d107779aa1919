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
 *   H3. The free tree holds exactly the free blocks (from format 5 on,
 *       those of BIN_MAX bytes or more), ordered by (size, address), a
 *       treap whose priorities are a hash of the address.
 *   H4. A span's free count equals its bitmap's population; a class's
 *       partial list holds exactly its spans with a free slot.
 *   H5. A 64 KiB-aligned address carries a valid span header only while a
 *       live span starts there; freed headers are rewritten as free ones,
 *       so a second free of the same pointer is recognised.
 *   H6. The counters in struct heap_state match the blocks.
 *   H7. A class's recent list holds nrecent <= heap_recent_max distinct slots of
 *       its spans, linked through their first word and tagged in their
 *       second (heap_recent_tag); their bitmap bits say in use, but they are
 *       free (live_small leaves them out before format 4, and counts them
 *       from format 4 on, so that a push or a pop does not change it).
 *       Slots go there when freed, or taken along from a span being
 *       filled; an allocation takes them off first.  A store of format 1,
 *       from before the lists, has zeros there: empty lists.
 *   H8. (HEAP_MAGIC_V3 only.)  A big class's list (sizes above SMALL_MAX up to
 *       BIG_MAX, four classes per power of two) holds nbig <= BIG_LIST_MAX
 *       freed blocks kept whole: in use as far as their headers and
 *       neighbours go (they neither merge nor sit in the free tree), sized
 *       heap_big_size(i) + BLK_HDR (or 16 bytes more), linked through their
 *       payload's first word and tagged in its second with
 *       heap_recent_tag(.., NCLASS + i).  big_bytes is the sum of their
 *       block sizes; live_large counts them (they are in-use blocks), the
 *       statistics do not.  An allocation the free tree cannot meet
 *       returns them all to the tree before it grows the arena.
 *
 *   H9. (HEAP_MAGIC_V3 and HEAP_MAGIC.)  The span map has smap_n words, one per 64 KiB of
 *       address from the arena's base rounded down to 64 KiB; word i is
 *       SM_SPAN | class | cap << SM_CAP_SHIFT when a live span starts at
 *       that address, else 0.  Every free slot below cap carries its
 *       class's tag, on the recent list or in the bitmap; the fast path
 *       frees only slots below cap.  A new span starts at cap 0, and so
 *       does every span of a heap converted from an older format; an
 *       allocation from the bitmap takes the lowest free slot (and maybe a
 *       run after it), so raising cap to just past what it took keeps the
 *       rule.  The map is the payload of an in-use block.
 *
 *  H10. (HEAP_MAGIC only.)  Each free block below BIN_MAX bytes sits in
 *       bin heap_bin(size): sixteen bins per power of two from 256 bytes
 *       (one per 16 bytes below), each a doubly linked list through the
 *       block's tree links (left: next, right: previous; the head's
 *       previous is NULL).  Bit i of bin_map is set exactly when bin i is
 *       not empty.
 *
 * Formats: HEAP_MAGIC_V1 (store formats 1-2: heap_prio_v1 orders the
 * treap), HEAP_MAGIC_V2 (format 3: heap_prio), HEAP_MAGIC_V3 (format 4:
 * the big lists, H8, and the span map, H9), HEAP_MAGIC (format 5: the span
 * map and the bins, H10; no big lists).  An older heap keeps its format while its store does (an
 * older library may have it open); once a first opener has upgraded the
 * store, the first write transaction that allocates or frees converts it.
 */
#ifndef TMF_HEAP_H
#define TMF_HEAP_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "internal.h"

#define HEAP_START (2 * (uint64_t)PAGE)
#define HEAP_MAGIC 0x3470616568666d74ull    /* "tmfheap4": the bins (H10) */
#define HEAP_MAGIC_V3 0x3370616568666d74ull /* "tmfheap3": the big lists (H8) (format 4) */
#define HEAP_MAGIC_V2 0x3270616568666d74ull /* "tmfheap2": heap_prio orders the treap (format 3) */
#define HEAP_MAGIC_V1 0x3170616568666d74ull /* "tmfheap1": heap_prio_v1 does (format <= 2) */
#define QUANTUM 16u
#define BLK_HDR 16u      /* block header bytes (the file header is struct hdr_slot) */
#define MIN_BLOCK 32u    /* header + two tree links */
#define SPAN_SHIFT 16
#define SPAN_SIZE ((uint64_t)1 << SPAN_SHIFT)
#define SPAN_HDR 576u
#define SMALL_MAX 4096u
#define NCLASS 32
#define FENCE_SIZE 16u
#define RECENT_MAX 64u   /* slots per recent list, formats 2 and 3 */
#define RECENT_MAX4 256u /* ... and format 4 (H7) */
#define BIG_MAX 65536u   /* the largest size of a big class */
#define SM_CLASS_MASK 0x1fu /* span map entry (H9): the class, */
#define SM_SPAN 0x100u      /* a live span starts here, */
#define SM_CAP_SHIFT 16     /* and the slots it has handed out */
#define SM_CAP_MASK 0xffff0000u
#define NBIG 16          /* big classes: 5, 6, 7, 8 KiB, 10 ... 16 KiB, ... 64 KiB */
#define BIG_LIST_MAX 64u /* blocks per big list */
#define BIG_BORROW 3     /* an empty big list borrows from the next classes' lists, up to this many */
#define BIN_MAX ((uint64_t)1 << 20) /* free blocks below this size sit in bins (H10) */
#define NBIN 208         /* 16 bins by 16 bytes below 256, then 16 per power of two up to BIN_MAX */
#define BIN_PROBE 8      /* a request looks at this many blocks of its own bin */

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
    uint64_t live_small;  /* bytes of in-use slots; in format 4, of slots not free in their bitmaps */
    uint64_t span_slots;  /* bytes of all slots of all spans */
    uint64_t nspans;
    span *partial[NCLASS];
    void *recent[NCLASS];  /* per class: slots freed lately, last first (H7) */
    uint16_t nrecent[NCLASS];
    /* format 4 (HEAP_MAGIC_V3) on */
    uint32_t *smap;        /* the span map (H9), the payload of an in-use block */
    uint64_t smap_n;       /* its entries */
    uint64_t big_bytes;    /* block bytes on the big lists */
    void *big[NBIG];       /* per big class: freed blocks kept whole, last first (H8) */
    uint16_t nbig[NBIG];
    /* format 5 (HEAP_MAGIC) */
    uint64_t bin_map[(NBIN + 63) / 64]; /* bit i: bins[i] is not empty (H10) */
    fnode *bins[NBIN];
};

_Static_assert(sizeof(struct heap_state) <= SUPER_HEAP_BYTES, "heap state fits the superblock");

static inline struct heap_state *heap_state_of(const tm_store *st)
{
    return (struct heap_state *)super_of(st)->heap;
}

/* Whether the heap has a span map (H9) and format 4's tags (H7). */
static inline int heap_smapped(const struct heap_state *h)
{
    return h->magic == HEAP_MAGIC || h->magic == HEAP_MAGIC_V3;
}

static inline int heap_magic_known(uint64_t m)
{
    return m == HEAP_MAGIC || m == HEAP_MAGIC_V3 || m == HEAP_MAGIC_V2 || m == HEAP_MAGIC_V1;
}

/* The bin of a free block of size bytes, MIN_BLOCK <= size < BIN_MAX
 * (H10), and the least size it holds. */
static inline unsigned heap_bin(uint64_t size)
{
    unsigned f;
    if (size < 256)
        return (unsigned)(size >> 4);
    f = 63 - (unsigned)__builtin_clzll(size);
    return 16 + (f - 8) * 16 + (unsigned)((size >> (f - 4)) & 15);
}

static inline uint64_t heap_bin_size(unsigned i)
{
    return i < 16 ? (uint64_t)i << 4 : (uint64_t)(16 + (i - 16) % 16) << ((i - 16) / 16 + 4);
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

/* Whether x, reached through a link that may be damaged, is a free block
 * of the heap: aligned, with a valid free header, ending before the fence
 * (its header is read only once its address is known in range). */
static inline int heap_free_node(const tm_store *st, const struct heap_state *h, const void *x)
{
    uintptr_t a = (uintptr_t)x, lo = (uintptr_t)st->base + HEAP_START;
    uintptr_t end = (uintptr_t)st->base + super_of(st)->size - FENCE_SIZE;
    return a % QUANTUM == 0 && a >= lo && a <= end - MIN_BLOCK && blk_valid(h, x) &&
           !(((const blk *)x)->head & B_INUSE) && blk_size(x) <= end - a;
}

/* The second word of a freed slot of class c (H7, H9), or of a kept block
 * of big class c - NCLASS (H8).  Popping trusts a link only with it, so a
 * write after free that changes a link must also forge the tag of the slot
 * it points to, for the right class; freeing again takes it as a hint only
 * (the list or the bitmap decides).  Format 4's tag is the address mixed
 * with the heap's random key (never 0: a handed-out slot has 0 there);
 * older formats multiply. */
static inline uint64_t heap_tag4(const struct heap_state *h, const void *p, unsigned c)
{
    return (((uintptr_t)p ^ h->key) + c) | 1;
}

static inline uint64_t heap_recent_tag(const struct heap_state *h, const void *p, unsigned c)
{
    if (heap_smapped(h))
        return heap_tag4(h, p, c);
    return (((uintptr_t)p ^ h->key) + c) * 0xD6E8FEB86659FD93ull | 1;
}

/* The most slots a recent list of this heap holds (H7). */
static inline unsigned heap_recent_max(const struct heap_state *h)
{
    return heap_smapped(h) ? RECENT_MAX4 : RECENT_MAX;
}

/* Size classes: 16..256 by 16, then four per power of two up to 4096;
 * heap_class_by16[(n + 15) / 16] is the class of n <= SMALL_MAX. */
extern const uint8_t heap_class_by16[SMALL_MAX / 16 + 1];

static inline unsigned heap_class(size_t n)
{
    return heap_class_by16[(n + 15) >> 4];
}

#define HEAP_CLASS_SIZE(c) ((c) < 16 ? ((c) + 1) * 16u : (5u + ((c) - 16) % 4) << (6 + ((c) - 16) / 4))

static inline uint32_t heap_class_size(unsigned c)
{
    return HEAP_CLASS_SIZE(c);
}

/* Each class's slot size, ceil(2^32 / size) and slots per span. */
struct heap_cls {
    uint32_t size, recip;
    uint16_t nslots;
};
extern const struct heap_cls heap_cls[NCLASS];

/* Big classes, for SMALL_MAX < n <= BIG_MAX: four per power of two. */
static inline unsigned heap_big_class(size_t n)
{
    unsigned b = 63 - (unsigned)__builtin_clzll(n - 1);
    return (b - 12) * 4 + (unsigned)((n - 1) >> (b - 2)) - 4;
}

static inline uint32_t heap_big_size(unsigned i)
{
    return (5u + i % 4) << (10 + i / 4);
}

/* The span map's word for the span at s (H9). */
static inline uint32_t *heap_smap_entry(const tm_store *st, const struct heap_state *h, const void *s)
{
    return &h->smap[((uintptr_t)s >> SPAN_SHIFT) - ((uintptr_t)st->base >> SPAN_SHIFT)];
}

/* heap_smap.c */
int heap_smap_reserve(tm_store *st, struct heap_state *h, uint64_t i);
int heap_smap_build(tm_store *st, struct heap_state *h);

/* Where a block of need bytes whose header is at start, with
 * (start + off) % align == 0, fits in free block x; 0 when it does not.  A
 * gap left in front must be a block of its own; so must the rest behind
 * when the size is exact (a span), else a sliver joins the block. */
static inline uintptr_t heap_fit(const fnode *x, uint64_t need, uint64_t align, uint64_t off, int exact)
{
    uintptr_t b = (uintptr_t)x, end = b + blk_size(x);
    uintptr_t start = ((b + off + align - 1) & ~(uintptr_t)(align - 1)) - off;
    if (start != b && start - b < MIN_BLOCK)
        start += align; /* align >= 32 = MIN_BLOCK here */
    if (start + need > end)
        return 0;
    if (exact && end != start + need && end - (start + need) < MIN_BLOCK)
        return 0;
    return start;
}

/* heap_bins.c: the bins (H10).  heap_bin_best: a free block of at least
 * need bytes (< BIN_MAX) from the bins, or NULL; heap_bin_best_aligned:
 * one where heap_fit places a block, *start, or NULL.  heap_bins_check:
 * NULL when the bins are sound, adding their blocks to *n and the sum of
 * their heap_prio to *hash, else what is wrong, at *at; heap_bins_largest:
 * the largest binned block's size, 0 when none, -1 when damaged. */
void heap_bin_push(struct heap_state *h, fnode *x);
void heap_bin_remove(const tm_store *st, struct heap_state *h, fnode *x);
fnode *heap_bin_best(const tm_store *st, const struct heap_state *h, uint64_t need);
fnode *heap_bin_best_aligned(const tm_store *st, const struct heap_state *h, uint64_t need, uint64_t align,
                             uint64_t off, int exact, uintptr_t *start);
const char *heap_bins_check(const tm_store *st, const struct heap_state *h, uint64_t nfree, uint64_t *n,
                            uint64_t *hash, const void **at);
int64_t heap_bins_largest(const tm_store *st, const struct heap_state *h);

/* The treap's priority (H3), also the checker's hash of a free block: a
 * full 64-bit mixer (splitmix64's finaliser), so that blocks at any regular
 * stride still get independent-looking priorities. */
static inline uint64_t heap_prio(const void *n)
{
    uint64_t x = (uintptr_t)n;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* heap_large.c */
int heap_init(tm_store *st);
blk *heap_large_alloc(tm_store *st, uint64_t need, uint64_t align, uint64_t off, int exact);
void heap_large_free(tm_store *st, blk *b);
int heap_large_resize(tm_store *st, blk *b, uint64_t need);
/* The big lists (H8; HEAP_MAGIC_V3 only).  heap_big_alloc: a kept block of
 * size's class, or NULL when its list is empty.  heap_big_free: 1 when
 * in-use block b went onto its list, 0 when it has no big class or its
 * list is full; aborts on a double free.  heap_big_listed: whether b is on
 * its list. */
void *heap_big_alloc(tm_store *st, size_t size);
int heap_big_free(tm_store *st, blk *b);
int heap_big_listed(const tm_store *st, const blk *b);
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

/* heap.c: the bytes live_bytes counts for allocation p, or 0 (heap_stats). */
uint64_t heap_counted(const tm_store *st, const struct heap_state *h, const blk *m, uintptr_t p);

/* Reports a misuse or a damaged heap, naming the address, and aborts as
 * glibc does. */
static inline __attribute__((noreturn, cold)) void heap_die(const char *what, const void *p)
{
    os_say(what, NULL, (uintptr_t)p);
    abort();
}

/* ---- the fast path (inlined into alloc.c's entry points) ----
 *
 * malloc pops its class's recent list (H7); free pushes onto it, knowing
 * the pointer's class and that it is a slot's start from the span map (H9)
 * alone.  Both touch the slot and the superblock, and free one word of the
 * span map, which is small and stays in cache; neither touches the span's
 * header.  A freed slot carries its tag, on the list or in the bitmap, so
 * a second free is one compare of the slot's second word (then the slow
 * path decides by the bitmap and the list).
 *
 * The fast path takes only what it can decide with a few loads and
 * compares; everything else (an empty or full list, a pointer that is not
 * a slot the span handed out, a tagged slot, not our transaction) goes to
 * heap_alloc and heap_free, which check again from scratch and report
 * misuse.  Ownership of the write transaction is one thread-local compare:
 * the preload's route (tx.c) names st only on the thread that began a
 * write transaction on it and until that ends; every other case (another
 * store's route, tm_transient_begin, no transaction) goes to the slow path,
 * which asks tx_owned.  Nothing here is cached outside the arena: abort,
 * growth and other processes' commits leave nothing stale. */

/* A small block, or NULL: the slow path decides.  routed: the caller has
 * found st in tm_route_store itself. */
static inline void *heap_alloc_fast(tm_store *st, size_t size, int routed)
{
    struct heap_state *h = heap_state_of(st);
    unsigned c;
    uint64_t *q;
    if (unlikely(size > SMALL_MAX || (!routed && tm_route_store != st) || h->magic != HEAP_MAGIC))
        return NULL;
    c = heap_class(size);
    q = h->recent[c];
    /* The head is heap state; only the links stored in free slots can be
     * damaged, so the head is range-checked before it is read, and its tag
     * proves it a listed slot of this class. */
    if (unlikely((uintptr_t)q - ((uintptr_t)st->base + HEAP_START) >=
                     super_of(st)->size - HEAP_START - FENCE_SIZE ||
                 h->nrecent[c] == 0 || q[1] != heap_tag4(h, q, c)))
        return NULL;
    h->recent[c] = (void *)q[0];
    h->nrecent[c]--;
    q[1] = 0;
    return q;
}

/* Whether p is a slot that the live span whose span map word is e has
 * handed out (H9): counted from the span's start, below its mark. */
static inline int heap_smap_handed(uint32_t e, uintptr_t p)
{
    unsigned c = e & SM_CLASS_MASK;
    uint64_t off = p - (p & ~(uintptr_t)(SPAN_SIZE - 1)) - SPAN_HDR, idx = (off * heap_cls[c].recip) >> 32;
    return (e & SM_SPAN) && idx < e >> SM_CAP_SHIFT && idx * heap_cls[c].size == off;
}

/* Frees slot p onto its class's recent list; 0 when the slow path must
 * decide. */
static inline int heap_free_fast(tm_store *st, void *ptr)
{
    struct heap_state *h = heap_state_of(st);
    uintptr_t p = (uintptr_t)ptr, i = (p >> SPAN_SHIFT) - ((uintptr_t)st->base >> SPAN_SHIFT);
    uint64_t *q = (uint64_t *)ptr, tag;
    uint32_t e;
    unsigned c;
    if (unlikely(tm_route_store != st || h->magic != HEAP_MAGIC || i >= h->smap_n))
        return 0;
    e = h->smap[i];
    c = e & SM_CLASS_MASK;
    if (unlikely(!heap_smap_handed(e, p)))
        return 0;
    tag = heap_tag4(h, q, c);
    if (unlikely(q[1] == tag || h->recent[c] == q || h->nrecent[c] >= RECENT_MAX4))
        return 0;
    q[0] = (uintptr_t)h->recent[c];
    q[1] = tag;
    h->recent[c] = q;
    h->nrecent[c]++;
    return 1;
}

#endif
