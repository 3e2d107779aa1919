/*
 * preload.c — libtmfpreload.so, the LD_PRELOAD interposer.
 *
 * Routes the malloc family: a call goes to the arena when its thread is
 * inside a write transaction (tm_route_store names the store) and the
 * program, not libc, is allocating (callers.c); or when it frees,
 * reallocates or measures a block whose address lies in a store's
 * reservation.  Everything else goes straight to glibc through its
 * exported __libc_* entry points.  The fallback path adds one thread-local
 * load (the allocating calls) or one test of the address against the fixed
 * window every store lies in (route.h; free and the others that take a
 * block): a shift and a compare, no load.  Until the process opens a store
 * it adds nothing: the modules' PLT slots name glibc's functions
 * themselves (direct.c).
 *
 * Rules this file keeps (each a known pitfall of interposers):
 *   - No allocation, stdio or getenv before the first tm_* call: the store
 *     opens lazily, in the core.  Zero-initialised, initial-exec TLS means
 *     "glibc", so calls from the loader, from new threads and before any
 *     initialisation are safe.
 *   - Built with -fno-builtin: GCC must not turn malloc + memset into a
 *     call to calloc inside the interposer.
 *   - Ownership by address: free, realloc, malloc_usable_size and the sized
 *     frees of a glibc pointer go to glibc whatever the thread is doing.
 *     A pointer inside the window is looked up (tm_store_of); one in no
 *     store is glibc's.
 *   - The core's functions it calls on the routed path are hidden aliases
 *     (route.h): direct calls, not through the symbol table.
 *   - realloc policy: a block stays with the allocator that made it.  A
 *     glibc block reallocated inside a transaction stays a glibc block; an
 *     arena block is reallocated in the arena (inside a transaction only).
 *   - free preserves errno.
 *   - Inside a transaction, the caller's return address decides whose
 *     allocation it is (callers.c): each entry point takes its own and
 *     passes it down, never one of this file's.
 * Anything else that must not land in the arena while a transaction is
 * open uses tm_transient_begin/end (the core does so around dlsym).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <dlfcn.h>

#include "preload.h"

/* glibc's own entry points with no __libc_ alias, resolved at load time. */
static size_t (*glibc_usable_size)(void *);
static void *(*glibc_aligned_alloc)(size_t, size_t);

#define PAGE 4096u
#define RA __builtin_return_address(0)

/* Whether p may be the arena's: inside the window (a shift and a compare). */
static inline int in_arena(const void *p)
{
    return route_in_window(p);
}

static inline int valid_alignment(size_t align)
{
    return align && !(align & (align - 1));
}

/* ---- slow paths: the arena ---- */

static NOINLINE void *arena_malloc(tm_store *st, size_t size, const void *ra)
{
    if (callers_libc(ra, ALLOC_PLAIN))
        return __libc_malloc(size);
    return route_malloc(st, size);
}

static NOINLINE void *arena_calloc(tm_store *st, size_t n, size_t size, const void *ra)
{
    if (callers_libc(ra, ALLOC_ZEROED))
        return __libc_calloc(n, size);
    return tm_store_calloc(st, n, size);
}

/* align: a power of two. */
static NOINLINE void *arena_aligned(tm_store *st, size_t align, size_t size, const void *ra)
{
    if (callers_libc(ra, ALLOC_PLAIN))
        return __libc_memalign(align, size);
    return tm_store_aligned_alloc(st, align, size);
}

static NOINLINE void *arena_realloc(void *p, size_t size)
{
    tm_store *st = route_store_of(p);
    return st ? tm_store_realloc(st, p, size) : __libc_realloc(p, size);
}

/* ---- the malloc family ---- */

EXPORT void *malloc(size_t size)
{
    tm_store *st;
    if (likely(!tm_route_store))
        return __libc_malloc(size);
    /* Read again, so that the test above compares the route with zero
     * where it lies and keeps nothing in a register. */
    st = *(tm_store *volatile *)&tm_route_store;
    if (likely(callers_program(RA)))
        return route_malloc(st, size);
    return arena_malloc(st, size, RA);
}

EXPORT void free(void *p)
{
    if (likely(!in_arena(p))) {
        __libc_free(p);
        return;
    }
    route_free(p, __libc_free); /* a pointer in no store is glibc's */
}

EXPORT void cfree(void *p)
{
    free(p);
}

EXPORT void free_sized(void *p, size_t size)
{
    (void)size;
    free(p);
}

EXPORT void free_aligned_sized(void *p, size_t align, size_t size)
{
    (void)align, (void)size;
    free(p);
}

EXPORT void *calloc(size_t n, size_t size)
{
    tm_store *st = tm_route_store;
    if (likely(!st))
        return __libc_calloc(n, size);
    return arena_calloc(st, n, size, RA);
}

static inline void *realloc_from(void *p, size_t size, const void *ra)
{
    if (unlikely(in_arena(p)))
        return arena_realloc(p, size);
    if (unlikely(!p && tm_route_store))
        return arena_malloc(tm_route_store, size, ra);
    return __libc_realloc(p, size);
}

EXPORT void *realloc(void *p, size_t size)
{
    return realloc_from(p, size, RA);
}

EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc_from(p, total, RA);
}

EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
    tm_store *st = tm_route_store;
    void *p;
    if (!valid_alignment(align) || align % sizeof(void *))
        return EINVAL;
    if (unlikely(st) && !callers_libc(RA, ALLOC_PLAIN))
        return tm_store_posix_memalign(st, out, align, size);
    if (!(p = __libc_memalign(align, size)))
        return ENOMEM;
    *out = p;
    return 0;
}

EXPORT void *aligned_alloc(size_t align, size_t size)
{
    tm_store *st = tm_route_store;
    if (likely(!st) && glibc_aligned_alloc) /* whatever this glibc accepts */
        return glibc_aligned_alloc(align, size);
    if (!valid_alignment(align)) {
        errno = EINVAL;
        return NULL;
    }
    if (unlikely(st))
        return arena_aligned(st, align, size, RA);
    return __libc_memalign(align, size);
}

EXPORT void *memalign(size_t align, size_t size)
{
    tm_store *st = tm_route_store;
    if (likely(!st))
        return __libc_memalign(align, size);
    if (align > SIZE_MAX / 2 + 1) { /* as glibc: no power of two is that large */
        errno = EINVAL;
        return NULL;
    }
    while (!valid_alignment(align)) /* glibc rounds up to a power of two */
        align = align & (align - 1) ? (align & (align - 1)) << 1 : 1;
    return arena_aligned(st, align, size, RA);
}

EXPORT void *valloc(size_t size)
{
    tm_store *st = tm_route_store;
    if (likely(!st))
        return __libc_valloc(size);
    return arena_aligned(st, PAGE, size, RA);
}

EXPORT void *pvalloc(size_t size)
{
    tm_store *st = tm_route_store;
    if (likely(!st))
        return __libc_pvalloc(size);
    if (size > SIZE_MAX - PAGE) {
        errno = ENOMEM;
        return NULL;
    }
    return arena_aligned(st, PAGE, (size + PAGE - 1) & ~(size_t)(PAGE - 1), RA);
}

static NOINLINE void resolve_glibc(void)
{
    tm_transient_begin();
    glibc_usable_size = (size_t(*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
    glibc_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    tm_transient_end();
}

EXPORT size_t malloc_usable_size(void *p)
{
    if (!p)
        return 0;
    if (unlikely(in_arena(p))) {
        tm_store *st = route_store_of(p);
        if (st)
            return tm_store_usable_size(st, p);
        /* in the window, in no store: glibc's */
    }
    if (unlikely(!glibc_usable_size))
        resolve_glibc();
    return glibc_usable_size ? glibc_usable_size(p) : 0;
}

/* Whether this library's malloc is the process's (preloaded, or linked
 * before libc), rather than a library opened with dlopen. */
static int routing_malloc(void)
{
    Dl_info ours, theirs;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    return m && dladdr(m, &theirs) && dladdr((void *)resolve_glibc, &ours) && theirs.dli_fbase == ours.dli_fbase;
}

/* At load time, before the program's own constructors and main; glibc
 * passes the program's arguments and environment.  First the one
 * re-execution without randomisation (aslr.c), which would waste the rest;
 * then what the routing needs, while nothing can be inside a transaction. */
__attribute__((constructor)) static void preload_init(int argc, char **argv, char **envp)
{
    (void)argc;
    if (!routing_malloc())
        return;
    if (aslr_reexec_wanted(envp))
        aslr_reexec(argv);
    tm_route_preloaded = 1;
    if (!glibc_usable_size)
        resolve_glibc();
    callers_init();
    tm_route_opening = direct_end;
    direct_init();
}
