/*
 * direct.c — until a store opens, the program calls glibc's malloc family
 * directly.
 *
 * Before this process has opened a store, no thread can be inside a write
 * transaction and no pointer can be the arena's: each wrapper of preload.c
 * would only pass its call on to glibc.  Even that costs a tight loop of
 * malloc and free a few percent (an interposer that only forwards is the
 * floor, and it is above 1.02x glibc's time).  So at load time the preload
 * points every loaded module's PLT slots for the malloc family (its
 * R_*_JUMP_SLOT relocations) straight at glibc's own functions, the very
 * ones the wrappers forward to; and before the first store opens it points
 * them back at the wrappers, in every module loaded by then.  A module
 * loaded in between binds to the wrappers as usual, which is correct too.
 *
 * Only PLT slots move, and only from what the loader would have put there:
 * to glibc from the wrapper (or a lazy slot not yet resolved), back from
 * glibc (a module bound to an allocator of its own keeps it).  Function
 * pointers the program took (&malloc, a GLOB_DAT slot) keep naming the
 * wrappers, so a call through one stays routed whatever happens.  A slot
 * in a module's RELRO segment (linked with -z now) is written between two
 * mprotect calls.  Each module is pinned with dlopen(RTLD_NOLOAD) first,
 * which waits for a dlopen of it in progress: a module the loader is still
 * relocating is never touched.  When a slot cannot be pointed back, the
 * store does not open (tm_open fails with ENOMEM and says why): an
 * unrouted call inside a transaction would lose data.  When it cannot be
 * pointed at glibc, it stays with the wrapper.  And when a store opened
 * before this library's constructor ran (from an earlier module's
 * constructor), nothing moves at all.
 *
 * This library's own module is left alone, and so are modules without a
 * dynamic section (the vDSO's is not relocated).  Other architectures than
 * x86-64 and arm64 keep the wrappers throughout.
 */
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "preload.h"

#if defined(__x86_64__)
#define R_JUMP_SLOT R_X86_64_JUMP_SLOT
#elif defined(__aarch64__)
#define R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#endif

#ifdef R_JUMP_SLOT

/* The functions moved: the wrapper (this library's definition) and glibc's
 * own, which the wrapper's fallback path calls. */
static struct fn {
    const char *name;
    void *ours, *glibc;
} fns[] = {
    {"malloc", 0, 0},         {"free", 0, 0},          {"calloc", 0, 0},  {"realloc", 0, 0},
    {"reallocarray", 0, 0},   {"posix_memalign", 0, 0}, {"aligned_alloc", 0, 0},
    {"memalign", 0, 0},       {"valloc", 0, 0},        {"pvalloc", 0, 0}, {"malloc_usable_size", 0, 0},
};
#define NFN (sizeof fns / sizeof fns[0])

static pthread_mutex_t direct_lock = PTHREAD_MUTEX_INITIALIZER;
static int direct_on; /* the slots point at glibc (under direct_lock) */
static uintptr_t own_base; /* this library's load address */

/* One pass over the modules: first their names and bases are listed, then
 * each is pinned with dlopen(RTLD_NOLOAD), which waits for a dlopen of it
 * in progress to finish (relocations and RELRO applied) and keeps it from
 * being unloaded; only the pinned ones are changed.  A module that appears
 * meanwhile binds to the wrappers by itself, which is always correct. */
struct pass {
    int to_glibc, failed;
    size_t n, cap;
    struct mod {
        uintptr_t base;
        char *name;
        void *handle;
    } *mods;
};

/* A dynamic-section address: relocated by the loader, except where it
 * left the section read-only (then relative to the module's base). */
static uintptr_t dyn_addr(const struct dl_phdr_info *info, ElfW(Addr) a)
{
    return a < info->dlpi_addr ? info->dlpi_addr + a : a;
}

/* Writes v into slot, making its page writable for the moment when it lies
 * in [relro_lo, relro_hi).  0, or -1 when mprotect refused. */
static int slot_write(void **slot, void *v, uintptr_t relro_lo, uintptr_t relro_hi)
{
    uintptr_t page = (uintptr_t)slot & ~(uintptr_t)(sysconf(_SC_PAGESIZE) - 1);
    int ro = (uintptr_t)slot >= relro_lo && (uintptr_t)slot < relro_hi;
    if (ro && mprotect((void *)page, (size_t)sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE) != 0)
        return -1;
    __atomic_store_n(slot, v, __ATOMIC_RELEASE);
    if (ro)
        mprotect((void *)page, (size_t)sysconf(_SC_PAGESIZE), PROT_READ);
    return 0;
}

/* The function of fns named name, or NULL. */
static const struct fn *fn_named(const char *name)
{
    for (size_t i = 0; i < NFN; i++)
        if (fns[i].glibc && strcmp(name, fns[i].name) == 0)
            return &fns[i];
    return NULL;
}

static int skipped(const struct dl_phdr_info *info)
{
    return info->dlpi_addr == own_base || (info->dlpi_name && strstr(info->dlpi_name, "linux-vdso"));
}

/* dl_iterate_phdr's first callback: lists the module. */
static int module_list(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct pass *ps = arg;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    (void)size;
    if (skipped(info))
        return 0;
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? 2 * ps->cap : 64;
        struct mod *m = __libc_realloc(ps->mods, cap * sizeof *m);
        if (!m)
            return 1; /* the modules listed so far are done; the rest keep their slots */
        ps->mods = m, ps->cap = cap;
    }
    if (!(ps->mods[ps->n].name = __libc_malloc(strlen(name) + 1)))
        return 1;
    strcpy(ps->mods[ps->n].name, name);
    ps->mods[ps->n].base = info->dlpi_addr;
    ps->mods[ps->n++].handle = NULL;
    return 0;
}

/* Whether slot value v of a module mapped at [lo, hi) should change: to
 * glibc only from the wrapper or an unresolved lazy stub of the module
 * itself; back to the wrapper only from glibc (a module bound elsewhere,
 * as by RTLD_DEEPBIND to an allocator of its own, keeps its binding). */
static int slot_moves(const struct fn *f, void *v, int to_glibc, uintptr_t lo, uintptr_t hi)
{
    if (to_glibc)
        return v == f->ours || ((uintptr_t)v >= lo && (uintptr_t)v < hi);
    return v == f->glibc;
}

/* dl_iterate_phdr's second callback: moves the slots of a pinned module.
 * A module that could not be pinned is left alone, but on the way back to
 * the wrappers each of its slots that names glibc counts as a failure. */
static int module_slots(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct pass *ps = arg;
    const ElfW(Dyn) *dyn = NULL;
    const ElfW(Sym) *symtab = NULL;
    const char *strtab = NULL;
    const ElfW(Rela) *rel = NULL;
    size_t relsz = 0, pagesz = (size_t)sysconf(_SC_PAGESIZE), k;
    uintptr_t relro_lo = 0, relro_hi = 0, lo = UINTPTR_MAX, hi = 0;
    long pltrel = DT_RELA;
    (void)size;
    int pinned;
    for (k = 0; k < ps->n; k++)
        if (ps->mods[k].handle && ps->mods[k].base == info->dlpi_addr &&
            strcmp(ps->mods[k].name, info->dlpi_name ? info->dlpi_name : "") == 0)
            break;
    pinned = k < ps->n;
    if ((!pinned && ps->to_glibc) || skipped(info))
        return 0;
    for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_DYNAMIC) {
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + ph->p_vaddr);
        } else if (ph->p_type == PT_GNU_RELRO) { /* as the loader protects it: whole pages */
            relro_lo = (info->dlpi_addr + ph->p_vaddr) & ~(uintptr_t)(pagesz - 1);
            relro_hi = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz) & ~(uintptr_t)(pagesz - 1);
        } else if (ph->p_type == PT_LOAD) {
            lo = info->dlpi_addr + ph->p_vaddr < lo ? info->dlpi_addr + ph->p_vaddr : lo;
            hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz > hi ? info->dlpi_addr + ph->p_vaddr + ph->p_memsz : hi;
        }
    }
    for (; dyn && dyn->d_tag != DT_NULL; dyn++) {
        switch (dyn->d_tag) {
        case DT_SYMTAB: symtab = (const ElfW(Sym) *)dyn_addr(info, dyn->d_un.d_ptr); break;
        case DT_STRTAB: strtab = (const char *)dyn_addr(info, dyn->d_un.d_ptr); break;
        case DT_JMPREL: rel = (const ElfW(Rela) *)dyn_addr(info, dyn->d_un.d_ptr); break;
        case DT_PLTRELSZ: relsz = dyn->d_un.d_val; break;
        case DT_PLTREL: pltrel = (long)dyn->d_un.d_val; break;
        }
    }
    if (!symtab || !strtab || !rel || pltrel != DT_RELA)
        return 0;
    for (k = 0; k < relsz / sizeof *rel; k++) {
        const struct fn *f;
        void **slot = (void **)(info->dlpi_addr + rel[k].r_offset);
        if (ELF64_R_TYPE(rel[k].r_info) != R_JUMP_SLOT ||
            !(f = fn_named(strtab + symtab[ELF64_R_SYM(rel[k].r_info)].st_name)) ||
            !slot_moves(f, *slot, ps->to_glibc, lo, hi))
            continue;
        if (!pinned || slot_write(slot, ps->to_glibc ? f->glibc : f->ours, relro_lo, relro_hi) != 0)
            ps->failed++;
    }
    return 0;
}

/* Moves every pinned module's slots; the count of those that could not. */
static int move_slots(int to_glibc)
{
    struct pass ps = {to_glibc, 0, 0, 0, NULL};
    dl_iterate_phdr(module_list, &ps);
    for (size_t k = 0; k < ps.n; k++)
        ps.mods[k].handle = dlopen(ps.mods[k].name[0] ? ps.mods[k].name : NULL, RTLD_LAZY | RTLD_NOLOAD);
    dl_iterate_phdr(module_slots, &ps);
    for (size_t k = 0; k < ps.n; k++) {
        if (ps.mods[k].handle)
            dlclose(ps.mods[k].handle);
        __libc_free(ps.mods[k].name);
    }
    __libc_free(ps.mods);
    return ps.failed;
}

void direct_init(void)
{
    Dl_info self;
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (!libc || !dladdr((void *)direct_init, &self))
        return;
    own_base = (uintptr_t)self.dli_fbase;
    for (size_t i = 0; i < NFN; i++) {
        fns[i].ours = dlsym(RTLD_DEFAULT, fns[i].name);
        fns[i].glibc = dlsym(libc, fns[i].name);
        if (!dladdr(fns[i].ours, &self) || (uintptr_t)self.dli_fbase != own_base)
            fns[i].glibc = NULL; /* not ours to move */
    }
    dlclose(libc);
    pthread_mutex_lock(&direct_lock);
    /* A store opened already (from an earlier module's constructor, or a
     * thread it started): the wrappers stay. */
    if (!__atomic_load_n(&tm_route_opened, __ATOMIC_SEQ_CST)) {
        direct_on = 1;
        move_slots(1);
    }
    pthread_mutex_unlock(&direct_lock);
}

int direct_end(void)
{
    int failed = 0;
    pthread_mutex_lock(&direct_lock);
    if (direct_on) {
        tm_transient_begin(); /* the loader's own allocations, even inside another store's transaction */
        failed = move_slots(0);
        tm_transient_end();
        direct_on = failed != 0;
    }
    pthread_mutex_unlock(&direct_lock);
    return failed ? -1 : 0;
}

#else

void direct_init(void)
{
}

int direct_end(void)
{
    return 0;
}

#endif
