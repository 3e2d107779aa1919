/*
 * heap.c — the persistent heap's entry points and its small size classes.
 *
 * All heap state lives in the arena (struct heap_state in the superblock,
 * block headers and span headers in the heap), so a transaction covers it:
 * abort drops every change, commit logs it.  The heap is only changed by the
 * thread that owns the store's write transaction.
 *
 * Sizes up to SMALL_MAX with the default alignment go to size classes (16 to
 * 256 by 16, then four per power of two up to 4096), served from spans: 64
 * KiB blocks at 64 KiB-aligned addresses, each holding slots of one class
 * and a bitmap of the free ones (layout in heap.h).  Each class keeps a list
 * of its spans with a free slot; allocation takes the lowest free slot of the
 * first of them, free sets the slot's bit: both O(1), and both write only the
 * span's first page and the superblock.  A span that empties returns to the
 * large heap unless it is its class's only span with room.  In front of the
 * bitmaps, each class keeps a short list of the slots freed last (H7), so a
 * free followed by an allocation of the same class, the common case, touches
 * the slot and the superblock but not the span's metadata.
 *
 * Everything else is a boundary-tagged block found by best fit
 * (heap_large.c).  A pointer is classified by its 64 KiB-aligned floor: a
 * live span header there (H5) makes it a slot, otherwise it must be a block
 * with a valid header just before it.  These checks are cheap and always on:
 * a double free, a pointer the heap never returned, or a free outside a write
 * transaction is reported with its address and the process aborts, as glibc
 * does.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "os.h"

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

static void partial_push(struct heap_state *h, span *s)
{
    span *head = h->partial[s->cls];
    s->prev = NULL;
    s->next = head;
    if (head)
        head->prev = s;
    h->partial[s->cls] = s;
}

static void partial_unlink(struct heap_state *h, span *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        h->partial[s->cls] = s->next;
    if (s->next)
        s->next->prev = s->prev;
}

static __attribute__((noinline)) span *span_new(tm_store *st, struct heap_state *h, unsigned c)
{
    uint32_t slot = heap_class_size(c);
    unsigned n = (unsigned)((SPAN_SIZE - SPAN_HDR) / slot), w;
    span *s = (span *)heap_large_alloc(st, SPAN_SIZE, SPAN_SIZE, 0, 1);
    if (!s)
        return NULL;
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

static inline void *small_alloc(tm_store *st, struct heap_state *h, unsigned c)
{
    span *s = h->partial[c];
    uint64_t m, grab, *q;
    unsigned w, b, n, k;
    if (h->recent[c]) /* the slot freed last */
        return recent_pop(st, h, c);
    if (unlikely(!s) && !(s = span_new(st, h, c)))
        return NULL;
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
    b = (unsigned)__builtin_ctzll(grab); /* returned; the rest listed, highest first */
    for (grab &= grab - 1; grab; grab &= ~(1ull << k)) {
        k = 63 - (unsigned)__builtin_clzll(grab);
        q = (uint64_t *)((char *)s + SPAN_HDR + (size_t)(w * 64 + k) * s->slot);
        recent_push(h, c, q);
        s->nfree--;
    }
    s->bitmap[w] = m;
    if (!m)
        s->summary &= ~(1ull << w);
    if (unlikely(--s->nfree == 0)) {
        h->partial[c] = s->next;
        if (s->next)
            s->next->prev = NULL;
    }
    h->live_small += s->slot;
    return (char *)s + SPAN_HDR + (size_t)(w * 64 + b) * s->slot;
}

/* The live span that p points into, or NULL. */
static inline span *span_of(const tm_store *st, const struct heap_state *h, uintptr_t p)
{
    uintptr_t a = p & ~(uintptr_t)(SPAN_SIZE - 1);
    const span *s = (const span *)a;
    if (a < (uintptr_t)st->base + HEAP_START)
        return NULL;
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

/* Whether p may be followed: inside the heap, 16-aligned. */
static inline int in_heap(const tm_store *st, uintptr_t p)
{
    return p % QUANTUM == 0 && p >= (uintptr_t)st->base + HEAP_START &&
           p < (uintptr_t)st->base + super_of(st)->size - FENCE_SIZE;
}

static inline void *recent_pop(const tm_store *st, struct heap_state *h, unsigned c)
{
    uint64_t *q = h->recent[c];
    if (unlikely(!in_heap(st, (uintptr_t)q) || h->nrecent[c] == 0 || q[1] != heap_recent_tag(h, q, c)))
        corrupt_list(q);
    h->recent[c] = (void *)q[0];
    h->nrecent[c]--;
    q[1] = 0; /* popped twice (a double free the tag missed): corrupt, above */
    h->live_small += heap_class_size(c);
    return q;
}

/* Whether slot p of class c is on its recent list (a walk of at most
 * RECENT_MAX slots, taken only when p carries the tag). */
static __attribute__((noinline)) int on_recent(const tm_store *st, const struct heap_state *h, unsigned c,
                                               uintptr_t p)
{
    const uint64_t *q = h->recent[c];
    for (unsigned n = 0; q && n < RECENT_MAX; n++, q = (const uint64_t *)q[0]) {
        if (!in_heap(st, (uintptr_t)q))
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

/* Frees slot idx of s into the bitmap. */
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

static inline void small_free(tm_store *st, struct heap_state *h, span *s, uintptr_t p)
{
    unsigned idx = slot_index(s, p, "free(): "), c = s->cls;
    if (unlikely(s->bitmap[idx >> 6] & (1ull << (idx & 63))) || slot_freed(st, h, s, p) ||
        (uintptr_t)h->recent[c] == p)
        misuse("free(): ", "double free detected at", (void *)p);
    if (likely(h->nrecent[c] < RECENT_MAX)) {
        recent_push(h, c, (uint64_t *)p);
        h->live_small -= s->slot;
        return;
    }
    slot_release(st, h, s, idx);
}

/* ---- large blocks ---- */

/* The in-use block whose payload is p; aborts on anything else. */
static blk *block_of(const tm_store *st, const struct heap_state *h, uintptr_t p, const char *op)
{
    blk *b = (blk *)(p - HDR), *n;
    uintptr_t end = (uintptr_t)st->base + super_of(st)->size - FENCE_SIZE;
    if (!blk_valid(h, b))
        misuse(op, "invalid pointer", (void *)p);
    if (!(b->head & B_INUSE))
        misuse(op, "double free detected at", (void *)p);
    if (b->head & (B_SPAN | B_FENCE))
        misuse(op, "invalid pointer", (void *)p);
    n = blk_at(b, blk_size(b));
    if ((uintptr_t)n > end || !(n->head & B_PINUSE) || !blk_valid(h, n))
        misuse(op, "corrupted block (overflow?) at", (void *)p);
    return b;
}

static __attribute__((noinline)) void *large_alloc(tm_store *st, struct heap_state *h, size_t size,
                                                   size_t align)
{
    blk *b;
    if (size > st->max || align > st->max)
        return fail(ENOMEM);
    b = heap_large_alloc(st, ((size + QUANTUM - 1) & ~(uint64_t)(QUANTUM - 1)) + HDR, align, HDR, 0);
    if (!b)
        return NULL;
    h->live_large += blk_size(b);
    return b + 1;
}

/* ---- entry points ---- */

/* The first allocation sets the heap up, and the first change to a
 * format-2 heap of an upgraded store rebuilds its free tree (heap_prio);
 * until a first opener has upgraded the store, an older library may have it
 * open, and the treap keeps format 2's priority.  A magic that is neither
 * is damage, never a reason to start over on top of live data. */
static __attribute__((noinline)) int ensure_init(tm_store *st)
{
    uint64_t magic = heap_state_of(st)->magic;
    int r = 0;
    if (magic == 0)
        return heap_init(st);
    if (magic == HEAP_MAGIC_V1 && st->hdr.version >= FORMAT_VERSION)
        r = heap_rebuild_tree(st, HEAP_MAGIC);
    else if (magic != HEAP_MAGIC && magic != HEAP_MAGIC_V1)
        r = -TM_ECORRUPT;
    if (r < 0)
        errno = -r;
    return r < 0 ? -1 : 0;
}

/* Allocation once the transaction is known to be ours. */
static inline void *alloc_owned(tm_store *st, struct heap_state *h, size_t size, size_t align)
{
    if (likely(size <= SMALL_MAX && align <= QUANTUM))
        return small_alloc(st, h, heap_class(size));
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
    uintptr_t lo = (uintptr_t)st->base + HEAP_START + HDR;
    if (unlikely(!readonly && !tx_owned(st)))
        misuse(op, "outside a write transaction, arena block", (void *)p);
    if (unlikely(p < lo || p >= (uintptr_t)st->base + super_of(st)->size || p % QUANTUM))
        misuse(op, "invalid pointer", (void *)p);
    if (unlikely(h->magic != HEAP_MAGIC) && !(readonly && h->magic == HEAP_MAGIC_V1) &&
        (readonly || h->magic == 0 || ensure_init(st) < 0))
        misuse(op, h->magic ? "heap corrupt (bad heap state), pointer" : "invalid pointer", (void *)p);
    return h;
}

void heap_free(tm_store *st, void *ptr)
{
    uintptr_t p = (uintptr_t)ptr;
    struct heap_state *h = check_ptr(st, p, "free(): ", 0);
    span *s = span_of(st, h, p);
    blk *b;
    if (likely(s != NULL)) {
        small_free(st, h, s, p);
        return;
    }
    b = block_of(st, h, p, "free(): ");
    h->live_large -= blk_size(b);
    heap_large_free(st, b);
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
    return blk_size(block_of(st, h, p, "malloc_usable_size(): ")) - HDR;
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
        old = blk_size(b);
        have = old - HDR;
        if (size <= st->max &&
            heap_large_resize(st, b, ((size + QUANTUM - 1) & ~(uint64_t)(QUANTUM - 1)) + HDR)) {
            h->live_large = h->live_large - old + blk_size(b);
            return ptr;
        }
    }
    if (!(q = alloc_owned(st, h, size, QUANTUM)))
        return NULL;
    memcpy(q, ptr, have < size ? have : size);
    if (s) {
        small_free(st, h, s, p);
    } else {
        h->live_large -= blk_size(b);
        heap_large_free(st, b);
    }
    return q;
}
