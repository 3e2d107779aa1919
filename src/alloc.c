/*
 * alloc.c — the public malloc family over the persistent heap: argument
 * checks and glibc's conventions, on top of heap.c.
 *
 *   malloc(0)          a unique, freeable 16-byte block
 *   calloc(n, s)       NULL + ENOMEM when n * s overflows
 *   realloc(NULL, s)   malloc(s);  realloc(p, 0) frees p and returns NULL
 *   aligned_alloc      any power-of-two alignment; otherwise NULL + EINVAL
 *   posix_memalign     EINVAL unless a power of two multiple of sizeof(void *)
 *   huge sizes         NULL + ENOMEM, the heap unchanged
 * The default-store versions route frees and reallocs by address: a block
 * belongs to the store whose reservation contains it.
 *
 * malloc and free try the heap's inline fast path first (heap.h); what it
 * leaves, heap_alloc and heap_free decide.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "internal.h"

static int pow2(size_t a)
{
    return a && !(a & (a - 1));
}

/* routed: st is this thread's tm_route_store (heap_alloc_fast). */
static inline void *store_malloc(tm_store *st, size_t size, int routed)
{
    void *p = heap_alloc_fast(st, size, routed);
    return likely(p != NULL) ? p : heap_alloc(st, size, QUANTUM);
}

static inline void store_free(tm_store *st, void *p)
{
    if (unlikely(!heap_free_fast(st, p)))
        heap_free(st, p);
}

/* Frees p by the fast path when it is a block of the store this thread's
 * write transaction routes to: 1 then, else 0 (p left alone). */
static inline int free_routed(void *p)
{
    tm_store *st = tm_route_store;
    return likely(st != NULL) && (uintptr_t)p - (uintptr_t)st->base < st->max && likely(heap_free_fast(st, p));
}

void *tm_store_malloc(tm_store *st, size_t size)
{
    return store_malloc(st, size, 0);
}

void tm_store_free(tm_store *st, void *p)
{
    if (p)
        store_free(st, p);
}

/* The preload's hidden names (route.h). */
void *route_malloc(tm_store *st, size_t size)
{
    return store_malloc(st, size, 1);
}

static __attribute__((noinline)) void route_free_slow(void *p, void (*other)(void *))
{
    int saved = errno;
    tm_store *st = tm_store_of(p);
    if (st)
        store_free(st, p);
    errno = saved;
    if (!st)
        other(p);
}

void route_free(void *p, void (*other)(void *))
{
    if (likely(free_routed(p)))
        return;
    route_free_slow(p, other);
}

void *tm_store_calloc(tm_store *st, size_t n, size_t size)
{
    size_t total;
    void *p;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if ((p = heap_alloc(st, total, 16)) != NULL)
        memset(p, 0, total);
    return p;
}

void *tm_store_realloc(tm_store *st, void *p, size_t size)
{
    if (!p)
        return heap_alloc(st, size, 16);
    if (size == 0) {
        heap_free(st, p);
        return NULL;
    }
    return heap_realloc(st, p, size);
}

void *tm_store_aligned_alloc(tm_store *st, size_t align, size_t size)
{
    if (!pow2(align)) {
        errno = EINVAL;
        return NULL;
    }
    return heap_alloc(st, size, align);
}

int tm_store_posix_memalign(tm_store *st, void **out, size_t align, size_t size)
{
    void *p;
    if (!pow2(align) || align % sizeof(void *))
        return EINVAL;
    if (!(p = heap_alloc(st, size, align)))
        return errno;
    *out = p;
    return 0;
}

size_t tm_store_usable_size(tm_store *st, const void *p)
{
    return p ? heap_usable(st, p) : 0;
}

int tm_store_check(tm_store *st, char *msg, size_t len)
{
    read_refresh(st);
    return tm__err(heap_check(st, msg, len));
}

tm_store *tm_store_of(const void *p)
{
    tm_store *st = tm_route_store; /* inside a transaction, most likely its store */
    if (st && (uintptr_t)p - (uintptr_t)st->base < st->max)
        return st;
    return registry_find((uintptr_t)p);
}

tm_store *route_store_of(const void *p) __attribute__((alias("tm_store_of")));

/* ---- the default store ---- */

/* The store that owns p; a pointer of no store is reported as glibc does. */
static tm_store *owner(const void *p, const char *what)
{
    tm_store *st = tm_store_of(p);
    if (!st) {
        os_say(what, NULL, (uintptr_t)p);
        abort();
    }
    return st;
}

/* tm_default()'s answer once it has one (it never changes after): malloc
 * need not call it each time. */
static tm_store *_Atomic default_store;

static __attribute__((noinline)) void *malloc_first(size_t size)
{
    tm_store *st = tm_default();
    if (!st)
        return NULL;
    atomic_store_explicit(&default_store, st, memory_order_release);
    return store_malloc(st, size, 0);
}

void *tm_malloc(size_t size)
{
    tm_store *st = atomic_load_explicit(&default_store, memory_order_acquire);
    if (unlikely(st == NULL))
        return malloc_first(size); /* apart: the fast path saves no registers */
    return store_malloc(st, size, 0);
}

static __attribute__((noinline)) void free_slow(void *p)
{
    if (p)
        store_free(owner(p, "free(): invalid pointer (not in any store)"), p);
}

void tm_free(void *p)
{
    if (likely(free_routed(p))) /* inside a transaction: most likely its store's block */
        return;
    free_slow(p); /* apart: the fast path saves no registers */
}

void *tm_calloc(size_t n, size_t size)
{
    tm_store *st = tm_default();
    return st ? tm_store_calloc(st, n, size) : NULL;
}

void *tm_realloc(void *p, size_t size)
{
    if (!p)
        return tm_malloc(size);
    return tm_store_realloc(owner(p, "realloc(): invalid pointer (not in any store)"), p, size);
}

void *tm_aligned_alloc(size_t align, size_t size)
{
    tm_store *st = tm_default();
    return st ? tm_store_aligned_alloc(st, align, size) : NULL;
}

int tm_posix_memalign(void **out, size_t align, size_t size)
{
    tm_store *st = tm_default();
    return st ? tm_store_posix_memalign(st, out, align, size) : errno;
}

size_t tm_usable_size(const void *p)
{
    if (!p)
        return 0;
    return heap_usable(owner(p, "malloc_usable_size(): invalid pointer (not in any store)"), p);
}

int tm_check(char *msg, size_t len)
{
    tm_store *st = tm_default();
    return st ? tm_store_check(st, msg, len) : errno;
}
