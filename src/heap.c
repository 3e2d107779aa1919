/*
 * heap.c — the persistent heap's entry points and its small size classes.
 *
 * All heap state lives in the arena (struct heap_state in the superblock,
 * block headers, span headers and the span map in the heap), so a
 * transaction covers it: abort drops every change, commit logs it.  The
 * heap is only changed by the thread that owns the store's write
 * transaction.
 *
 * Sizes up to SMALL_MAX with the default alignment go to size classes (16 to
 * 256 by 16, then four per power of two up to 4096), served from spans: 64
 * KiB blocks at 64 KiB-aligned addresses, each holding slots of one class
 * and a bitmap of the free ones (layout in heap.h).  In front of the
 * bitmaps, each class keeps a list of slots freed lately (H7), linked and
 * tagged through the slots themselves: malloc pops it and free pushes onto
 * it, so the common case touches the slot and the superblock, never the
 * span's header.  What free needs to know about a pointer, the span map
 * tells (H9): one word per 64 KiB of arena, the class of the live span
 * there and how many of its slots were ever handed out; it is compact, so
 * it stays in cache where span headers, all at the same offset modulo 64
 * KiB, evict one another.  The fast path is inline in alloc.c (heap.h);
 * this file holds the rest.
 *
 * When a list is empty, an allocation takes the lowest free slot of the
 * class's first span with room (and, from a span being filled, a run of
 * its neighbours onto the list); when it is full, a free goes to the
 * bitmap.  A span that empties returns to the large heap unless it is its
 * class's only span with room.
 *
 * Every freed slot carries its class's tag (heap_recent_tag) in its second
 * word, on the list or in the bitmap, and a handed-out slot has it cleared:
 * a second free finds the tag and goes to the slow path, which decides by
 * the bitmap and the list.  Slots a span never handed out (at or past its
 * map's high-water mark) go to the slow path too.
 *
 * Sizes above SMALL_MAX up to BIG_MAX go to big classes, kept on lists of
 * whole blocks (heap_large.c, H8); everything else is a boundary-tagged
 * block found by best fit.  A pointer is classified by its 64 KiB-aligned
 * floor: a live span header there (H5) makes it a slot, otherwise it must be
 * a block with a valid header just before it.  These checks are cheap and
 * always on: a double free, a pointer the heap never returned, or a free
 * outside a write transaction is reported with its address and the process
 * aborts, as glibc does.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "os.h"

/* The class of a size of 16 * i bytes (i > 0): the least whose size holds it. */
#define LOG2_8_11(n) ((n) >= 2048 ? 11 : (n) >= 1024 ? 10 : (n) >= 512 ? 9 : 8)
#define CLS16(i)                                                                                                  \
    ((i) <= 16 ? ((i) ? (i) - 1 : 0)                                                                              \
               : 16 + (LOG2_8_11((i) * 16 - 1) - 8) * 4 + (((i) * 16 - 1) >> (LOG2_8_11((i) * 16 - 1) - 2)) - 4)
#define R4(i) CLS16(i), CLS16((i) + 1), CLS16((i) + 2), CLS16((i) + 3)
#define R16(i) R4(i), R4((i) + 4), R4((i) + 8), R4((i) + 12)
#define R64(i) R16(i), R16((i) + 16), R16((i) + 32), R16((i) + 48)
const uint8_t heap_class_by16[SMALL_MAX / 16 + 1] = {R64(0), R64(64), R64(128), R64(192), CLS16(256)};
#undef R64
#undef R16
#undef R4
#undef CLS16
#undef LOG2_8_11

#define C(c) {HEAP_CLASS_SIZE(c), (uint32_t)((((uint64_t)1 << 32) + HEAP_CLASS_SIZE(c) - 1) / HEAP_CLASS_SIZE(c)), \
              (uint16_t)((SPAN_SIZE - SPAN_HDR) / HEAP_CLASS_SIZE(c))}
const struct heap_cls heap_cls[NCLASS] = {
    C(0),  C(1),  C(2),  C(3),  C(4),  C(5),  C(6),  C(7),  C(8),  C(9),  C(10), C(11), C(12), C(13), C(14), C(15),
    C(16), C(17), C(18), C(19), C(20), C(21), C(22), C(23), C(24), C(25), C(26), C(27), C(28), C(29), C(30), C(31),
};
#undef C

/* Reports misuse by operation: "free(): double free detected at 0x...". */
static void misuse(const char *op, const char *what, const void *p) __attribute__((noreturn, cold));
static void misuse(const char *op, const char *what, const void *p)
{
    char buf[128];
    size_t a = strlen(op), b = strlen(what);
    if (a + b + 1 > sizeof buf)
        a = b = 0;
    memcpy(buf, op, a);
    memcpy(buf + a, what, b + 1);
    heap_die(buf, p);
}

static void *fail(int code)
{
    errno = code;
    return NULL;
}

/* ---- spans ---- */

static void partial_unlink(struct heap_state *h, span *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        h->partial[s->cls] = s->next;
    if (s->next)
        s->next->prev = s->prev;
}

static void partial_push(struct heap_state *h, span *s)
{
    span *head = h->partial[s->cls];
    s->prev = NULL;
    s->next = head;
    if (head)
        head->prev = s;
    h->partial[s->cls] = s;
}

static __attribute__((noinline)) span *span_new(tm_store *st, struct heap_state *h, unsigned c)
{
    uint32_t slot = heap_class_size(c);
    unsigned n = (unsigned)((SPAN_SIZE - SPAN_HDR) / slot), w;
    span *s = (span *)heap_large_alloc(st, SPAN_SIZE, SPAN_SIZE, 0, 1);
    if (!s)
        return NULL;
    if (heap_smapped(h) &&
        heap_smap_reserve(st, h, ((uintptr_t)s >> SPAN_SHIFT) - ((uintptr_t)st->base >> SPAN_SHIFT)) < 0) {
        heap_large_free(st, (blk *)s);
        return NULL;
    }
    blk_set(h, s, SPAN_SIZE, blk_flags(s) | B_SPAN);
    s->self = (uintptr_t)s ^ h->key;
    s->slot = slot;
    s->recip = (uint32_t)(((1ull << 32) + slot - 1) / slot);
    s->cls = (uint16_t)c;
    s->nslots = s->nfree = (uint16_t)n;
    s->pad = 0;
    s->summary = 0;
    for (w = 0; w < 64; w++) {
        uint64_t bits = n >= (w + 1) * 64 ? ~0ull : n > w * 64 ? (1ull << (n - w * 64)) - 1 : 0;
        s->bitmap[w] = bits;
        if (bits)
            s->summary |= 1ull << w;
    }
    if (heap_smapped(h))
        *heap_smap_entry(st, h, s) = c | SM_SPAN;
    h->nspans++;
    h->span_slots += (uint64_t)n * slot;
    partial_push(h, s);
    return s;
}

static __attribute__((noinline)) void span_release(tm_store *st, struct heap_state *h, span *s)
{
    if (h->partial[s->cls] == s && !s->next)
        return; /* the class's only span with room: keep it */
    partial_unlink(h, s);
    h->nspans--;
    h->span_slots -= (uint64_t)s->nslots * s->slot;
    s->self = 0;
    if (heap_smapped(h))
        *heap_smap_entry(st, h, s) = 0;
    heap_large_free(st, (blk *)s);
}

static inline void *recent_pop(const tm_store *st, struct heap_state *h, unsigned c);

/* Puts slot q on class c's recent list: linked through its first word,
 * tagged in its second (H7). */
static inline void recent_push(struct heap_state *h, unsigned c, uint64_t *q)
{
    q[0] = (uintptr_t)h->recent[c];
    q[1] = heap_recent_tag(h, q, c);
    h->recent[c] = q;
    h->nrecent[c]++;
}

/* An allocation from a bitmap word whose free slots are one run (a span
 * being filled, not churned) takes this many bytes of neighbouring slots along
 * onto the (empty) recent list: the allocations after it, in this
 * transaction or the next ones, write their slots and the superblock but
 * not the span's metadata page.  Churned words give one slot at a time, so
 * recently freed, cache-warm slots keep coming back first. */
#define REFILL_BYTES 2048u
#define REFILL_MAX 16u

static __attribute__((noinline)) void *small_alloc(tm_store *st, struct heap_state *h, unsigned c)
{
    span *s = h->partial[c];
    uint64_t m, grab, *q;
    unsigned w, b, n, k, top;
    if (h->recent[c]) /* the slot freed last */
        return recent_pop(st, h, c);
    if (unlikely(!s) && !(s = span_new(st, h, c)))
        return NULL;
    if (unlikely(s->nfree == 0 || s->summary == 0 || s->bitmap[__builtin_ctzll(s->summary)] == 0))
        heap_die("heap corrupt: a span on its class's partial list has no free slot at", s);
    w = (unsigned)__builtin_ctzll(s->summary);
    m = s->bitmap[w];
    n = REFILL_BYTES / s->slot;
    if ((m + (m & -m)) & m) /* the free slots are not one run: a churned word */
        n = 1;
    n = n > REFILL_MAX ? REFILL_MAX : n < 1 ? 1 : n;
    for (grab = 0, k = 0; k < n && m; k++) { /* the n lowest free slots */
        grab |= m & -m;
        m &= m - 1;
    }
    top = w * 64 + 64 - (unsigned)__builtin_clzll(grab); /* past the highest taken */
    b = (unsigned)__builtin_ctzll(grab); /* returned; the rest listed, highest first */
    for (grab &= grab - 1; grab; grab &= ~(1ull << k)) {
        k = 63 - (unsigned)__builtin_clzll(grab);
        q = (uint64_t *)((char *)s + SPAN_HDR + (size_t)(w * 64 + k) * s->slot);
        recent_push(h, c, q);
        s->nfree--;
        if (heap_smapped(h)) /* out of the bitmap, onto the list: H7 */
            h->live_small += s->slot;
    }
    s->bitmap[w] = m;
    if (!m)
        s->summary &= ~(1ull << w);
    if (unlikely(--s->nfree == 0)) {
        h->partial[c] = s->next;
        if (s->next)
            s->next->prev = NULL;
    }
    if (heap_smapped(h)) { /* every slot below the lowest free one is in use: H9 */
        uint32_t *e = heap_smap_entry(st, h, s);
        if (top > *e >> SM_CAP_SHIFT)
            *e = (*e & ~SM_CAP_MASK) | top << SM_CAP_SHIFT;
    }
    h->live_small += s->slot;
    q = (uint64_t *)((char *)s + SPAN_HDR + (size_t)(w * 64 + b) * s->slot);
    q[1] = 0; /* a freed slot's tag, if it had one */
    return q;
}

/* The live span that p points into, or NULL.  A heap with a span map asks
 * it first (H9): a large block's free need not read the 64 KiB-aligned
 * line below it. */
static inline span *span_of(const tm_store *st, const struct heap_state *h, uintptr_t p)
{
    uintptr_t a = p & ~(uintptr_t)(SPAN_SIZE - 1);
    const span *s = (const span *)a;
    if (a < (uintptr_t)st->base + HEAP_START)
        return NULL;
    if (heap_smapped(h)) {
        uint64_t i = (a >> SPAN_SHIFT) - ((uintptr_t)st->base >> SPAN_SHIFT);
        if (i >= h->smap_n || !(h->smap[i] & SM_SPAN))
            return NULL;
    }
    if ((s->head & (B_SIZE | B_INUSE | B_SPAN | B_FENCE)) != (SPAN_SIZE | B_INUSE | B_SPAN))
        return NULL;
    if (s->self != (a ^ h->key) || !blk_valid(h, s))
        return NULL;
    return (span *)s;
}

/* The slot index of p in s; aborts when p is not a slot's start. */
static inline unsigned slot_index(const span *s, uintptr_t p, const char *op)
{
    uintptr_t first = (uintptr_t)s + SPAN_HDR;
    uint64_t off = p - first, idx = (off * s->recip) >> 32;
    if (unlikely(p < first || idx >= s->nslots || idx * s->slot != off))
        misuse(op, "invalid pointer", (void *)p);
    return (unsigned)idx;
}

/* ---- the recent lists (H7) ---- */

/* Their links and tags live in freed slots, where a write after free can
 * reach them: every entry is checked before it is followed or handed out. */
static void corrupt_list(const void *p) __attribute__((noreturn, cold));
static void corrupt_list(const void *p)
{
    heap_die("malloc(): corrupted free list (write after free?) at", p);
}

/* Whether a free-list link p may be followed: inside the heap, 16-aligned. */
static inline int link_ok(const tm_store *st, uintptr_t p)
{
    return p % QUANTUM == 0 && p >= (uintptr_t)st->base + HEAP_START &&
           p < (uintptr_t)st->base + super_of(st)->size - FENCE_SIZE;
}

static inline void *recent_pop(const tm_store *st, struct heap_state *h, unsigned c)
{
    uint64_t *q = h->recent[c];
    if (unlikely(!link_ok(st, (uintptr_t)q) || h->nrecent[c] == 0 || q[1] != heap_recent_tag(h, q, c)))
        corrupt_list(q);
    h->recent[c] = (void *)q[0];
    h->nrecent[c]--;
    q[1] = 0; /* popped twice (a double free the tag missed): corrupt, above */
    if (!heap_smapped(h)) /* H7: listed slots count as live from format 4 on */
        h->live_small += heap_class_size(c);
    return q;
}

/* Whether slot p of class c is on its recent list (a walk of at most
 * heap_recent_max slots, taken only when p carries the tag). */
static __attribute__((noinline)) int on_recent(const tm_store *st, const struct heap_state *h, unsigned c,
                                               uintptr_t p)
{
    const uint64_t *q = h->recent[c];
    for (unsigned n = 0, max = heap_recent_max(h); q && n < max; n++, q = (const uint64_t *)q[0]) {
        if (!link_ok(st, (uintptr_t)q))
            corrupt_list(q);
        if ((uintptr_t)q == p)
            return 1;
    }
    return 0;
}

/* Whether the in-use slot p was freed already (it sits on a recent list). */
static inline int slot_freed(const tm_store *st, const struct heap_state *h, const span *s, uintptr_t p)
{
    return unlikely(((const uint64_t *)p)[1] == heap_recent_tag(h, (void *)p, s->cls)) && on_recent(st, h, s->cls, p);
}

/* Frees slot idx of s into the bitmap; the slot keeps its tag (in a heap
 * of format 4), so that freeing it again takes the slow path. */
static inline void slot_release(tm_store *st, struct heap_state *h, span *s, unsigned idx)
{
    unsigned w = idx >> 6;
    uint64_t bit = 1ull << (idx & 63), m = s->bitmap[w];
    if (!m)
        s->summary |= 1ull << w;
    s->bitmap[w] = m | bit;
    h->live_small -= s->slot;
    if (unlikely(++s->nfree == 1))
        partial_push(h, s);
    if (unlikely(s->nfree == s->nslots))
        span_release(st, h, s);
}

static void small_free(tm_store *st, struct heap_state *h, span *s, uintptr_t p)
{
    unsigned idx = slot_index(s, p, "free(): "), c = s->cls;
    if (unlikely(s->bitmap[idx >> 6] & (1ull << (idx & 63))) || slot_freed(st, h, s, p) ||
        (uintptr_t)h->recent[c] == p)
        misuse("free(): ", "double free detected at", (void *)p);
    if (likely(h->nrecent[c] < heap_recent_max(h))) {
        recent_push(h, c, (uint64_t *)p);
        if (!heap_smapped(h))
            h->live_small -= s->slot;
        return;
    }
    if (heap_smapped(h))
        ((uint64_t *)p)[1] = heap_recent_tag(h, (void *)p, c);
    slot_release(st, h, s, idx);
}

/* Converting to format 4: each listed slot gets format 4's tag, and
 * live_small counts the listed slots (H7). */
static void recent_convert(const tm_store *st, struct heap_state *h)
{
    for (unsigned c = 0; c < NCLASS; c++) {
        uint64_t *q = h->recent[c];
        for (unsigned n = 0; q; n++, q = (uint64_t *)q[0]) {
            if (n >= h->nrecent[c] || !link_ok(st, (uintptr_t)q) || q[1] != heap_recent_tag(h, q, c))
                corrupt_list(q);
            q[1] = heap_tag4(h, q, c);
        }
        h->live_small += (uint64_t)h->nrecent[c] * heap_class_size(c);
    }
}

/* ---- large blocks ---- */

/* The in-use block whose payload is p; aborts on anything else. */
static blk *block_of(const tm_store *st, const struct heap_state *h, uintptr_t p, const char *op)
{
    blk *b = (blk *)(p - BLK_HDR);
    if (!blk_valid(h, b))
        misuse(op, "invalid pointer", (void *)p);
    if (!(b->head & B_INUSE))
        misuse(op, "double free detected at", (void *)p);
    if (b->head & (B_SPAN | B_FENCE))
        misuse(op, "invalid pointer", (void *)p);
    if (blk_size(b) > (uintptr_t)st->base + super_of(st)->size - FENCE_SIZE - (uintptr_t)b)
        misuse(op, "corrupted block (overflow?) at", (void *)p);
    return b;
}

/* Aborts unless the block after in-use block b tells the truth about b:
 * checked before an operation changes that block (an overflow from b may
 * have damaged it). */
static void check_next(const struct heap_state *h, const blk *b, const char *op)
{
    const blk *n = blk_at(b, blk_size(b));
    if (!(n->head & B_PINUSE) || !blk_valid(h, n))
        misuse(op, "corrupted block (overflow?) at", b + 1);
}

static __attribute__((noinline)) void *large_alloc(tm_store *st, struct heap_state *h, size_t size,
                                                   size_t align)
{
    blk *b;
    if (size > st->max || align > st->max)
        return fail(ENOMEM);
    b = heap_large_alloc(st, ((size + QUANTUM - 1) & ~(uint64_t)(QUANTUM - 1)) + BLK_HDR, align, BLK_HDR, 0);
    if (!b)
        return NULL;
    h->live_large += blk_size(b);
    return b + 1;
}

/* A block of a big class comes from its list (H8), or from the tree at
 * its class's size, so that it can go back on that list when freed. */
static void *big_alloc(tm_store *st, struct heap_state *h, size_t size)
{
    void *p = heap_big_alloc(st, size);
    return p ? p : large_alloc(st, h, heap_big_size(heap_big_class(size)), QUANTUM);
}

/* Frees in-use block b: onto its big list when it has one and room,
 * else into the free tree. */
static void large_free(tm_store *st, struct heap_state *h, blk *b)
{
    if (h->magic == HEAP_MAGIC_V3 && heap_big_free(st, b))
        return;
    check_next(h, b, "free(): ");
    h->live_large -= blk_size(b);
    heap_large_free(st, b);
}

/* ---- entry points ---- */

/* The first allocation sets the heap up; the first change to an older
 * heap of an upgraded store converts it: a format-2 heap's free tree is
 * rebuilt (heap_prio), a heap of format 2 or 3 gets a span map (H9), and
 * every older heap's free blocks below BIN_MAX move into bins (H10), its
 * big lists (H8) emptied first, under HEAP_MAGIC.  Until a first opener
 * has upgraded the store, an older library may have it open, and the heap
 * keeps its format.  A magic that is none of these is damage, never a
 * reason to start over on top of live data. */
static __attribute__((noinline)) int ensure_init(tm_store *st)
{
    struct heap_state *h = heap_state_of(st);
    uint64_t magic = h->magic;
    int r = 0;
    if (magic == 0)
        return heap_init(st);
    if (!heap_magic_known(magic))
        r = -TM_ECORRUPT;
    else if (st->hdr.version < FORMAT_VERSION)
        return 0;
    if (r == 0 && magic == HEAP_MAGIC_V1)
        r = heap_rebuild_tree(st, HEAP_MAGIC_V2);
    if (r == 0 && h->magic == HEAP_MAGIC_V2) {
        h->big_bytes = 0;
        memset(h->big, 0, sizeof h->big);
        memset(h->nbig, 0, sizeof h->nbig);
        if (heap_smap_build(st, h) < 0)
            return -1; /* errno set, the heap unchanged but for the freed map */
        recent_convert(st, h);
        h->magic = HEAP_MAGIC_V3;
    }
    if (r == 0 && h->magic == HEAP_MAGIC_V3)
        r = heap_rebuild_tree(st, HEAP_MAGIC);
    if (r < 0)
        errno = -r;
    return r < 0 ? -1 : 0;
}

/* Allocation once the transaction is known to be ours. */
static inline void *alloc_owned(tm_store *st, struct heap_state *h, size_t size, size_t align)
{
    if (likely(size <= SMALL_MAX && align <= QUANTUM))
        return small_alloc(st, h, heap_class(size));
    if (size <= BIG_MAX && align <= QUANTUM && h->magic == HEAP_MAGIC_V3)
        return big_alloc(st, h, size);
    return large_alloc(st, h, size, align);
}

void *heap_alloc(tm_store *st, size_t size, size_t align)
{
    struct heap_state *h = heap_state_of(st);
    if (unlikely(!tx_owned(st)))
        return fail(TM_ENOTX);
    if (unlikely(h->magic != HEAP_MAGIC) && ensure_init(st) < 0)
        return NULL;
    return alloc_owned(st, h, size, align);
}

/* Checks what every free, realloc and usable_size needs: a write
 * transaction (unless readonly), an initialised heap, an address inside it. */
static inline struct heap_state *check_ptr(tm_store *st, uintptr_t p, const char *op, int readonly)
{
    struct heap_state *h = heap_state_of(st);
    uintptr_t lo = (uintptr_t)st->base + HEAP_START + BLK_HDR;
    if (unlikely(!readonly && !tx_owned(st)))
        misuse(op, "outside a write transaction, arena block", (void *)p);
    if (unlikely(p < lo || p >= (uintptr_t)st->base + super_of(st)->size || p % QUANTUM))
        misuse(op, "invalid pointer", (void *)p);
    if (unlikely(h->magic != HEAP_MAGIC) &&
        !(readonly && heap_magic_known(h->magic)) &&
        (readonly || h->magic == 0 || ensure_init(st) < 0))
        misuse(op, h->magic ? "heap corrupt (bad heap state), pointer" : "invalid pointer", (void *)p);
    if (unlikely(heap_smapped(h) && p == (uintptr_t)h->smap)) /* a block of the heap's own, never returned */
        misuse(op, "invalid pointer", (void *)p);
    return h;
}

void heap_free(tm_store *st, void *ptr)
{
    uintptr_t p = (uintptr_t)ptr;
    struct heap_state *h = check_ptr(st, p, "free(): ", 0);
    span *s = span_of(st, h, p);
    if (likely(s != NULL)) {
        small_free(st, h, s, p);
        return;
    }
    large_free(st, h, block_of(st, h, p, "free(): "));
}

size_t heap_usable(tm_store *st, const void *ptr)
{
    uintptr_t p = (uintptr_t)ptr;
    struct heap_state *h = check_ptr(st, p, "malloc_usable_size(): ", 1);
    span *s = span_of(st, h, p);
    if (s) {
        slot_index(s, p, "malloc_usable_size(): ");
        return s->slot;
    }
    return blk_size(block_of(st, h, p, "malloc_usable_size(): ")) - BLK_HDR;
}

/* The bytes that live_bytes counts for p, a live allocation of a format-4
 * heap whose span map block (m, before the map) was found sound: its slot,
 * or its block with the header; 0 when p is neither, as read without
 * trusting the arena (tm_stats reports a damaged heap; it does not stop). */
uint64_t heap_counted(const tm_store *st, const struct heap_state *h, const blk *m, uintptr_t p)
{
    uintptr_t base = (uintptr_t)st->base, hi = base + super_of(st)->size;
    uintptr_t i = (p >> SPAN_SHIFT) - (base >> SPAN_SHIFT);
    const blk *b = (const blk *)(p - BLK_HDR);
    if (p % QUANTUM || p < base + HEAP_START + BLK_HDR || p >= hi - FENCE_SIZE ||
        h->smap_n > (blk_size(m) - BLK_HDR) / sizeof *h->smap)
        return 0;
    if (i < h->smap_n && (h->smap[i] & SM_SPAN)) { /* in a live span: a slot it handed out, or nothing */
        unsigned c = h->smap[i] & SM_CLASS_MASK;
        return c < NCLASS && heap_smap_handed(h->smap[i], p) ? heap_class_size(c) : 0;
    }
    if (!blk_valid(h, b) || (b->head & (B_INUSE | B_SPAN | B_FENCE)) != B_INUSE ||
        blk_size(b) > hi - FENCE_SIZE - (uintptr_t)b)
        return 0;
    return blk_size(b);
}

/* realloc for p != NULL and size > 0: in place when the block allows. */
void *heap_realloc(tm_store *st, void *ptr, size_t size)
{
    uintptr_t p = (uintptr_t)ptr;
    struct heap_state *h = check_ptr(st, p, "realloc(): ", 0);
    span *s = span_of(st, h, p);
    blk *b = NULL;
    size_t have;
    void *q;

    if (s) {
        unsigned idx = slot_index(s, p, "realloc(): ");
        if ((s->bitmap[idx >> 6] & (1ull << (idx & 63))) || slot_freed(st, h, s, p))
            misuse("realloc(): ", "pointer already freed:", ptr);
        have = s->slot;
        if (size <= have && (size > have / 2 || heap_class(size) == s->cls))
            return ptr;
    } else {
        uint64_t old;
        b = block_of(st, h, p, "realloc(): ");
        if (h->magic == HEAP_MAGIC_V3 && heap_big_listed(st, b))
            misuse("realloc(): ", "pointer already freed:", ptr);
        check_next(h, b, "realloc(): ");
        old = blk_size(b);
        have = old - BLK_HDR;
        if (size <= st->max &&
            heap_large_resize(st, b, ((size + QUANTUM - 1) & ~(uint64_t)(QUANTUM - 1)) + BLK_HDR)) {
            h->live_large = h->live_large - old + blk_size(b);
            return ptr;
        }
    }
    if (!(q = alloc_owned(st, h, size, QUANTUM)))
        return NULL;
    memcpy(q, ptr, have < size ? have : size);
    if (s)
        small_free(st, h, s, p);
    else
        large_free(st, h, b);
    return q;
}
