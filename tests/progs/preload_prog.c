/*
 * preload_prog — checks run under LD_PRELOAD=libtmfpreload.so by
 * test_preload.c.  Each subcommand exits 0 when every check passed, or
 * prints what failed and exits 1.
 *
 *   family    every malloc-family call, outside and inside a transaction:
 *             ownership by address, alignment, usable size, errno, realloc
 *             policy, transient escape hatch; then odd arguments (glibc's
 *             answers outside a transaction, its conventions inside) and a
 *             glibc block in the window, between two stores' reservations
 *   threads   one thread in a transaction while others use glibc
 *   outside   a store outside the window is refused (EINVAL, said on
 *             stderr) and not made
 *   freeout   frees an arena block outside a transaction (must be reported)
 *   libc      libc's own allocations inside a transaction (stdout's buffer,
 *             a thread's TLS and stack cache, locale, dlopen and dlerror,
 *             getaddrinfo, NSS, atexit, time zone, an open FILE) leave the
 *             arena as it was, and work after the commit
 *   hand      what libc hands to its caller inside a transaction (strdup,
 *             asprintf, getline, open_memstream, realpath, scandir, ...)
 *             is in the arena; the first run keeps it in the root, the
 *             second finds it intact and frees it
 *   unrouted  stores glibc blocks in the root in two commits (run without
 *             the preload: the core must warn, once)
 *   tmonly    the same with tm_malloc (no warning)
 *   aslr A B  prints A|B|$TMF_PROBE, then its child's personality (a
 *             shell's cat of /proc/self/personality)
 *   direct    its PLT slots for malloc and free name glibc's own functions
 *             until a store opens, and the preload's from then on; the
 *             program's malloc inside a transaction is then the arena's
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <locale.h>
#include <malloc.h>
#include <netdb.h>
#include <pwd.h>
#include <search.h>
#include <stdarg.h>
#include <time.h>
#include <wchar.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tmfalloc.h"

static int failures;

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                     \
        }                                                                   \
    } while (0)

static uintptr_t lo, hi; /* the default store's reservation */

static int in_store(const void *p)
{
    return (uintptr_t)p >= lo && (uintptr_t)p < hi;
}

void *(*volatile vmalloc)(size_t) = malloc; /* keep the compiler from folding calls */
static volatile size_t huge = (size_t)1 << 40, size_max = SIZE_MAX;

static void family(void)
{
    void *p, *q;
    tm_stats_t s;
    /* outside any transaction: glibc */
    p = vmalloc(100);
    CHECK(p && !in_store(p));
    q = pvalloc(100);
    CHECK(q && !in_store(q) && (uintptr_t)q % 4096 == 0);
    free(q); /* the pitfall of free(pvalloc(100)) */
    CHECK(malloc_usable_size(p) >= 100);
    errno = 1234;
    free(p);
    CHECK(errno == 1234);

    /* inside a transaction: the arena */
    CHECK(tm_begin() == 0);
    p = vmalloc(100);
    CHECK(in_store(p) && (uintptr_t)p % 16 == 0);
    CHECK(malloc_usable_size(p) >= 100);
    q = calloc(10, 100);
    CHECK(in_store(q) && ((char *)q)[999] == 0);
    CHECK(calloc(huge, huge) == NULL && errno == ENOMEM);
    void *a = aligned_alloc(4096, 5000);
    CHECK(in_store(a) && (uintptr_t)a % 4096 == 0);
    void *m = memalign(64, 10);
    CHECK(in_store(m) && (uintptr_t)m % 64 == 0);
    void *v = valloc(10), *pv = pvalloc(10);
    CHECK(in_store(v) && in_store(pv) && (uintptr_t)v % 4096 == 0 && (uintptr_t)pv % 4096 == 0);
    void *pm = NULL;
    CHECK(posix_memalign(&pm, 256, 77) == 0 && in_store(pm) && (uintptr_t)pm % 256 == 0);
    CHECK(posix_memalign(&pm, 3, 77) == EINVAL);
    void *r = realloc(NULL, 50);
    CHECK(in_store(r));
    r = realloc(r, 5000);
    CHECK(in_store(r));
    void *ra = reallocarray(NULL, 10, 10);
    CHECK(in_store(ra));
    CHECK(reallocarray(NULL, size_max, 2) == NULL && errno == ENOMEM);
    /* a glibc block stays a glibc block */
    CHECK(tm_commit() == 0);
    void *g = vmalloc(10);
    CHECK(tm_begin() == 0);
    g = realloc(g, 20000);
    CHECK(g && !in_store(g));
    free(g); /* a glibc pointer freed inside a transaction: glibc */
    /* the escape hatch */
    tm_transient_begin();
    void *t = vmalloc(10);
    CHECK(t && !in_store(t));
    tm_transient_end();
    free(t);
    void *after = vmalloc(10);
    CHECK(in_store(after));
    free(p), free(q), free(a), free(m), free(v), free(pv), free(pm), free(r), free(ra), free(after);
    CHECK(tm_commit() == 0);
    CHECK(tm_stats(&s) == 0);
    CHECK(tm_check(NULL, 0) == 0);
}

/* glibc's own entry point, past the preload. */
static void *libc_symbol(const char *name)
{
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    return libc ? dlsym(libc, name) : NULL;
}

#define WINDOW_HI 0x400000000000ull /* the top of the window every store lies in */
#define BIG ((size_t)64 << 20)      /* above glibc's largest threshold: always mapped */

struct span {
    void *p;
    size_t len;
};

/* Reserves every gap above the window (PROT_NONE, no memory) that the
 * kernel, searching from the top, would find for a new mapping first: the
 * next mapping lands inside the window.  Returns how many spans it holds. */
static size_t hold_above_window(struct span *held, size_t cap)
{
    size_t n = 0;
    for (size_t len = (size_t)1 << 44; len >= 4096; len >>= 1) {
        while (n < cap) {
            void *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED)
                break;
            if ((uintptr_t)p < WINDOW_HI) {
                munmap(p, len);
                break;
            }
            held[n].p = p, held[n++].len = len;
        }
    }
    CHECK(n < cap);
    return n;
}

/* Outside a transaction every call behaves as glibc's, however odd its
 * arguments; inside one, glibc's conventions hold for the arena. */
static void edges(void)
{
    void *(*libc_aligned_alloc)(size_t, size_t) = (void *(*)(size_t, size_t))libc_symbol("aligned_alloc");
    static const size_t aligns[] = {0, 3, 24, 64, (size_t)1 << 63};
    CHECK(libc_aligned_alloc != NULL);
    for (size_t i = 0; libc_aligned_alloc && i < sizeof aligns / sizeof *aligns; i++) {
        errno = 0;
        void *ours = aligned_alloc(aligns[i], 48);
        int our_errno = errno;
        errno = 0;
        void *theirs = libc_aligned_alloc(aligns[i], 48);
        if ((ours == NULL) != (theirs == NULL) || (!ours && our_errno != errno))
            fprintf(stderr, "aligned_alloc(%zu, 48): %p errno %d, glibc's: %p errno %d\n", aligns[i], ours,
                    our_errno, theirs, errno);
        CHECK((ours == NULL) == (theirs == NULL) && (ours || our_errno == errno));
        CHECK(!in_store(ours));
        free(ours);
        free(theirs);
    }

    CHECK(tm_begin() == 0);
    errno = 0;
    CHECK(memalign(size_max / 2 + 2, 100) == NULL && errno == EINVAL);
    CHECK(tm_commit() == 0);

    /* a glibc block between two stores' reservations, inside the window
     * that free tests, is still glibc's */
    tm_options o;
    tm_store *st = NULL;
    char path[4200];
    struct span held[4096];
    snprintf(path, sizeof path, "%s.upper", getenv("TMF_PATH"));
    tm_options_init(&o);
    o.max_size = (size_t)1 << 30;
    o.base = WINDOW_HI - o.max_size; /* the window's top gigabyte */
    o.sync = TM_SYNC_NONE;
    CHECK(tm_open(path, &o, &st) == 0);
    size_t nheld = hold_above_window(held, sizeof held / sizeof *held);
    char *g = vmalloc(BIG); /* mapped by glibc, where the kernel finds room first */
    CHECK(g && (uintptr_t)g >= hi && (uintptr_t)g + BIG <= o.base);
    CHECK(malloc_usable_size(g) >= BIG);
    void *page = (void *)((uintptr_t)g & ~(uintptr_t)4095);
    free(g);
    CHECK(msync(page, 4096, MS_ASYNC) < 0 && errno == ENOMEM); /* glibc unmapped it */
    for (size_t i = 0; i < nheld; i++)
        munmap(held[i].p, held[i].len);
    CHECK(tm_close(st) == 0);
}

/* Under the preload a store outside the window is refused, and not made. */
static void outside(void)
{
    tm_options o;
    tm_store *st = NULL;
    char path[4200];
    snprintf(path, sizeof path, "%s.outside", getenv("TMF_PATH"));
    tm_options_init(&o);
    o.base = 0x600000000000ull;
    o.max_size = (size_t)1 << 30;
    CHECK(tm_open(path, &o, &st) == EINVAL && st == NULL);
    CHECK(access(path, F_OK) < 0 && errno == ENOENT);
}

static volatile int stop;

static void *glibc_user(void *arg)
{
    long bad = 0;
    (void)arg;
    while (!stop) {
        void *ptrs[64];
        for (int i = 0; i < 64; i++) {
            ptrs[i] = malloc((size_t)(i * 37 % 3000) + 1);
            bad += in_store(ptrs[i]);
        }
        for (int i = 0; i < 64; i++)
            free(ptrs[i]);
    }
    return (void *)bad;
}

static void threads(void)
{
    pthread_t t[3];
    void *bad;
    CHECK(tm_root(64) != NULL);
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, glibc_user, NULL);
    for (int round = 0; round < 200; round++) {
        CHECK(tm_begin() == 0);
        void **list = tm_root(64);
        for (int i = 0; i < 8; i++) {
            void *p = malloc(100 + (size_t)i * 50);
            CHECK(in_store(p));
            if (list[i])
                free(list[i]);
            list[i] = p;
        }
        CHECK(tm_commit() == 0);
    }
    stop = 1;
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], &bad);
        CHECK(bad == NULL);
    }
    CHECK(tm_check(NULL, 0) == 0);
}

static void freeout(void)
{
    CHECK(tm_begin() == 0);
    void *p = malloc(100);
    CHECK(tm_commit() == 0);
    fprintf(stderr, "freeing %p outside a transaction\n", p);
    free(p); /* must stop the process with a report */
}

/* ---- libc's own memory and what it hands over ---- */

static uint64_t live(void)
{
    tm_stats_t s;
    CHECK(tm_stats(&s) == 0);
    return s.live_bytes;
}

static void *nothing(void *arg)
{
    return arg;
}

static void at_exit(void)
{
}

static void libc_own(void)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    time_t now = time(NULL);
    pthread_t t;
    uint64_t before;
    int gai;
    CHECK(tm_root(64) != NULL);
    CHECK(tm_begin() == 0);
    before = live();
    printf("stdout's first use: its buffer\n");
    CHECK(pthread_create(&t, NULL, nothing, NULL) == 0 && pthread_join(t, NULL) == 0);
    CHECK(setlocale(LC_ALL, "C.UTF-8") != NULL);
    locale_t loc = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
    CHECK(loc != (locale_t)0);
    void *m = dlopen("libm.so.6", RTLD_NOW);
    CHECK(m && dlsym(m, "cos") && !dlsym(m, "no_such_function") && dlerror());
    CHECK(!dlopen("libno-such-library.so", RTLD_NOW) && dlerror());
    gai = getaddrinfo("localhost", "80", &hints, &ai);
    CHECK(getpwuid(getuid()) != NULL);
    CHECK(localtime(&now) != NULL);
    for (int i = 0; i < 40; i++) /* past the static first block of handlers */
        CHECK(atexit(at_exit) == 0);
    CHECK(setenv("TMF_PROG_SET_INSIDE", "a value set inside a transaction", 1) == 0);
    pthread_key_t keys[40];
    for (int i = 0; i < 40; i++) /* past the keys a thread holds inline */
        CHECK(pthread_key_create(&keys[i], NULL) == 0);
    CHECK(pthread_setspecific(keys[39], &before) == 0);
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f && fgetc(f) != EOF);
    CHECK(live() == before);
    CHECK(tm_commit() == 0);
    /* all of it again, outside any transaction */
    printf("after the commit\n");
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t, NULL, nothing, NULL) == 0 && pthread_join(t, NULL) == 0);
    CHECK(setlocale(LC_ALL, "C") != NULL);
    freelocale(loc);
    CHECK(dlclose(m) == 0);
    CHECK(!dlopen("libno-such-library.so", RTLD_NOW) && dlerror());
    if (gai == 0)
        freeaddrinfo(ai);
    CHECK(getpwuid(getuid()) != NULL);
    CHECK(localtime(&now) != NULL);
    for (int i = 0; i < 40; i++)
        CHECK(atexit(at_exit) == 0);
    CHECK(setenv("TMF_PROG_SET_AFTER", "and one after it", 1) == 0);
    CHECK(strcmp(getenv("TMF_PROG_SET_INSIDE"), "a value set inside a transaction") == 0);
    CHECK(pthread_setspecific(keys[39], &now) == 0 && pthread_getspecific(keys[39]) == &now);
    CHECK(fgetc(f) != EOF);
    fclose(f);
    fflush(stdout);
}

struct handed {
    char *dup, *ndup, *fmt, *vfmt, *line, *delim, *mem, *real, *canon, *cwd, *cwd_name;
    wchar_t *wdup;
    struct dirent **names;
    int nnames;
    size_t memlen;
    void *tree;
    struct hsearch_data table;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

static char *vformat(const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    CHECK(vasprintf(&s, fmt, ap) > 0);
    va_end(ap);
    return s;
}

/* The directory of the store, where the run keeps its files. */
static const char *dir_of_store(char *buf, size_t len)
{
    snprintf(buf, len, "%s", getenv("TMF_PATH"));
    *strrchr(buf, '/') = 0;
    return buf;
}

static int only_hand(const struct dirent *e)
{
    return strncmp(e->d_name, "hand.", 5) == 0;
}

static void hand_fill(struct handed *h, const char *dir)
{
    char path[4300];
    FILE *f;
    size_t n = 0;
    snprintf(path, sizeof path, "%s/hand.lines", dir);
    f = fopen(path, "w");
    CHECK(f && fputs("first line\nsecond;third\n", f) >= 0 && fclose(f) == 0);
    f = fopen(path, "r"); /* its buffer is libc's: read again after the commit */
    CHECK(f != NULL);
    /* libc's strdup itself, as libc's own calls reach it (not through the
     * preload's wrapper) */
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    char *(*libc_strdup)(const char *) = libc ? (char *(*)(const char *))dlsym(libc, "strdup") : NULL;
    CHECK(libc_strdup != NULL);
    CHECK(tm_begin() == 0);
    /* libc's own strdup just before: the program's strdup, whose block libc
     * allocates from the very same call, must not reuse that verdict */
    char *own = libc_strdup("libc's own");
    CHECK(own && !in_store(own));
    free(own);
    h->dup = strdup("duplicated");
    h->ndup = strndup("truncated here", 9);
    h->wdup = wcsdup(L"wide");
    CHECK(asprintf(&h->fmt, "%d-%s", 42, "formatted") > 0);
    h->vfmt = vformat("%s and %d", "variadic", 7);
    CHECK(getline(&h->line, &n, f) > 0);
    n = 0;
    CHECK(getdelim(&h->delim, &n, ';', f) > 0);
    FILE *mf = open_memstream(&h->mem, &h->memlen);
    CHECK(mf != NULL);
    for (int i = 0; i < 2000; i++)
        fprintf(mf, "%d,", i);
    CHECK(fclose(mf) == 0);
    h->real = realpath(dir, NULL);
    h->canon = canonicalize_file_name(dir);
    h->cwd = getcwd(NULL, 0);
    h->cwd_name = get_current_dir_name();
    h->nnames = scandir(dir, &h->names, only_hand, alphasort);
    CHECK(h->nnames >= 1);
    CHECK(tsearch(h->dup, &h->tree, cmp_str) && tsearch(h->fmt, &h->tree, cmp_str));
    CHECK(hcreate_r(16, &h->table) != 0);
    void *got[] = {h->dup, h->ndup, h->wdup, h->fmt, h->vfmt, h->line, h->delim, h->mem, h->real, h->canon,
                   h->cwd, h->cwd_name, h->names, h->nnames > 0 ? h->names[0] : NULL,
                   h->tree, h->table.table};
    for (size_t i = 0; i < sizeof got / sizeof *got; i++)
        if (!in_store(got[i])) {
            fprintf(stderr, "handed value %zu at %p is not in the arena\n", i, got[i]);
            failures++;
        }
    CHECK(tm_commit() == 0);
    dlclose(libc);
    CHECK(fgetc(f) != EOF); /* the stream's own buffer, outside a transaction */
    fclose(f);
}

static void hand_check(struct handed *h, const char *dir)
{
    char real[4200], cwd[4200], want[20000];
    size_t len = 0;
    for (int i = 0; i < 2000; i++)
        len += (size_t)snprintf(want + len, sizeof want - len, "%d,", i);
    CHECK(realpath(dir, real) && getcwd(cwd, sizeof cwd));
    CHECK(strcmp(h->dup, "duplicated") == 0 && strcmp(h->ndup, "truncated") == 0);
    CHECK(wcscmp(h->wdup, L"wide") == 0);
    CHECK(strcmp(h->fmt, "42-formatted") == 0 && strcmp(h->vfmt, "variadic and 7") == 0);
    CHECK(strcmp(h->line, "first line\n") == 0 && strcmp(h->delim, "second;") == 0);
    CHECK(h->memlen == len && strcmp(h->mem, want) == 0);
    CHECK(strcmp(h->real, real) == 0 && strcmp(h->canon, real) == 0);
    CHECK(strcmp(h->cwd, cwd) == 0 && h->cwd_name && h->cwd_name[0] == '/');
    CHECK(h->nnames >= 1 && strcmp(h->names[0]->d_name, "hand.lines") == 0);
    CHECK(tfind("42-formatted", &h->tree, cmp_str) && tfind("duplicated", &h->tree, cmp_str));
    CHECK(tm_begin() == 0);
    CHECK(tdelete(h->dup, &h->tree, cmp_str) && tdelete(h->fmt, &h->tree, cmp_str) && !h->tree);
    hdestroy_r(&h->table);
    free(h->dup), free(h->ndup), free(h->wdup), free(h->fmt), free(h->vfmt), free(h->line), free(h->delim);
    free(h->mem), free(h->real), free(h->canon), free(h->cwd), free(h->cwd_name);
    for (int i = 0; i < h->nnames; i++)
        free(h->names[i]);
    free(h->names);
    memset(h, 0, sizeof *h);
    CHECK(tm_commit() == 0);
    CHECK(tm_check(NULL, 0) == 0);
}

static void hand(void)
{
    struct handed *h = tm_root(sizeof *h);
    char dir[4200];
    dir_of_store(dir, sizeof dir);
    if (!h->dup)
        hand_fill(h, dir);
    else
        hand_check(h, dir);
}

/* Without the preload: glibc blocks (unrouted) or arena blocks (tmonly)
 * stored in the root by two commits. */
static void store_blocks(int tm)
{
    void **root = tm_root(2 * sizeof(void *));
    for (int i = 0; i < 2; i++) {
        CHECK(tm_begin() == 0);
        root[i] = tm ? tm_malloc(32) : vmalloc(32);
        CHECK(tm_commit() == 0);
    }
}

#if defined(__x86_64__)
#define R_JUMP_SLOT R_X86_64_JUMP_SLOT
#elif defined(__aarch64__)
#define R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#endif

/* A check of every loaded module's PLT slots (R_*_JUMP_SLOT relocations)
 * for one function, but the preload's own: each should hold want. */
struct plt_check {
    const char *name;
    void *want;
    uintptr_t skip; /* the preload's load address */
    int seen, main_seen;
};

static int plt_module(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct plt_check *c = arg;
    const ElfW(Dyn) *d = NULL;
    const ElfW(Sym) *sym = NULL;
    const char *str = NULL;
    const ElfW(Rela) *rel = NULL;
    size_t n = 0;
    (void)size;
    if (info->dlpi_addr == c->skip || strstr(info->dlpi_name, "linux-vdso"))
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            d = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    for (; d && d->d_tag != DT_NULL; d++) {
        if (d->d_tag == DT_SYMTAB)
            sym = (const ElfW(Sym) *)d->d_un.d_ptr;
        else if (d->d_tag == DT_STRTAB)
            str = (const char *)d->d_un.d_ptr;
        else if (d->d_tag == DT_JMPREL)
            rel = (const ElfW(Rela) *)d->d_un.d_ptr;
        else if (d->d_tag == DT_PLTRELSZ)
            n = d->d_un.d_val / sizeof *rel;
    }
    for (size_t k = 0; sym && str && rel && k < n; k++) {
        void *v;
        if (ELF64_R_TYPE(rel[k].r_info) != R_JUMP_SLOT ||
            strcmp(str + sym[ELF64_R_SYM(rel[k].r_info)].st_name, c->name) != 0)
            continue;
        c->seen++;
        c->main_seen += !info->dlpi_name[0];
        if ((v = *(void **)(info->dlpi_addr + rel[k].r_offset)) != c->want)
            fprintf(stderr, "%s's slot for %s is %p, not %p\n", info->dlpi_name[0] ? info->dlpi_name : "the program",
                    c->name, v, c->want),
                failures++;
    }
    return 0;
}

/* How many modules' slots for name were checked against want (those of
 * the program among them, or failures counts one more). */
static int plt_expect(const char *name, void *want)
{
    Dl_info self;
    struct plt_check c = {name, want, 0, 0, 0};
    CHECK(dladdr(dlsym(RTLD_DEFAULT, "malloc"), &self));
    c.skip = (uintptr_t)self.dli_fbase;
    dl_iterate_phdr(plt_module, &c);
    CHECK(c.main_seen == 1);
    return c.seen;
}

static void direct(void)
{
    static const char *names[] = {"malloc", "free", "calloc", "realloc"};
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD), *volatile p = malloc(100);
    tm_stats_t s;
    int seen = 0;
    p = realloc(p, 200);
    free(p);
    free(calloc(1, 100));
    CHECK(libc != NULL);
    for (int i = 0; i < 4; i++) {
        void *glibc = dlsym(libc, names[i]);
        CHECK(glibc != dlsym(RTLD_DEFAULT, names[i]));
        seen += plt_expect(names[i], glibc); /* before a store opens: glibc's own */
    }
    CHECK(tm_stats(&s) == 0); /* opens the store */
    for (int i = 0; i < 4; i++)
        CHECK(plt_expect(names[i], dlsym(RTLD_DEFAULT, names[i])) >= 1); /* the preload's */
    CHECK(seen > 4); /* libc's own slots too */
    lo = (uintptr_t)tm_store_base(tm_default());
    hi = lo + s.max_size;
    CHECK(tm_begin() == 0);
    p = malloc(100);
    CHECK(in_store(p));
    p = realloc(p, 300);
    CHECK(in_store(p));
    free(p);
    CHECK(tm_commit() == 0);
    p = malloc(100);
    CHECK(!in_store(p));
    free(p);
    dlclose(libc);
}

int main(int argc, char **argv)
{
    tm_stats_t s;
    if (argc == 2 && strcmp(argv[1], "direct") == 0) {
        direct();
        return failures ? 1 : 0;
    }
    if (argc == 4 && strcmp(argv[1], "aslr") == 0) {
        printf("%s|%s|%s\n", argv[2], argv[3], getenv("TMF_PROBE"));
        fflush(stdout);
        return system("cat /proc/self/personality") == 0 ? 0 : 1;
    }
    if (argc != 2 || tm_stats(&s) != 0) {
        fprintf(stderr, "usage: preload_prog family|threads|outside|freeout|libc|hand|unrouted|tmonly (with TMF_PATH set)\n");
        return 2;
    }
    lo = (uintptr_t)tm_store_base(tm_default());
    hi = lo + s.max_size;
    if (strcmp(argv[1], "family") == 0)
        family(), edges();
    else if (strcmp(argv[1], "threads") == 0)
        threads();
    else if (strcmp(argv[1], "outside") == 0)
        outside();
    else if (strcmp(argv[1], "freeout") == 0)
        freeout();
    else if (strcmp(argv[1], "libc") == 0)
        libc_own();
    else if (strcmp(argv[1], "hand") == 0)
        hand();
    else if (strcmp(argv[1], "unrouted") == 0 || strcmp(argv[1], "tmonly") == 0)
        store_blocks(argv[1][0] == 't');
    else
        return 2;
    return failures ? 1 : 0;
}
