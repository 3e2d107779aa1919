/*
 * preload.h — what the files of libtmfpreload.so share.  They see the core
 * only through route.h and the public header.
 *
 *   preload.c   the malloc family: routes each call to the arena or glibc
 *   callers.c   inside a transaction: whether libc itself is allocating
 *               (then glibc), or handing memory to the program (the arena)
 *   handing.c   the libc calls that hand memory to their caller (strdup,
 *               asprintf, getline, ...): what they hand over persists
 *   aslr.c      the one re-execution without address randomisation
 *   direct.c    until a store opens, the program calls glibc directly
 */
#ifndef TMF_PRELOAD_H
#define TMF_PRELOAD_H

#include "route.h"

#define EXPORT __attribute__((visibility("default")))
#define NOINLINE __attribute__((noinline))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* glibc's exported entry points, what the fallback path calls. */
void *__libc_malloc(size_t size);
void __libc_free(void *p);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);
void *__libc_memalign(size_t align, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);

/* ---- callers.c ---- */

/* The kinds of allocation a caller may make (callers_libc). */
enum { ALLOC_PLAIN, ALLOC_ZEROED };

/* Set by handing.c while the program is inside a libc call that hands
 * memory to its caller: HAND_ALL, or HAND_ZEROED when only its calloc'd
 * block is handed over (open_memstream's buffer, not its stream). */
enum { HAND_NONE, HAND_ALL, HAND_ZEROED };
extern TLS int preload_handing;

/* This thread's last verdict of callers_libc: key is the return address
 * it was made for, with MEMO_LIBC set when the allocation was libc's (a
 * loop that allocates calls from one place).  Valid while the module list
 * has not been read again since (callers_listed counts the readings), and
 * never set (key 0) while the thread is inside a handing call or listing
 * modules. */
struct callers_memo {
    uintptr_t key;
    unsigned listed;
};
#define MEMO_LIBC ((uintptr_t)1 << 63) /* above every user-space address */
extern TLS struct callers_memo callers_memo;
extern __attribute__((visibility("hidden"))) unsigned callers_listed; /* atomic: bumped under the mutex */

static inline unsigned callers_listed_now(void)
{
    return __atomic_load_n(&callers_listed, __ATOMIC_RELAXED);
}

int callers_libc_slow(const void *ra, int kind);

/* Whether an allocation made inside a write transaction, whose call
 * returns to ra, is libc's own and goes to glibc.  The memo's two compares
 * when the thread's last allocation returned to ra; else a module already
 * seen is looked up under a mutex, and a module loaded since is listed
 * once. */
static inline int callers_libc(const void *ra, int kind)
{
    if (likely((callers_memo.key & ~MEMO_LIBC) == (uintptr_t)ra && callers_memo.listed == callers_listed_now()))
        return callers_memo.key >> 63;
    return callers_libc_slow(ra, kind);
}

/* Whether the memo says at once that the allocation returning to ra is the
 * program's (0: ask callers_libc). */
static inline int callers_program(const void *ra)
{
    return callers_memo.key == (uintptr_t)ra && callers_memo.listed == callers_listed_now();
}

/* Whether ra lies in a system module (libc, the loader, libstdc++, ...). */
int callers_system(const void *ra);
/* At load time: what fork() needs (the modules are listed at the first
 * allocation inside a transaction). */
void callers_init(void);

/* ---- aslr.c ---- */

/* Whether this process should run again without address randomisation:
 * it uses tmfalloc (or TMF_ASLR=off), and nothing forbids it; env is its
 * environment. */
int aslr_reexec_wanted(char **env);
/* Sets ADDR_NO_RANDOMIZE and executes the program again with argv and the
 * environment.  Returns only when that cannot be done. */
void aslr_reexec(char **argv);

/* ---- direct.c ---- */

/* At load time: points the loaded modules' PLT slots for the malloc family
 * at glibc.  direct_end: back at the wrappers, before a store opens; -1
 * when a slot could not be. */
void direct_init(void);
int direct_end(void);

#endif
