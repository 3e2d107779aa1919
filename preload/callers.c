/*
 * callers.c — inside a write transaction, whose allocation is it?
 *
 * The program's allocations go to the arena; libc's own must not.  libc
 * allocates for itself from inside the program's calls: stdout's buffer at
 * the first printf, a new thread's TLS vector and stack cache at
 * pthread_create, locale data, dlopen and dlerror state, the resolver,
 * atexit lists.  In the arena these would outlive the transaction in
 * structures libc writes later, outside any transaction (a stray write),
 * or be rolled back under libc's feet by an abort.  So the caller decides:
 * an allocation called from a system module — libc, the dynamic loader,
 * libstdc++, libgcc's unwinder, libc's NSS, resolver and gconv modules —
 * goes to glibc, found by the call's return address.  The loader's always
 * do (a dlopen inside any call); for the others, three exceptions:
 *
 *   - libstdc++'s operator new is the program's own allocation (containers,
 *     new expressions): the arena.  libstdc++'s internals that call malloc
 *     directly (the exception objects and their emergency pool) stay out.
 *   - _IO_str_overflow grows the buffer of a dynamic string stream, which
 *     belongs to the program (open_memstream's, vasprintf's): the arena.
 *   - While the program is inside one of the libc calls that hand memory
 *     to their caller (strdup, asprintf, getline, realpath(p, NULL),
 *     scandir, ...: handing.c sets preload_handing), libc's allocations
 *     go to the arena, but for a stream's buffer (_IO_file_doallocate: a
 *     getline on a fresh stream), which libc keeps.  open_memstream hands
 *     over only its buffer, which it callocs; the stream itself, which
 *     libc links into its list of open files, is malloc'd and stays out.
 *
 * The modules are listed at the first allocation inside a transaction and
 * again whenever a return address falls in none of them (a library loaded
 * since).  Lookups take
 * a mutex: only allocations inside transactions come here.  A module
 * loaded where an unloaded one was takes its kind when the list is made
 * again, at the next miss; until then it has the old one's.
 */
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <string.h>

#include "preload.h"

#define MAX_MODULES 512
#define MAX_SPANS 16

struct span {
    uintptr_t lo, hi;
};

enum { USER, SYSTEM, LOADER }; /* the kinds of module */

struct module {
    uintptr_t lo, hi; /* the hull of its PT_LOAD segments */
    int kind;
};

static struct module mods[MAX_MODULES];
static unsigned nmods;
static struct span to_arena[MAX_SPANS], kept_by_libc[MAX_SPANS];
static unsigned nto_arena, nkept;
static int cxx_seen;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static TLS int busy; /* this thread is listing modules: its allocations are ours */

/* The memo (preload.h).  A library unloaded and another loaded in its
 * place, then called from the very same address before any miss, would go
 * unseen.  callers_system, which every handing call makes before it marks
 * the thread, clears it, and a verdict made while handing is not kept. */
unsigned callers_listed;
TLS struct callers_memo callers_memo;

TLS int preload_handing;

/* The kind of a module, by its file name. */
static int kind_of(const char *path)
{
    static const char *const prefixes[] = {
        "libc.so.", "libstdc++.so.", "libgcc_s.so.", "libm.so.", "libmvec.so.",
        "libpthread.so.", "libdl.so.", "librt.so.", "libutil.so.", "libresolv.so.", "libanl.so.",
        "libnsl.so.", "libnss_", "libBrokenLocale.so.", "libc_malloc_debug.so.", "libthread_db.so.",
        "linux-vdso.so.", "linux-gate.so.",
    };
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strncmp(base, "ld-linux", 8) == 0)
        return LOADER;
    if (strstr(path, "/gconv/"))
        return SYSTEM;
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (strncmp(base, prefixes[i], strlen(prefixes[i])) == 0)
            return SYSTEM;
    return USER;
}

static int in_spans(const struct span *s, unsigned n, uintptr_t a)
{
    for (unsigned i = 0; i < n; i++)
        if (a - s[i].lo < s[i].hi - s[i].lo)
            return 1;
    return 0;
}

/* The code of a function of the library soname, as its symbol gives it. */
static void add_function(struct span *s, unsigned *n, const char *soname, const char *name)
{
    void *h = dlopen(soname, RTLD_LAZY | RTLD_NOLOAD), *f;
    const ElfW(Sym) *sym = NULL;
    Dl_info info;
    if (!h)
        return;
    if ((f = dlsym(h, name)) && *n < MAX_SPANS && dladdr1(f, &info, (void **)&sym, RTLD_DL_SYMENT) && sym &&
        sym->st_size) {
        s[*n].lo = (uintptr_t)f;
        s[*n].hi = (uintptr_t)f + sym->st_size;
        ++*n;
    }
    dlclose(h);
}

static void add_cxx_functions(void)
{
    static const char *const news[] = {
        "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t", "_ZnwmSt11align_val_t",
        "_ZnamSt11align_val_t", "_ZnwmSt11align_val_tRKSt9nothrow_t", "_ZnamSt11align_val_tRKSt9nothrow_t",
    };
    for (size_t i = 0; i < sizeof news / sizeof *news; i++)
        add_function(to_arena, &nto_arena, "libstdc++.so.6", news[i]);
    cxx_seen = 1;
}

static int list_one(struct dl_phdr_info *info, size_t size, void *ctx)
{
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    (void)size, (void)ctx;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        lo = info->dlpi_addr + ph->p_vaddr < lo ? info->dlpi_addr + ph->p_vaddr : lo;
        hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz > hi ? info->dlpi_addr + ph->p_vaddr + ph->p_memsz : hi;
    }
    if (lo >= hi)
        return 0;
    for (unsigned i = 0; i < nmods; i++)
        if (mods[i].lo == lo) { /* seen, or another module where one was */
            mods[i].hi = hi;
            mods[i].kind = kind_of(info->dlpi_name);
            return 0;
        }
    if (nmods < MAX_MODULES) {
        mods[nmods].lo = lo;
        mods[nmods].hi = hi;
        mods[nmods].kind = kind_of(info->dlpi_name);
        nmods++;
    }
    if (!cxx_seen && strstr(info->dlpi_name, "/libstdc++.so."))
        cxx_seen = 2; /* its functions are looked up once the walk is over */
    return 0;
}

/* Under mu, with busy set. */
static void list_modules(void)
{
    __atomic_fetch_add(&callers_listed, 1, __ATOMIC_RELAXED);
    dl_iterate_phdr(list_one, NULL);
    if (cxx_seen == 2)
        add_cxx_functions();
}

/* Held across fork(), so that a child never inherits it locked. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&mu);
}

static void fork_done(void)
{
    pthread_mutex_unlock(&mu);
}

void callers_init(void)
{
    (void)pthread_atfork(fork_prepare, fork_done, fork_done); /* fails only without memory */
}

/* Under mu, with busy set: the modules and libc's functions, at the first
 * allocation inside a transaction (a program that never opens one pays
 * nothing at start-up).  Their own allocations go to glibc (busy). */
static void list_first(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    list_modules();
    add_function(to_arena, &nto_arena, "libc.so.6", "_IO_str_overflow");
    add_function(kept_by_libc, &nkept, "libc.so.6", "_IO_file_doallocate");
}

static const struct module *module_of(uintptr_t a)
{
    for (unsigned i = 0; i < nmods; i++)
        if (a - mods[i].lo < mods[i].hi - mods[i].lo)
            return &mods[i];
    return NULL;
}

/* The kind of the module that holds a; under mu.  A miss lists the
 * modules again: a library loaded since. */
static int kind_at(uintptr_t a)
{
    const struct module *m;
    list_first();
    m = module_of(a);
    if (!m) {
        list_modules();
        m = module_of(a);
    }
    return m ? m->kind : USER;
}

int callers_system(const void *ra)
{
    int kind;
    if (busy)
        return 1;
    callers_memo.key = 0; /* a handing call may begin */
    pthread_mutex_lock(&mu);
    busy = 1;
    kind = kind_at((uintptr_t)ra);
    busy = 0;
    pthread_mutex_unlock(&mu);
    return kind != USER;
}

int callers_libc_slow(const void *ra, int alloc)
{
    uintptr_t a = (uintptr_t)ra;
    int kind, libc;
    if (busy)
        return 1;
    pthread_mutex_lock(&mu);
    busy = 1;
    callers_memo.key = 0; /* no verdict while listing: this thread's allocations are ours */
    kind = kind_at(a);
    libc = kind == LOADER || (kind == SYSTEM && !in_spans(to_arena, nto_arena, a));
    if (kind == SYSTEM && libc && preload_handing && !in_spans(kept_by_libc, nkept, a))
        libc = preload_handing == HAND_ZEROED && alloc != ALLOC_ZEROED;
    if (!preload_handing)
        callers_memo = (struct callers_memo){.key = a | (libc ? MEMO_LIBC : 0), .listed = callers_listed_now()};
    busy = 0;
    pthread_mutex_unlock(&mu);
    return libc;
}
