/*
 * route.h — where this thread's malloc-family calls go: the state the
 * preload reads, and all it reads of the core.
 *
 * tm_route_store is the store whose write transaction this thread has open
 * and where its allocations go; NULL, the zero of every new thread, means
 * glibc.  tm_route_tx counts the write transactions this thread has open
 * over all stores (the test of interpose.c's read(2) wrappers).  Both are
 * initial-exec TLS: reading them never allocates.
 *
 * tm_route_preloaded is set by the preload when it loads: this process's
 * malloc-family calls are routed.  Without it, a plain malloc inside a
 * transaction goes to glibc, which the core warns of (layout.c).
 * tm_route_opening, also set by the preload, runs before every store
 * opens: the preload makes sure its wrappers are called (preload/direct.c);
 * below 0 when it cannot, and the store does not open.  tm_route_opened is
 * set before that, even while the hook is unset: a preload whose
 * constructor runs after a store opened (from an earlier constructor)
 * leaves the wrappers in place.
 *
 * [tm_arena_lo, tm_arena_hi) holds the reservations of every open store:
 * a pointer outside it is never the arena's (one subtraction and one
 * compare; the exact owner is tm_store_of()).
 *
 * Under the preload every store lies in the window [ROUTE_WINDOW_LO,
 * ROUTE_WINDOW_HI), 32 to 64 TiB (tm_open refuses a store outside it), so
 * the preload's free tells a pointer that is never the arena's with a
 * shift and a compare, and no load.  A pointer inside the window may
 * still be in no store: tm_store_of() has the last word.
 */
#ifndef TMF_ROUTE_H
#define TMF_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "tmfalloc.h"

#define TLS __attribute__((tls_model("initial-exec"))) __thread

extern TLS tm_store *tm_route_store;
extern TLS int tm_route_tx;
extern _Atomic uintptr_t tm_arena_lo, tm_arena_hi;
extern int tm_route_preloaded;
extern int (*tm_route_opening)(void);
extern int tm_route_opened; /* set (atomically) before the first store opens */

/* Whether p lies inside some store's reservation. */
static inline int route_in_arena(const void *p)
{
    uintptr_t lo = tm_arena_lo;
    return (uintptr_t)p - lo < tm_arena_hi - lo;
}

/* The window: the addresses that, shifted right by ROUTE_WINDOW_SHIFT, are 1. */
#define ROUTE_WINDOW_SHIFT 45
#define ROUTE_WINDOW_LO ((uintptr_t)1 << ROUTE_WINDOW_SHIFT)
#define ROUTE_WINDOW_HI ((uintptr_t)2 << ROUTE_WINDOW_SHIFT)
#define ROUTE_WINDOW_TEXT "[0x200000000000, 0x400000000000)"

/* Whether p lies inside the window. */
static inline int route_in_window(const void *p)
{
    return (uintptr_t)p >> ROUTE_WINDOW_SHIFT == 1;
}

/* The preload's way into the heap (alloc.c).  Declared here, outside the
 * public header, they are hidden: the preload, linked with the core, calls
 * them directly, not through its symbol table.
 *
 * route_malloc(st, size) is tm_store_malloc(st, size) for st read from
 * tm_route_store by the caller, and route_store_of is tm_store_of.  route_free(p, other) frees p, a block of some store,
 * leaving errno as it was; a pointer that lies in no store it passes to
 * other (glibc's free), as its last act. */
void *route_malloc(tm_store *st, size_t size);
void route_free(void *p, void (*other)(void *));
tm_store *route_store_of(const void *p);

/* Whether the reservation [base, base + max) lies wholly inside the window. */
static inline int route_window_holds(uint64_t base, uint64_t max)
{
    return base >= ROUTE_WINDOW_LO && base < ROUTE_WINDOW_HI && max <= ROUTE_WINDOW_HI - base;
}

#endif
