/* test_heap.c — the persistent heap: a randomized differential test against
 * a model, abort and crash recovery of allocation-heavy work, misuse
 * detection, and the malloc family's edge cases. */
#include "util.h"

#include "heap.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---- */

static tm_store *open_opts(const char *path, size_t max, tm_sync sync)
{
    tm_options o = tu_opts(sync);
    tm_store *st = NULL;
    int r;
    if (max)
        o.max_size = max;
    r = tm_open(path, &o, &st);
    cr_assert_eq(r, 0, "tm_open(%s): %s", path, tm_strerror(r));
    return st;
}

#define CHECK(st)                                                          \
    do {                                                                   \
        char m_[256];                                                      \
        int r_ = tm_store_check((st), m_, sizeof m_);                      \
        cr_assert_eq(r_, 0, "heap check: %s", m_);                         \
    } while (0)

static uint64_t word(uint64_t seed, size_t i)
{
    uint64_t z = seed + i * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 31)) * 0xBF58476D1CE4E5B9ull;
    return z ^ (z >> 29);
}

static void fill(unsigned char *p, size_t n, uint64_t seed)
{
    size_t i;
    for (i = 0; i + 8 <= n; i += 8) {
        uint64_t w = word(seed, i);
        memcpy(p + i, &w, 8);
    }
    if (i < n) {
        uint64_t w = word(seed, i);
        memcpy(p + i, &w, n - i);
    }
}

static int same(const unsigned char *p, size_t n, uint64_t seed)
{
    size_t i;
    for (i = 0; i + 8 <= n; i += 8) {
        uint64_t w = word(seed, i);
        if (memcmp(p + i, &w, 8))
            return 0;
    }
    if (i < n) {
        uint64_t w = word(seed, i);
        if (memcmp(p + i, &w, n - i))
            return 0;
    }
    return 1;
}

static uint64_t sum(const void *p, size_t n)
{
    const unsigned char *c = p;
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i;
    for (i = 0; i < n; i++)
        h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

/* Sizes from 1 B to 1 MiB, mostly small. */
static size_t pick_size(uint64_t *rs)
{
    uint64_t r = tu_rand(rs) % 1000;
    if (r < 600)
        return 1 + tu_rand(rs) % 128;
    if (r < 850)
        return 1 + tu_rand(rs) % 1024;
    if (r < 960)
        return 1 + tu_rand(rs) % 8192;
    if (r < 996)
        return 1 + tu_rand(rs) % 65536;
    return 1 + tu_rand(rs) % (1 << 20);
}

/* ---- (a) randomized differential test ---- */

#define NOBJ 2048
struct obj {
    unsigned char *p;
    size_t size;
    size_t align;
    uint64_t seed;
};

struct model {
    struct obj o[NOBJ];
    uint64_t rs;
    unsigned long ops;
};

static void obj_check(tm_store *st, const struct obj *o)
{
    cr_assert(same(o->p, o->size, o->seed), "contents of %p (%zu bytes) changed", (void *)o->p, o->size);
    cr_assert_geq(tm_store_usable_size(st, o->p), o->size);
    cr_assert_eq((uintptr_t)o->p % o->align, 0);
}

static void do_alloc(tm_store *st, struct model *m, struct obj *o)
{
    uint64_t r = tu_rand(&m->rs) % 100;
    size_t size = pick_size(&m->rs), align = 16;
    if (r < 8) {
        align = (size_t)1 << (4 + tu_rand(&m->rs) % (r == 0 ? 17 : 9)); /* to 1 MiB, rarely */
        o->p = tm_store_aligned_alloc(st, align, size);
    } else if (r < 16) {
        size_t n = 1 + tu_rand(&m->rs) % 16;
        size = (size + n - 1) / n;
        o->p = tm_store_calloc(st, n, size);
        cr_assert_not_null(o->p);
        size *= n;
        for (size_t i = 0; i < size; i++)
            cr_assert_eq(o->p[i], 0, "calloc byte %zu not zero", i);
    } else {
        o->p = tm_store_malloc(st, size);
    }
    cr_assert_not_null(o->p, "alloc %zu/%zu: %s", size, align, strerror(errno));
    o->size = size;
    o->align = align;
    o->seed = tu_rand(&m->rs);
    fill(o->p, size, o->seed);
}

static void do_realloc(tm_store *st, struct model *m, struct obj *o)
{
    size_t size = tu_rand(&m->rs) % 2 ? pick_size(&m->rs) : o->size + o->size / 2 + 1;
    size_t keep = size < o->size ? size : o->size;
    unsigned char *q;
    if (size > (1 << 20))
        size = 1 + tu_rand(&m->rs) % 4096;
    keep = size < o->size ? size : o->size;
    q = tm_store_realloc(st, o->p, size);
    cr_assert_not_null(q, "realloc to %zu: %s", size, strerror(errno));
    cr_assert(same(q, keep, o->seed), "realloc lost contents");
    cr_assert_eq((uintptr_t)q % 16, 0);
    o->p = q;
    o->size = size;
    o->align = 16;
    o->seed = tu_rand(&m->rs);
    fill(q, size, o->seed);
}

static void one_op(tm_store *st, struct model *m)
{
    struct obj *o = &m->o[tu_rand(&m->rs) % NOBJ];
    m->ops++;
    if (!o->p) {
        do_alloc(st, m, o);
    } else if (tu_rand(&m->rs) % 3 == 0) {
        do_realloc(st, m, o);
    } else {
        obj_check(st, o);
        tm_store_free(st, o->p);
        o->p = NULL;
    }
}

static void check_all(tm_store *st, const struct model *m)
{
    uint64_t live = 0;
    tm_stats_t s;
    for (int i = 0; i < NOBJ; i++) {
        if (m->o[i].p) {
            obj_check(st, &m->o[i]);
            live += m->o[i].size;
        }
    }
    CHECK(st);
    TU_OK(tm_store_stats(st, &s));
    cr_assert_geq(s.live_bytes, live);
    cr_assert_leq(s.largest_free, s.free_bytes);
}

/* After every block was freed, nothing is live: not even the library's own
 * code layout record (layout.c), written should a random word of the
 * test's data fall inside a loaded module. */
static void assert_nothing_live(tm_store *st)
{
    tm_stats_t s;
    TU_OK(tm_store_stats(st, &s));
    cr_assert_eq(s.live_bytes, 0, "%llu live bytes (a layout record: %s)", (unsigned long long)s.live_bytes,
                 *(const uint64_t *)(const void *)((const char *)super_of(st) + SUPER_LAYOUT_OFF) ? "yes" : "no");
}

static void differential(uint64_t seed, int rounds, int ops_per_tx)
{
    tm_store *st = open_opts(tu_path("diff.tmf"), 0, TM_SYNC_NONE);
    struct model *m = calloc(2, sizeof *m), *saved = m + 1;
    m->rs = seed;
    for (int round = 0; round < rounds; round++) {
        int abort_it = round % 10 == 9;
        if (abort_it)
            *saved = *m;
        TU_OK(tm_store_begin(st));
        for (int k = 0; k < ops_per_tx; k++) {
            one_op(st, m);
            if (k % 4096 == 4095)
                CHECK(st);
        }
        if (abort_it) {
            tm_store_abort(st);
            uint64_t rs = m->rs;
            *m = *saved;
            m->rs = rs; /* a different future */
        } else {
            TU_OK(tm_store_commit(st));
        }
        if (round % 8 == 0 || abort_it)
            check_all(st, m);
    }
    /* Free everything: the heap must account for exactly nothing. */
    TU_OK(tm_store_begin(st));
    for (int i = 0; i < NOBJ; i++)
        if (m->o[i].p)
            tm_store_free(st, m->o[i].p), m->o[i].p = NULL;
    TU_OK(tm_store_commit(st));
    CHECK(st);
    assert_nothing_live(st);
    /* Reopen: the heap is the same after the store is closed. */
    TU_OK(tm_close(st));
    st = open_opts(tu_path("diff.tmf"), 0, TM_SYNC_NONE);
    CHECK(st);
    TU_OK(tm_close(st));
    cr_log_info("seed %llu: %lu operations", (unsigned long long)seed, m->ops);
    free(m);
}

/* About 1.4 M operations in all; the suite runs three times in CI (with each
 * tracker and under ASan), where these four are its longest tests. */
Test(heap, differential_seed1, .timeout = 300) { differential(1, 240, 2000); }
Test(heap, differential_seed2, .timeout = 300) { differential(2, 240, 2000); }
Test(heap, differential_seed3, .timeout = 300) { differential(3, 60, 8000); }
Test(heap, differential_seed4_small_tx, .timeout = 300) { differential(4, 800, 200); }

/* ---- (b) abort restores the heap exactly ---- */

static uint64_t arena_sum(tm_store *st)
{
    tm_stats_t s;
    TU_OK(tm_store_stats(st, &s));
    return sum((char *)tm_store_base(st) + 4096, s.arena_size - 4096);
}

Test(heap, abort_restores_everything)
{
    tm_store *st = open_opts(tu_path("ab.tmf"), 0, TM_SYNC_NONE);
    struct model *m = calloc(1, sizeof *m);
    tm_stats_t s0, s1;
    uint64_t h0;
    m->rs = 99;
    TU_OK(tm_store_begin(st));
    for (int k = 0; k < 20000; k++)
        one_op(st, m);
    TU_OK(tm_store_commit(st));
    CHECK(st);
    TU_OK(tm_store_stats(st, &s0));
    h0 = arena_sum(st);
    for (int rep = 0; rep < 3; rep++) {
        struct model copy = *m;
        TU_OK(tm_store_begin(st));
        for (int k = 0; k < 30000; k++)
            one_op(st, &copy);
        for (int k = 0; k < 40; k++) /* and grow the arena */
            cr_assert_not_null(tm_store_malloc(st, 1 << 20));
        tm_store_abort(st);
        TU_OK(tm_store_stats(st, &s1));
        cr_assert_eq(s1.arena_size, s0.arena_size);
        cr_assert_eq(s1.live_bytes, s0.live_bytes);
        cr_assert_eq(s1.free_bytes, s0.free_bytes);
        cr_assert_eq(s1.free_blocks, s0.free_blocks);
        cr_assert_eq(s1.largest_free, s0.largest_free);
        cr_assert_eq(arena_sum(st), h0, "arena contents differ after abort");
        check_all(st, m);
    }
    TU_OK(tm_close(st));
    free(m);
}

/* ---- (c) crash during allocation-heavy transactions ---- */

#define CRASH_N 256
struct centry {
    unsigned char *p;
    size_t size;
    uint64_t sum;
};
struct croot {
    uint64_t seq;
    struct centry e[CRASH_N];
};

struct crash_arg {
    const char *path;
    uint64_t seed;
    int fd;
};

static void crash_child(const struct crash_arg *a)
{
    tm_options o = tu_opts(a->seed % 3 == 0 ? TM_SYNC_FULL : TM_SYNC_NONE);
    tm_store *st;
    struct croot *root;
    uint64_t rs = a->seed;
    if (tm_open(a->path, &o, &st) != 0)
        _exit(2);
    if (!(root = tm_store_root(st, sizeof *root)))
        _exit(3);
    for (;;) {
        if (tm_store_begin(st) != 0)
            _exit(4);
        for (int k = 0; k < 30; k++) {
            struct centry *e = &root->e[tu_rand(&rs) % CRASH_N];
            size_t size = pick_size(&rs);
            if (size > 200000)
                size = 200000;
            if (e->p && tu_rand(&rs) % 2) {
                tm_store_free(st, e->p);
                e->p = NULL;
                e->size = 0;
                continue;
            }
            e->p = e->p ? tm_store_realloc(st, e->p, size) : tm_store_malloc(st, size);
            if (!e->p)
                _exit(5);
            e->size = size;
            fill(e->p, size, tu_rand(&rs));
            e->sum = sum(e->p, size);
        }
        root->seq++;
        if (tm_store_commit(st) != 0)
            _exit(6);
        if (write(a->fd, &root->seq, sizeof root->seq) != sizeof root->seq)
            _exit(7);
    }
}

Test(heap, crash_recovers_last_commit, .timeout = 300)
{
    const char *path = tu_path("crash.tmf");
    uint64_t rs = 12345, last = 0;
    for (int iter = 0; iter < 100; iter++) {
        int pfd[2];
        struct crash_arg a = {path, 1000 + (uint64_t)iter, 0};
        struct timespec ts = {0, (long)(2 + tu_rand(&rs) % 80) * 1000000L};
        pid_t pid;
        int status;
        cr_assert_eq(pipe(pfd), 0);
        a.fd = pfd[1];
        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            close(pfd[0]);
            crash_child(&a);
        }
        close(pfd[1]);
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        cr_assert(WIFSIGNALED(status), "child exited with %d", WEXITSTATUS(status));
        for (uint64_t v; read(pfd[0], &v, sizeof v) == sizeof v;)
            last = v;
        close(pfd[0]);

        tm_store *st = open_opts(path, 0, TM_SYNC_NONE);
        struct croot *root = tm_store_root(st, sizeof *root);
        cr_assert_not_null(root);
        cr_assert(root->seq == last || root->seq == last + 1, "seq %llu, last reported %llu",
                  (unsigned long long)root->seq, (unsigned long long)last);
        last = root->seq;
        CHECK(st);
        for (int i = 0; i < CRASH_N; i++) {
            struct centry *e = &root->e[i];
            if (!e->p)
                continue;
            cr_assert_eq(sum(e->p, e->size), e->sum, "entry %d changed", i);
            cr_assert_geq(tm_store_usable_size(st, e->p), e->size);
        }
        TU_OK(tm_close(st));
    }
}

/* ---- (d) misuse is reported with the address, then abort ---- */

struct misuse {
    char path[512];
    int kind;
    uintptr_t addr; /* written by the child, read by the parent */
};

static void misuse_child(void *arg)
{
    struct misuse *mu = arg;
    tm_options o = tu_opts(TM_SYNC_NONE);
    tm_store *st;
    char *p, *q;
    if (tm_open(mu->path, &o, &st) != 0)
        _exit(2);
    tm_store_begin(st);
    p = tm_store_malloc(st, 40);
    q = tm_store_malloc(st, 100000);
    switch (mu->kind) {
    case 0: /* double free, small */
        mu->addr = (uintptr_t)p;
        tm_store_free(st, p);
        tm_store_free(st, p);
        break;
    case 1: /* double free, large */
        mu->addr = (uintptr_t)q;
        tm_store_free(st, q);
        tm_store_free(st, q);
        break;
    case 2: /* a pointer inside a small block */
        mu->addr = (uintptr_t)(p + 16);
        tm_store_free(st, p + 16);
        break;
    case 3: /* a pointer inside a large block */
        mu->addr = (uintptr_t)(q + 4096);
        tm_store_free(st, q + 4096);
        break;
    case 4: /* free outside a write transaction */
        tm_store_commit(st);
        mu->addr = (uintptr_t)p;
        tm_store_free(st, p);
        break;
    case 5: /* realloc outside a write transaction */
        tm_store_commit(st);
        mu->addr = (uintptr_t)q;
        tm_store_realloc(st, q, 10);
        break;
    case 6: { /* a pointer of no store */
        static char not_ours[64];
        mu->addr = (uintptr_t)not_ours;
        tm_free(not_ours);
        break;
    }
    case 7: /* a freed large block, after its neighbours merged */
        tm_store_free(st, q);
        tm_store_free(st, p);
        mu->addr = (uintptr_t)q;
        tm_store_realloc(st, q, 5);
        break;
    case 8: { /* double free of a small slot past the recent list, in the bitmap */
        char *v[RECENT_MAX4 + 1];
        for (unsigned i = 0; i <= RECENT_MAX4; i++)
            v[i] = tm_store_malloc(st, 40);
        for (unsigned i = 0; i <= RECENT_MAX4; i++)
            tm_store_free(st, v[i]);
        mu->addr = (uintptr_t)v[RECENT_MAX4];
        tm_store_free(st, v[RECENT_MAX4]);
        break;
    }
    case 9: /* realloc of a small slot on the recent list */
        tm_store_free(st, p);
        mu->addr = (uintptr_t)p;
        tm_store_realloc(st, p, 20);
        break;
    case 10: /* a write after free changes a recent list's link */
        tm_store_free(st, p);
        ((uint64_t *)p)[0] = mu->addr = 0x123450;
        if (tm_store_malloc(st, 40) != p) /* the slot itself is fine */
            _exit(3);
        tm_store_malloc(st, 40);
        break;
    case 12: /* the heap's own span map block, which malloc never returned */
        mu->addr = (uintptr_t)heap_state_of(st)->smap;
        tm_store_free(st, heap_state_of(st)->smap);
        break;
    case 11: /* a double free after the tag was overwritten */
        tm_store_free(st, p);
        ((uint64_t *)p)[1] = 0;
        mu->addr = (uintptr_t)p;
        tm_store_free(st, p);
        break;
    }
    _exit(0);
}

static void expect_abort(int kind)
{
    struct misuse *mu = mmap(NULL, sizeof *mu, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    char err[1024], hex[32];
    int status;
    cr_assert_neq(mu, MAP_FAILED);
    snprintf(mu->path, sizeof mu->path, "%s", tu_path("misuse.tmf"));
    mu->kind = kind;
    status = tu_run_child(misuse_child, mu, err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "kind %d: status %#x, stderr: %s",
              kind, status, err);
    snprintf(hex, sizeof hex, "%016lx", (unsigned long)mu->addr);
    cr_assert(strstr(err, hex), "kind %d: message lacks the address %s: %s", kind, hex, err);
    munmap(mu, sizeof *mu);
}

Test(heap, misuse_double_free_small) { expect_abort(0); }
Test(heap, misuse_double_free_large) { expect_abort(1); }
Test(heap, misuse_interior_small) { expect_abort(2); }
Test(heap, misuse_interior_large) { expect_abort(3); }
Test(heap, misuse_free_outside_tx) { expect_abort(4); }
Test(heap, misuse_realloc_outside_tx) { expect_abort(5); }
Test(heap, misuse_foreign_pointer) { expect_abort(6); }
Test(heap, misuse_realloc_freed) { expect_abort(7); }
Test(heap, misuse_double_free_small_in_bitmap) { expect_abort(8); }
Test(heap, misuse_realloc_freed_small) { expect_abort(9); }
Test(heap, misuse_write_after_free_on_a_recent_list) { expect_abort(10); }
Test(heap, misuse_double_free_with_tag_overwritten) { expect_abort(11); }
Test(heap, misuse_free_of_the_heaps_own_span_map) { expect_abort(12); }

/* ---- (e) edge cases ---- */

Test(heap, malloc_zero_calloc_overflow_huge)
{
    tm_store *st = open_opts(tu_path("e.tmf"), 0, TM_SYNC_NONE);
    void *a, *b;
    tm_stats_t s0, s1;
    errno = 0;
    cr_assert_null(tm_store_malloc(st, 10));
    cr_assert_eq(errno, TM_ENOTX);
    TU_OK(tm_store_begin(st));
    a = tm_store_malloc(st, 0);
    b = tm_store_malloc(st, 0);
    cr_assert(a && b && a != b);
    tm_store_free(st, a);
    tm_store_free(st, b);
    TU_OK(tm_store_stats(st, &s0));
    errno = 0;
    cr_assert_null(tm_store_calloc(st, SIZE_MAX / 2, 3));
    cr_assert_eq(errno, ENOMEM);
    size_t huge[] = {SIZE_MAX, SIZE_MAX - 15, SIZE_MAX / 2, ((size_t)1 << 30) + 1, (size_t)1 << 40};
    for (unsigned i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        errno = 0;
        cr_assert_null(tm_store_malloc(st, huge[i]), "size %zu", huge[i]);
        cr_assert_eq(errno, ENOMEM);
        errno = 0;
        cr_assert_null(tm_store_aligned_alloc(st, 4096, huge[i]));
        cr_assert_eq(errno, ENOMEM);
    }
    a = tm_store_malloc(st, 100);
    cr_assert_null(tm_store_realloc(st, a, SIZE_MAX - 100));
    cr_assert_eq(errno, ENOMEM);
    tm_store_free(st, a); /* a survived the failed realloc */
    TU_OK(tm_store_stats(st, &s1));
    cr_assert_eq(s1.arena_size, s0.arena_size);
    cr_assert_eq(s1.live_bytes, s0.live_bytes);
    /* calloc zeroes reused memory */
    a = tm_store_malloc(st, 3000);
    memset(a, 0xff, 3000);
    tm_store_free(st, a);
    b = tm_store_calloc(st, 1000, 3);
    for (int i = 0; i < 3000; i++)
        cr_assert_eq(((unsigned char *)b)[i], 0);
    /* realloc(p, 0) frees and returns NULL; realloc(NULL, n) allocates */
    TU_OK(tm_store_stats(st, &s0));
    a = tm_store_realloc(st, NULL, 50000);
    cr_assert_not_null(a);
    cr_assert_null(tm_store_realloc(st, a, 0));
    TU_OK(tm_store_stats(st, &s1));
    cr_assert_eq(s1.live_bytes, s0.live_bytes);
    TU_OK(tm_store_commit(st));
    CHECK(st);
    TU_OK(tm_close(st));
}

Test(heap, alignment)
{
    tm_store *st = open_opts(tu_path("al.tmf"), 0, TM_SYNC_NONE);
    void *p = (void *)1;
    TU_OK(tm_store_begin(st));
    cr_assert_eq(tm_store_posix_memalign(st, &p, 0, 10), EINVAL);
    cr_assert_eq(tm_store_posix_memalign(st, &p, 3, 10), EINVAL);
    cr_assert_eq(tm_store_posix_memalign(st, &p, 4, 10), EINVAL);
    cr_assert_eq(tm_store_posix_memalign(st, &p, 24, 10), EINVAL);
    cr_assert_eq(p, (void *)1, "posix_memalign changed *out on error");
    errno = 0;
    cr_assert_null(tm_store_aligned_alloc(st, 48, 10));
    cr_assert_eq(errno, EINVAL);
    for (size_t al = 1; al <= ((size_t)1 << 20); al <<= 1) {
        for (size_t size = 1; size < 300000; size = size * 7 + 3) {
            char *q = tm_store_aligned_alloc(st, al, size);
            cr_assert_not_null(q, "aligned_alloc(%zu, %zu)", al, size);
            cr_assert_eq((uintptr_t)q % al, 0, "aligned_alloc(%zu, %zu) = %p", al, size, (void *)q);
            cr_assert_geq(tm_store_usable_size(st, q), size);
            memset(q, 0x5a, size);
            if (al >= 8) {
                void *r = NULL;
                TU_OK(tm_store_posix_memalign(st, &r, al, size));
                cr_assert_eq((uintptr_t)r % al, 0);
                tm_store_free(st, r);
            }
            if (size % 2)
                tm_store_free(st, q);
        }
        CHECK(st);
    }
    TU_OK(tm_store_commit(st));
    CHECK(st);
    TU_OK(tm_close(st));
}

Test(heap, realloc_in_place_and_usable_size)
{
    tm_store *st = open_opts(tu_path("ri.tmf"), 0, TM_SYNC_NONE);
    char *p, *q, *r;
    TU_OK(tm_store_begin(st));
    for (size_t n = 1; n < 200000; n += n / 3 + 1) {
        q = tm_store_malloc(st, n);
        cr_assert_geq(tm_store_usable_size(st, q), n);
        cr_assert_eq((uintptr_t)q % 16, 0);
        tm_store_free(st, q);
    }
    p = tm_store_malloc(st, 10000);
    q = tm_store_malloc(st, 10000);
    r = tm_store_malloc(st, 10000); /* keeps q's space from merging with the rest */
    memset(p, 7, 10000);
    tm_store_free(st, q);
    cr_assert_eq(tm_store_realloc(st, p, 15000), p, "grow into the free neighbour");
    cr_assert_eq(tm_store_realloc(st, p, 20000), p, "grow into all of it");
    cr_assert_eq(tm_store_realloc(st, p, 3000), p, "shrink");
    cr_assert_eq(tm_store_realloc(st, p, 19000), p, "grow back");
    for (int i = 0; i < 3000; i++)
        cr_assert_eq(p[i], 7);
    CHECK(st);
    tm_store_free(st, r);
    /* the last block grows with the arena, in place */
    q = tm_store_malloc(st, 300000);
    tm_stats_t s;
    TU_OK(tm_store_stats(st, &s));
    for (size_t n = 400000; n < s.arena_size * 4; n *= 2)
        q = tm_store_realloc(st, q, n);
    cr_assert_not_null(q);
    CHECK(st);
    /* small blocks keep their place within their class */
    p = tm_store_malloc(st, 100);
    cr_assert_eq(tm_store_realloc(st, p, 110), p);
    cr_assert_eq(tm_store_realloc(st, p, 97), p);
    TU_OK(tm_store_commit(st));
    CHECK(st);
    TU_OK(tm_close(st));
}

Test(heap, growth_to_max_then_enomem, .timeout = 120)
{
    size_t max = (size_t)64 << 20;
    tm_store *st = open_opts(tu_path("g.tmf"), max, TM_SYNC_NONE);
    void **v = calloc(100000, sizeof *v);
    size_t n = 0, big = 0;
    tm_stats_t s;
    TU_OK(tm_store_begin(st));
    while ((v[n] = tm_store_malloc(st, 1 << 20)) != NULL)
        n++, big++;
    cr_assert_eq(errno, ENOMEM);
    while (n < 100000 && (v[n] = tm_store_malloc(st, 1000)) != NULL)
        n++;
    cr_assert_eq(errno, ENOMEM);
    cr_assert_gt(big, 55);
    TU_OK(tm_store_stats(st, &s));
    cr_assert_leq(s.arena_size, max);
    CHECK(st);
    TU_OK(tm_store_commit(st));
    CHECK(st);
    TU_OK(tm_store_begin(st));
    for (size_t i = 0; i < n; i++)
        tm_store_free(st, v[i]);
    TU_OK(tm_store_stats(st, &s));
    cr_assert_eq(s.live_bytes, 0);
    cr_assert_geq(s.largest_free, max - (1 << 20), "free space did not coalesce: %llu",
                  (unsigned long long)s.largest_free);
    cr_assert_not_null(tm_store_malloc(st, 32 << 20));
    TU_OK(tm_store_commit(st));
    CHECK(st);
    TU_OK(tm_close(st));
    free(v);
}

Test(heap, default_store_calls)
{
    char msg[256];
    void *p;
    setenv("TMF_PATH", tu_path("default.tmf"), 1);
    setenv("TMF_MAX_SIZE", "1g", 1);
    setenv("TMF_SYNC", "none", 1);
    errno = 0;
    cr_assert_null(tm_malloc(1));
    cr_assert_eq(errno, TM_ENOTX);
    TU_OK(tm_begin());
    p = tm_malloc(100);
    cr_assert_not_null(p);
    cr_assert_eq(tm_store_of(p), tm_default());
    cr_assert_null(tm_store_of(msg));
    cr_assert_geq(tm_usable_size(p), 100);
    p = tm_realloc(p, 100000);
    cr_assert_not_null(p);
    tm_free(p);
    p = tm_calloc(10, 10);
    cr_assert_not_null(p);
    tm_free(tm_aligned_alloc(4096, 10));
    void *q = NULL;
    TU_OK(tm_posix_memalign(&q, 64, 10));
    tm_free(q);
    TU_OK(tm_commit());
    cr_assert_eq(tm_check(msg, sizeof msg), 0, "%s", msg);
}

Test(heap, checker_finds_corruption)
{
    tm_store *st = open_opts(tu_path("cc.tmf"), 0, TM_SYNC_NONE);
    char msg[256];
    uint64_t *p;
    TU_OK(tm_store_begin(st));
    p = tm_store_malloc(st, 10000);
    tm_store_malloc(st, 10000);
    CHECK(st);
    p[-1] ^= 0x100; /* the block's size in its header */
    cr_assert_eq(tm_store_check(st, msg, sizeof msg), TM_ECORRUPT);
    cr_assert(strlen(msg) > 0);
    tm_store_abort(st);
    CHECK(st);
    TU_OK(tm_close(st));
}

/* Damage to the heap's state in the superblock (which the superblock's
 * checksum does not cover): statistics report it instead of following a
 * wild link, and an allocation refuses it instead of setting a new heap up
 * over the live blocks. */
Test(heap, damaged_heap_state_is_reported_not_followed)
{
    tm_store *st = open_opts(tu_path("hs.tmf"), 0, TM_SYNC_NONE);
    struct heap_state *h;
    tm_stats_t s;
    char msg[256];
    long *root = tm_store_root(st, 64);
    TU_OK(tm_store_begin(st));
    root[0] = 42;
    for (int i = 0; i < 8; i++) /* a few free blocks in the tree (and bins, H10) */
        tm_store_free(st, tm_store_malloc(st, BIN_MAX + (size_t)i * 100)), tm_store_malloc(st, 5000);
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_stats(st, &s));
    cr_assert_gt(s.largest_free, 0);

    TU_OK(tm_store_begin(st));
    h = heap_state_of(st);
    fnode *good = h->root;
    h->root = (fnode *)(uintptr_t)0x300000000000ull; /* outside the arena */
    cr_assert_eq(tm_store_stats(st, &s), TM_ECORRUPT);
    cr_assert_eq(tm_store_check(st, msg, sizeof msg), TM_ECORRUPT);
    h->root = good;
    good->right = (fnode *)((char *)good + 16); /* inside the arena, not a free block */
    cr_assert_eq(tm_store_stats(st, &s), TM_ECORRUPT);
    tm_store_abort(st);
    TU_OK(tm_store_stats(st, &s));

    TU_OK(tm_store_begin(st));
    heap_state_of(st)->magic ^= 1;
    errno = 0;
    cr_assert_null(tm_store_malloc(st, 100));
    cr_assert_eq(errno, TM_ECORRUPT);
    cr_assert_eq(tm_store_stats(st, &s), TM_ECORRUPT);
    tm_store_abort(st);
    cr_assert_eq(root[0], 42);
    CHECK(st);
    TU_OK(tm_close(st));
}

/* The free tree's depth (H3 makes it a treap: expected O(log n)). */
static unsigned tree_depth(const fnode *t)
{
    unsigned l, r;
    if (!t)
        return 0;
    l = tree_depth(t->left), r = tree_depth(t->right);
    return 1 + (l > r ? l : r);
}

/* Free blocks at a regular stride of addresses, the common shape of a heap
 * whose every other block was freed: the treap stays shallow.  Format 2's
 * priority made it a list of them (depth = count), which the checker then
 * called corrupt.  The blocks are of an exact size, as a heap of format 3
 * made them for any size above SMALL_MAX (format 4 rounds such sizes up to
 * big classes, H8, whose strides do not line the old treap up). */
enum { STRIDED = 3000 };

static void *exact_block(tm_store *st, uint64_t size)
{
    blk *b;
    if (heap_state_of(st)->magic == 0)
        tm_store_free(st, tm_store_malloc(st, 1)); /* sets the heap up */
    b = heap_large_alloc(st, size + BLK_HDR, QUANTUM, BLK_HDR, 0);
    cr_assert_not_null(b);
    heap_state_of(st)->live_large += blk_size(b);
    return b + 1;
}

static tm_store *strided_heap(const char *path)
{
    tm_store *st = open_opts(path, 0, TM_SYNC_NONE);
    void *p[2 * STRIDED];
    TU_OK(tm_store_begin(st));
    for (int i = 0; i < 2 * STRIDED; i++)
        p[i] = exact_block(st, 5504);
    for (int i = 0; i < 2 * STRIDED; i += 2)
        tm_store_free(st, p[i]);
    TU_OK(tm_store_commit(st));
    return st;
}

Test(heap, free_tree_stays_shallow_for_strided_blocks, .timeout = 120)
{
    tm_store *st = strided_heap(tu_path("st.tmf"));
    const struct heap_state *h = heap_state_of(st);
    cr_assert_geq(h->free_blocks, STRIDED);
    unsigned d = tree_depth(h->root);
    cr_assert_leq(d, 60, "depth %u for %llu free blocks", d, (unsigned long long)h->free_blocks);
    CHECK(st);
    TU_OK(tm_close(st));
}

/* A heap of format 2 (its treap ordered by heap_prio_v1, here rebuilt that
 * way: as deep as it has nodes) is checked as it is, read without change,
 * and rebuilt with heap_prio by the first write transaction that frees or
 * allocates. */
Test(heap, format_2_free_tree_is_rebuilt_by_the_first_change, .timeout = 120)
{
    tm_store *st = strided_heap(tu_path("v1.tmf"));
    const struct heap_state *h = heap_state_of(st);
    tm_stats_t s0, s1;
    TU_OK(tm_store_stats(st, &s0));
    TU_OK(tm_store_begin(st));
    TU_OK(-heap_rebuild_tree(st, HEAP_MAGIC_V1));
    TU_OK(tm_store_commit(st));
    cr_assert_eq(h->magic, HEAP_MAGIC_V1);
    cr_assert_gt(tree_depth(h->root), STRIDED / 2, "the old priority should degenerate here");
    CHECK(st);
    TU_OK(tm_store_stats(st, &s1));
    cr_assert_eq(s1.largest_free, s0.largest_free);
    cr_assert_eq(s1.free_blocks, s0.free_blocks);

    TU_OK(tm_store_begin(st));
    void *q = tm_store_malloc(st, 5504);
    cr_assert_not_null(q);
    cr_assert_eq(h->magic, HEAP_MAGIC);
    cr_assert_leq(tree_depth(h->root), 60);
    tm_store_free(st, q);
    TU_OK(tm_store_commit(st));
    CHECK(st);

    TU_OK(tm_store_begin(st)); /* a damaged block stops the rebuild before it changes anything */
    TU_OK(-heap_rebuild_tree(st, HEAP_MAGIC_V1));
    uint64_t *blkp = tm_store_malloc(st, 5504); /* rebuilds first */
    TU_OK(-heap_rebuild_tree(st, HEAP_MAGIC_V1));
    const fnode *root_before = h->root;
    blkp[-1] ^= 0x100; /* its size, in its header */
    errno = 0;
    cr_assert_null(tm_store_malloc(st, 5504));
    cr_assert_eq(errno, TM_ECORRUPT);
    cr_assert_eq(h->magic, HEAP_MAGIC_V1);
    cr_assert_eq(h->root, root_before);
    tm_store_abort(st);
    CHECK(st);

    TU_OK(tm_store_begin(st)); /* a free alone rebuilds it too */
    TU_OK(-heap_rebuild_tree(st, HEAP_MAGIC_V1));
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_begin(st));
    q = tm_store_malloc(st, 64); /* a slot: no tree operation */
    cr_assert_eq(h->magic, HEAP_MAGIC);
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_begin(st));
    TU_OK(-heap_rebuild_tree(st, HEAP_MAGIC_V1));
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_begin(st));
    tm_store_free(st, q);
    cr_assert_eq(h->magic, HEAP_MAGIC);
    TU_OK(tm_store_commit(st));
    CHECK(st);
    TU_OK(tm_close(st));
}

/* H7: the recent lists.  A live slot that happens to carry the tag is freed
 * normally; a broken tag or link is reported. */
Test(heap, recent_lists_checked)
{
    tm_store *st = open_opts(tu_path("rl.tmf"), 0, TM_SYNC_NONE);
    const struct heap_state *h;
    char msg[256];
    uint64_t *p, *q, *r;
    TU_OK(tm_store_begin(st));
    h = heap_state_of(st);
    p = tm_store_malloc(st, 48);
    q = tm_store_malloc(st, 48);
    r = tm_store_malloc(st, 48);
    unsigned n0 = h->nrecent[heap_class(48)]; /* neighbours taken along from a fresh span */
    cr_assert_leq(n0, RECENT_MAX4 - 2);
    q[1] = heap_recent_tag(h, q, heap_class(48)); /* looks listed, is not */
    tm_store_free(st, q);
    tm_store_free(st, p);
    cr_assert_eq(h->nrecent[heap_class(48)], n0 + 2);
    CHECK(st);
    cr_assert_eq(tm_store_malloc(st, 48), p, "the slot freed last comes back first");
    tm_store_free(st, p);
    p[1] ^= 1;
    cr_assert_eq(tm_store_check(st, msg, sizeof msg), TM_ECORRUPT);
    cr_assert(strstr(msg, "tag"), "%s", msg);
    p[1] ^= 1;
    CHECK(st);
    p[0] = (uintptr_t)r; /* a live slot linked in */
    cr_assert_eq(tm_store_check(st, msg, sizeof msg), TM_ECORRUPT);
    p[0] = (uintptr_t)p; /* a cycle */
    cr_assert_eq(tm_store_check(st, msg, sizeof msg), TM_ECORRUPT);
    tm_store_abort(st);
    CHECK(st);
    TU_OK(tm_close(st));
}

/* ---- (f) format 4: the fast path, the span map (H9), the big lists (H8) ---- */

/* A store whose heap was made by format 3 (while the header said 3, as an
 * older library's store would), with slots on recent lists, slots freed
 * into bitmaps and large blocks; reopened by a first opener, which upgrades
 * the store, and converted by its first write transaction that allocates. */
struct old_heap {
    char *slot[300];  /* 40-byte slots: [0, 100) freed (onto the list, then into the bitmap), rest live */
    char *big[20];    /* 10000-byte blocks: [0, 10) freed into the tree */
};

/* A handle of a library of format version v: the file's header says so,
 * and so does the handle's own view of it, which heap_init consults.  (An
 * open handle of this library always sees its own format: a first opener
 * upgrades, and an older library's open store is refused.) */
static void as_version(tm_store *st, const char *path, uint32_t v)
{
    tu_set_version(path, v);
    st->hdr.version = v;
}

/* Reopens path as its first opener, which upgrades the store; its heap,
 * of magic old, is converted by a later write, not by the open. */
static tm_store *reopen_upgraded(const char *path, uint64_t old)
{
    tm_store *st = open_opts(path, 0, TM_SYNC_NONE);
    cr_assert_eq(st->hdr.version, FORMAT_VERSION);
    cr_assert_eq(heap_state_of(st)->magic, old, "converted by a write, not by the open");
    CHECK(st);
    return st;
}

static tm_store *format_3_heap(const char *path, struct old_heap *o)
{
    tm_store *st = open_opts(path, 0, TM_SYNC_NONE);
    as_version(st, path, 3);
    TU_OK(tm_store_begin(st));
    for (int i = 0; i < 300; i++)
        cr_assert_not_null(o->slot[i] = tm_store_malloc(st, 40));
    for (int i = 0; i < 20; i++)
        cr_assert_not_null(o->big[i] = tm_store_malloc(st, 10000));
    for (int i = 0; i < 100; i++)
        tm_store_free(st, o->slot[i]);
    for (int i = 0; i < 10; i++)
        tm_store_free(st, o->big[i]);
    TU_OK(tm_store_commit(st));
    cr_assert_eq(heap_state_of(st)->magic, HEAP_MAGIC_V2);
    cr_assert_eq(heap_state_of(st)->nrecent[heap_class(40)], RECENT_MAX);
    cr_assert_null(heap_state_of(st)->smap);
    CHECK(st);
    return st;
}

Test(heap, format_3_heap_is_converted_by_the_first_change, .timeout = 120)
{
    const char *path = tu_path("f3.tmf");
    struct old_heap o;
    tm_stats_t s0, s1;
    tm_store *st = format_3_heap(path, &o);
    const struct heap_state *h = heap_state_of(st);
    TU_OK(tm_store_stats(st, &s0));
    TU_OK(tm_close(st));

    st = reopen_upgraded(path, HEAP_MAGIC_V2);
    h = heap_state_of(st);

    TU_OK(tm_store_begin(st)); /* an abort undoes a conversion */
    cr_assert_not_null(tm_store_malloc(st, 100));
    cr_assert_eq(h->magic, HEAP_MAGIC);
    cr_assert_not_null(h->smap);
    tm_store_abort(st);
    cr_assert_eq(h->magic, HEAP_MAGIC_V2);
    CHECK(st);

    TU_OK(tm_store_begin(st));
    tm_store_free(st, o.slot[150]); /* a free converts too */
    cr_assert_eq(h->magic, HEAP_MAGIC);
    CHECK(st);
    cr_assert_eq(tm_store_malloc(st, 40), o.slot[150], "the slot freed last comes back first");
    char *again = tm_store_malloc(st, 40); /* then the list, retagged, popped by the fast path */
    int found = 0;
    for (int i = 0; i < 100; i++)
        found |= again == o.slot[i];
    cr_assert(found, "%p is not a slot format 3 listed", (void *)again);
    tm_store_free(st, again);
    tm_store_free(st, o.slot[150]);
    TU_OK(tm_store_stats(st, &s1));
    cr_assert_eq(s1.live_bytes, s0.live_bytes - 48);
    cr_assert_eq(s1.free_blocks, s0.free_blocks);
    for (int i = 100; i < 300; i++) /* live slots of old spans, each once */
        if (i != 150)
            tm_store_free(st, o.slot[i]);
    for (int i = 10; i < 20; i++)
        tm_store_free(st, o.big[i]);
    CHECK(st);
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_stats(st, &s1));
    cr_assert_eq(s1.live_bytes, 0);
    TU_OK(tm_close(st));
    st = open_opts(path, 0, TM_SYNC_NONE);
    CHECK(st);
    TU_OK(tm_close(st));
}

/* A slot freed into its bitmap by format 3 carries no tag; after the
 * conversion, freeing it again is still reported (its span's high-water
 * mark starts at 0, so the slow path decides, by the bitmap). */
static void double_free_after_conversion(void *arg)
{
    const char *path = arg;
    tm_store *st;
    tm_options opt = tu_opts(TM_SYNC_NONE);
    if (tm_open(path, &opt, &st) != 0 || tm_store_begin(st) != 0)
        _exit(2);
    if (!tm_store_malloc(st, 100) || heap_state_of(st)->magic != HEAP_MAGIC)
        _exit(3);
    tm_store_free(st, *(char **)tm_store_root(st, sizeof(char *)));
    _exit(0);
}

Test(heap, format_3_bitmap_slot_double_freed_after_conversion, .timeout = 120)
{
    const char *path = tu_path("f3df.tmf");
    struct old_heap o;
    char err[1024], hex[32];
    tm_store *st = format_3_heap(path, &o);
    char *victim = o.slot[99]; /* freed last: into the bitmap, the list being full */
    TU_OK(tm_store_begin(st));
    *(char **)tm_store_root(st, sizeof(char *)) = victim;
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
    int status = tu_run_child(double_free_after_conversion, (void *)path, err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %#x, stderr: %s", status, err);
    snprintf(hex, sizeof hex, "%016lx", (unsigned long)(uintptr_t)victim);
    cr_assert(strstr(err, hex) && strstr(err, "double free"), "%s", err);
}

/* A format-3 library's new heap is a format-3 one and stays so, until the
 * store is of this format. */
Test(heap, format_3_store_keeps_a_format_3_heap_until_upgraded)
{
    const char *path = tu_path("k3.tmf");
    tm_store *st = open_opts(path, 0, TM_SYNC_NONE);
    const struct heap_state *h = heap_state_of(st);
    as_version(st, path, 3);
    TU_OK(tm_store_begin(st));
    void *a = tm_store_malloc(st, 100), *b = tm_store_malloc(st, 10000);
    tm_store_free(st, a);
    tm_store_free(st, b);
    TU_OK(tm_store_commit(st));
    cr_assert_eq(h->magic, HEAP_MAGIC_V2);
    cr_assert_eq(h->big_bytes, 0);
    cr_assert_null(h->big[heap_big_class(10000)], "a format-3 heap keeps no big lists");
    CHECK(st);
    as_version(st, path, FORMAT_VERSION);
    TU_OK(tm_store_begin(st));
    cr_assert_not_null(tm_store_malloc(st, 10000));
    cr_assert_eq(h->magic, HEAP_MAGIC);
    TU_OK(tm_store_commit(st));
    CHECK(st);
    TU_OK(tm_close(st));
}

/* ---- (g) format 5: the bins (H10) ---- */

static fnode *node_of(void *p)
{
    return (fnode *)((char *)p - BLK_HDR);
}

/* H10's bins: each size below BIN_MAX (in steps of QUANTUM) falls in the
 * bin whose least size is at most it and whose successor's is above it,
 * the bins' least sizes rise, and bins are at most 1/16 of their size wide
 * (so a block of the next bin up always fits a request). */
Test(heap, bin_of_each_size)
{
    for (uint64_t n = MIN_BLOCK; n < BIN_MAX; n += QUANTUM) {
        unsigned i = heap_bin(n);
        cr_assert_lt(i, NBIN);
        cr_assert(heap_bin_size(i) <= n && (i + 1 == NBIN ? BIN_MAX : heap_bin_size(i + 1)) > n,
                  "size %llu in bin %u [%llu, %llu)", (unsigned long long)n, i,
                  (unsigned long long)heap_bin_size(i), (unsigned long long)heap_bin_size(i + 1));
    }
    for (unsigned i = 2; i + 1 < NBIN; i++) {
        cr_assert_lt(heap_bin_size(i), heap_bin_size(i + 1));
        uint64_t width = heap_bin_size(i + 1) - heap_bin_size(i);
        cr_assert_leq(width, heap_bin_size(i) / 16 > QUANTUM ? heap_bin_size(i) / 16 : QUANTUM, "bin %u", i);
    }
    cr_assert_eq(heap_bin_size(NBIN - 1), BIN_MAX - BIN_MAX / 32, "the last bin ends at BIN_MAX");
}

/* A freed block below BIN_MAX heads its bin and comes back first; free
 * neighbours merge into one binned block; larger free blocks stay in the
 * tree; an aligned request is served from a binned block. */
Test(heap, bins_reuse_merge_and_align, .timeout = 60)
{
    tm_store *st = open_opts(tu_path("bn.tmf"), 0, TM_SYNC_NONE);
    struct heap_state *h = heap_state_of(st);
    TU_OK(tm_store_begin(st));
    char *a = tm_store_malloc(st, 5000), *g1 = tm_store_malloc(st, 100), *b = tm_store_malloc(st, 5000);
    char *c = tm_store_malloc(st, 7000), *g2 = tm_store_malloc(st, 5000);
    cr_assert(a && g1 && b && c && g2);
    cr_assert_eq(h->magic, HEAP_MAGIC);
    uint64_t nfree = h->free_blocks;

    tm_store_free(st, a);
    unsigned i = heap_bin(blk_size(node_of(a)));
    cr_assert_eq(h->bins[i], node_of(a));
    cr_assert(h->bin_map[i / 64] & (1ull << (i % 64)));
    cr_assert_eq(h->free_blocks, nfree + 1);
    CHECK(st);
    cr_assert_eq(tm_store_malloc(st, 5000), a, "the block freed last comes back first");
    cr_assert_null(h->bins[i]);
    cr_assert_eq(h->bin_map[i / 64] & (1ull << (i % 64)), 0);

    tm_store_free(st, b);
    tm_store_free(st, c); /* merges with b */
    cr_assert_eq(h->free_blocks, nfree + 1);
    uint64_t merged = blk_size(node_of(b));
    cr_assert_eq(merged, (uint64_t)(g2 - b));
    cr_assert_eq(h->bins[heap_bin(merged)], node_of(b));
    CHECK(st);
    char *al = tm_store_aligned_alloc(st, 4096, 6000); /* fits in the merged block only once aligned */
    cr_assert_not_null(al);
    cr_assert_eq((uintptr_t)al % 4096, 0);
    cr_assert(al > b && al + 6000 <= g2, "%p not in [%p, %p)", (void *)al, (void *)b, (void *)g2);
    CHECK(st);

    char *huge = tm_store_malloc(st, 2 * BIN_MAX), *g3 = tm_store_malloc(st, 100);
    cr_assert(huge && g3);
    tm_store_free(st, huge);
    cr_assert_geq(blk_size(node_of(huge)), BIN_MAX);
    const fnode *t = h->root;
    while (t && t != node_of(huge))
        t = blk_size(node_of(huge)) < blk_size(t) || (blk_size(node_of(huge)) == blk_size(t) && node_of(huge) < t)
                ? t->left
                : t->right;
    cr_assert_eq(t, node_of(huge), "a free block of BIN_MAX bytes or more is in the tree");
    CHECK(st);
    TU_OK(tm_store_commit(st));
    CHECK(st);
    TU_OK(tm_close(st));
}

/* A format-4 heap (big lists holding blocks, smaller free blocks in the
 * tree) is converted by the first change once its store is upgraded: the
 * kept blocks are freed, every free block below BIN_MAX goes to its bin,
 * and nothing live moves.  An abort undoes the conversion. */
Test(heap, format_4_heap_is_converted_by_the_first_change, .timeout = 120)
{
    const char *path = tu_path("f4.tmf");
    tm_store *st = open_opts(path, 0, TM_SYNC_NONE);
    struct heap_state *h = heap_state_of(st);
    char *v[40];
    tm_stats_t s0, s1;
    as_version(st, path, 4);
    TU_OK(tm_store_begin(st));
    for (int k = 0; k < 40; k++)
        cr_assert_not_null(v[k] = tm_store_malloc(st, 6000 + 2000 * (size_t)k));
    for (int k = 0; k < 40; k += 2)
        tm_store_free(st, v[k]); /* some onto big lists, the larger into the tree */
    TU_OK(tm_store_commit(st));
    cr_assert_eq(h->magic, HEAP_MAGIC_V3);
    cr_assert_gt(h->big_bytes, 0);
    CHECK(st);
    TU_OK(tm_store_stats(st, &s0));
    TU_OK(tm_close(st));

    st = reopen_upgraded(path, HEAP_MAGIC_V3);
    h = heap_state_of(st);
    TU_OK(tm_store_begin(st)); /* an abort undoes a conversion */
    tm_store_free(st, v[1]);
    cr_assert_eq(h->magic, HEAP_MAGIC);
    tm_store_abort(st);
    cr_assert_eq(h->magic, HEAP_MAGIC_V3);
    CHECK(st);

    TU_OK(tm_store_begin(st));
    cr_assert_not_null(tm_store_malloc(st, 100));
    cr_assert_eq(h->magic, HEAP_MAGIC);
    cr_assert_eq(h->big_bytes, 0);
    for (unsigned k = 0; k < NBIG; k++)
        cr_assert_null(h->big[k]);
    unsigned used = 0;
    for (unsigned k = 0; k < NBIN; k++)
        used += h->bins[k] != NULL;
    cr_assert_gt(used, 0);
    CHECK(st);
    TU_OK(tm_store_stats(st, &s1));
    cr_assert_eq(s1.live_bytes, s0.live_bytes + 112, "live: %llu, was %llu", (unsigned long long)s1.live_bytes,
                 (unsigned long long)s0.live_bytes);
    for (int k = 1; k < 40; k += 2) /* live blocks, each freed once */
        tm_store_free(st, v[k]);
    CHECK(st);
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
    st = open_opts(path, 0, TM_SYNC_NONE);
    CHECK(st);
    TU_OK(tm_close(st));
}

Test(heap, size_classes)
{
    for (size_t n = 1; n <= SMALL_MAX; n++) {
        unsigned c = heap_class(n);
        cr_assert_lt(c, NCLASS);
        cr_assert_geq(heap_cls[c].size, n);
        cr_assert(c == 0 || heap_cls[c - 1].size < n, "size %zu: class %u is not the least", n, c);
        cr_assert_eq(heap_cls[c].size, heap_class_size(c));
        cr_assert_eq(heap_cls[c].nslots, (SPAN_SIZE - SPAN_HDR) / heap_cls[c].size);
    }
    for (size_t n = SMALL_MAX + 1; n <= BIG_MAX; n++) {
        unsigned i = heap_big_class(n);
        cr_assert_lt(i, NBIG);
        cr_assert_geq(heap_big_size(i), n);
        cr_assert(i == 0 ? n > SMALL_MAX : heap_big_size(i - 1) < n, "size %zu: big class %u", n, i);
        cr_assert_leq(heap_big_size(i) - n, heap_big_size(i) / 5, "size %zu rounds up by more than 20%%", n);
    }
}

/* H8: freed blocks of a big class are kept whole and come back first; they
 * return to the tree before the arena grows; realloc grows into one. */
Test(heap, big_lists_keep_blocks_and_give_them_back, .timeout = 60)
{
    const char *path = tu_path("bl.tmf");
    tm_store *st = open_opts(path, 0, TM_SYNC_NONE);
    struct heap_state *h = heap_state_of(st);
    as_version(st, path, 4); /* a format-4 heap (HEAP_MAGIC_V3): format 5 has no big lists */
    unsigned i = heap_big_class(10000);
    void *v[100], *first;
    tm_stats_t s;
    TU_OK(tm_store_begin(st));
    for (int k = 0; k < 100; k++) {
        cr_assert_not_null(v[k] = tm_store_malloc(st, 10000));
        cr_assert_geq(tm_store_usable_size(st, v[k]), heap_big_size(i));
    }
    for (int k = 0; k < 100; k++)
        tm_store_free(st, v[k]);
    cr_assert_eq(h->nbig[i], BIG_LIST_MAX);
    cr_assert_eq(h->big[i], v[BIG_LIST_MAX - 1]);
    TU_OK(tm_store_stats(st, &s));
    cr_assert_eq(s.live_bytes, 0, "kept blocks are not live");
    CHECK(st);
    first = tm_store_malloc(st, 9000); /* same class: the block freed last of the kept ones */
    cr_assert_eq(first, v[BIG_LIST_MAX - 1]);
    tm_store_free(st, first);

    /* an empty list borrows from the next BIG_BORROW classes' lists; the
     * block goes back to its own class's list when freed */
    cr_assert_eq(heap_big_class(8000) + 1, i);
    cr_assert_geq(i, 1 + BIG_BORROW);
    void *borrowed = tm_store_malloc(st, 8000), *fresh = tm_store_malloc(st, heap_big_size(i - 1 - BIG_BORROW));
    cr_assert_eq(borrowed, first, "the 10 KiB class's last kept block");
    cr_assert_geq(tm_store_usable_size(st, borrowed), heap_big_size(i));
    cr_assert_eq(h->nbig[i], BIG_LIST_MAX - 1, "a class more than BIG_BORROW below borrows nothing");
    CHECK(st);
    tm_store_free(st, fresh);
    tm_store_free(st, borrowed);
    cr_assert_eq(h->big[i], borrowed);
    cr_assert_eq(h->nbig[i], BIG_LIST_MAX);

    /* realloc grows in place into a kept neighbour (of a class whose list
     * is empty, so that the three come from the tree, one after another) */
    unsigned j = heap_big_class(13000);
    char *a = tm_store_malloc(st, 20000), *b = tm_store_malloc(st, 13000), *c = tm_store_malloc(st, 20000);
    cr_assert_eq(b, a + blk_size((blk *)a - 1), "not neighbours");
    memset(a, 3, 20000);
    tm_store_free(st, b);
    cr_assert_eq(h->big[j], b);
    cr_assert_eq(tm_store_realloc(st, a, 29000), a);
    cr_assert_null(h->big[j]);
    for (int k = 0; k < 20000; k++)
        cr_assert_eq(a[k], 3);
    CHECK(st);
    tm_store_free(st, a);
    tm_store_free(st, c);

    /* an allocation the tree cannot meet returns the kept blocks first */
    cr_assert_gt(h->big_bytes, 0);
    TU_OK(tm_store_stats(st, &s));
    cr_assert_not_null(tm_store_malloc(st, s.largest_free + PAGE));
    cr_assert_eq(h->big_bytes, 0);
    for (unsigned k = 0; k < NBIG; k++)
        cr_assert_null(h->big[k]);
    CHECK(st);
    TU_OK(tm_store_commit(st));
    CHECK(st);
    TU_OK(tm_close(st));
}

/* The checker proves H8, H9 and H10: damage to any is found. */
static void checker_proves(int version)
{
    const char *path = tu_path("cm.tmf");
    tm_store *st = open_opts(path, 0, TM_SYNC_NONE);
    struct heap_state *h = heap_state_of(st);
    char msg[256];
    uint64_t *slot, *big;
    as_version(st, path, version);
    TU_OK(tm_store_begin(st));
    slot = tm_store_malloc(st, 48);
    big = tm_store_malloc(st, 6000);
    tm_store_malloc(st, 6000); /* big is no neighbour of the free rest */
    tm_store_free(st, big);
    cr_assert_eq(h->magic, version == 4 ? HEAP_MAGIC_V3 : HEAP_MAGIC);
    CHECK(st);
    uint64_t i = ((uintptr_t)slot >> SPAN_SHIFT) - ((uintptr_t)tm_store_base(st) >> SPAN_SHIFT);
    uint32_t e = h->smap[i];
    h->smap[i] = e ^ 1; /* another class */
    cr_assert_eq(tm_store_check(st, msg, sizeof msg), TM_ECORRUPT);
    cr_assert(strstr(msg, "span map"), "%s", msg);
    h->smap[i] = e;
    h->smap[i + 1] = SM_SPAN; /* a span that does not exist */
    cr_assert_eq(tm_store_check(st, msg, sizeof msg), TM_ECORRUPT);
    h->smap[i + 1] = 0;
    CHECK(st);
    if (version == 4) {
        big[1] ^= 1; /* a kept block's tag */
        cr_assert_eq(tm_store_check(st, msg, sizeof msg), TM_ECORRUPT);
        cr_assert(strstr(msg, "big list"), "%s", msg);
        big[1] ^= 1;
        h->big_bytes += 16;
        cr_assert_eq(tm_store_check(st, msg, sizeof msg), TM_ECORRUPT);
        h->big_bytes -= 16;
    } else {
        fnode *f = (fnode *)(big - 2), *g = (fnode *)(slot - 2);
        unsigned b = heap_bin(blk_size(f));
        cr_assert_eq(h->bins[b], f, "a freed block heads its bin");
        f->right = f; /* its back link */
        cr_assert_eq(tm_store_check(st, msg, sizeof msg), TM_ECORRUPT);
        cr_assert(strstr(msg, "back link"), "%s", msg);
        f->right = NULL;
        f->left = g; /* a live block linked in */
        cr_assert_eq(tm_store_check(st, msg, sizeof msg), TM_ECORRUPT);
        cr_assert(strstr(msg, "not a free block"), "%s", msg);
        f->left = NULL;
        h->bin_map[b / 64] ^= 1ull << (b % 64);
        cr_assert_eq(tm_store_check(st, msg, sizeof msg), TM_ECORRUPT);
        cr_assert(strstr(msg, "bin map"), "%s", msg);
        h->bin_map[b / 64] ^= 1ull << (b % 64);
        h->bins[b] = NULL, h->bins[b + 1] = f; /* the wrong bin */
        h->bin_map[(b + 1) / 64] ^= 1ull << ((b + 1) % 64), h->bin_map[b / 64] ^= 1ull << (b % 64);
        cr_assert_eq(tm_store_check(st, msg, sizeof msg), TM_ECORRUPT);
        cr_assert(strstr(msg, "wrong bin"), "%s", msg);
    }
    tm_store_abort(st);
    CHECK(st);
    TU_OK(tm_close(st));
}

Test(heap, checker_proves_the_span_map_and_the_big_lists) { checker_proves(4); }
Test(heap, checker_proves_the_span_map_and_the_bins) { checker_proves(FORMAT_VERSION); }

/* Misuse of the fast path and the big lists, reported with the address. */
struct misuse4 {
    char path[512];
    int kind;
    uintptr_t addr;
};

static void misuse4_child(void *arg)
{
    struct misuse4 *mu = arg;
    tm_options o = tu_opts(TM_SYNC_NONE);
    tm_store *st;
    if (tm_open(mu->path, &o, &st) != 0 || tm_store_begin(st) != 0)
        _exit(2);
    if (mu->kind <= 2)
        st->hdr.version = 4; /* a format-4 heap (HEAP_MAGIC_V3): the big lists */
    uint64_t *p = tm_store_malloc(st, 9000), *g = tm_store_malloc(st, 100), *q = tm_store_malloc(st, 9000);
    switch (mu->kind) {
    case 0: /* a kept block freed again */
        tm_store_free(st, p);
        tm_store_free(st, q);
        mu->addr = (uintptr_t)p;
        tm_store_free(st, p);
        break;
    case 1: /* a kept block reallocated */
        tm_store_free(st, p);
        mu->addr = (uintptr_t)p;
        tm_store_realloc(st, p, 100);
        break;
    case 2: /* a write after free changes a big list's link */
        tm_store_free(st, p);
        tm_store_free(st, q);
        q[0] = mu->addr = (uintptr_t)tm_store_base(st) + 3 * PAGE + 16;
        if (tm_store_malloc(st, 9000) != q)
            _exit(3);
        tm_store_malloc(st, 9000);
        break;
    case 3: { /* a slot freed into the bitmap (its list full), freed again */
        char *v[RECENT_MAX4 + 1];
        for (unsigned k = 0; k <= RECENT_MAX4; k++)
            v[k] = tm_store_malloc(st, 200);
        for (unsigned k = 0; k <= RECENT_MAX4; k++)
            tm_store_free(st, v[k]);
        mu->addr = (uintptr_t)v[RECENT_MAX4];
        tm_store_free(st, v[RECENT_MAX4]);
        break;
    }
    case 5: /* a write after free changes a bin's link (H10) */
        tm_store_malloc(st, 9000); /* q is no neighbour of the free rest */
        tm_store_free(st, p);
        tm_store_free(st, q);
        q[0] = (uintptr_t)g; /* a live block: no free header there */
        mu->addr = (uintptr_t)g;
        tm_store_malloc(st, 9000);
        break;
    case 6: /* an overflow into a binned block's header (its size) */
        tm_store_malloc(st, 9000);
        tm_store_free(st, p);
        tm_store_free(st, q);
        q[-1] ^= 0x100;
        mu->addr = (uintptr_t)q - BLK_HDR;
        tm_store_malloc(st, 8000);
        break;
    case 4: { /* a slot of a live span that it never handed out */
        char *s = tm_store_malloc(st, 200);
        mu->addr = (uintptr_t)s + 20 * 208;
        tm_store_free(st, (void *)mu->addr);
        break;
    }
    }
    _exit(0);
}

static void expect_abort4(int kind, const char *what)
{
    struct misuse4 *mu = mmap(NULL, sizeof *mu, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    char err[1024], hex[32];
    int status;
    cr_assert_neq(mu, MAP_FAILED);
    snprintf(mu->path, sizeof mu->path, "%s", tu_path("misuse4.tmf"));
    mu->kind = kind;
    status = tu_run_child(misuse4_child, mu, err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "kind %d: status %#x, stderr: %s", kind, status,
              err);
    snprintf(hex, sizeof hex, "%016lx", (unsigned long)mu->addr);
    cr_assert(strstr(err, hex), "kind %d: message lacks the address %s: %s", kind, hex, err);
    cr_assert(strstr(err, what), "kind %d: message lacks \"%s\": %s", kind, what, err);
    munmap(mu, sizeof *mu);
}

Test(heap, misuse_double_free_big_kept) { expect_abort4(0, "double free"); }
Test(heap, misuse_realloc_big_kept) { expect_abort4(1, "already freed"); }
Test(heap, misuse_write_after_free_on_a_big_list) { expect_abort4(2, "corrupted"); }
Test(heap, misuse_double_free_small_spilled) { expect_abort4(3, "double free"); }
Test(heap, misuse_free_of_a_slot_never_handed_out) { expect_abort4(4, "double free"); }
Test(heap, misuse_write_after_free_on_a_bin) { expect_abort4(5, "free list damaged"); }
Test(heap, misuse_overflow_into_a_binned_header) { expect_abort4(6, "free list damaged"); }

/* Metadata locality: one transaction that allocates many small blocks and
 * frees them again dirties the pages of their slots, which come densely
 * from fresh spans, and few more (superblock, span headers, span map). */
Test(heap, small_churn_in_one_transaction_dirties_few_pages)
{
    tm_store *st = open_opts(tu_path("pg.tmf"), 0, TM_SYNC_NONE);
    static void *v[1000];
    uint64_t rs = 7, bytes = 0;
    TU_OK(tm_store_begin(st));
    tm_store_free(st, tm_store_malloc(st, 1)); /* the heap set up */
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_begin(st));
    for (int k = 0; k < 1000; k++) {
        size_t n = 8 + tu_rand(&rs) % 505;
        bytes += n;
        cr_assert_not_null(v[k] = tm_store_malloc(st, n));
        *(char *)v[k] = 1;
    }
    for (int k = 0; k < 1000; k++)
        tm_store_free(st, v[k]);
    long counted = track_count(st);
    cr_assert_geq(counted, 0);
    size_t dirty = (size_t)counted;
    cr_log_info("%zu pages dirtied for %llu bytes in 1000 blocks", dirty, (unsigned long long)bytes);
    /* the payload's pages at least, spread over the ~20 classes' spans */
    cr_assert_leq(dirty, bytes / PAGE * 3 / 2 + 2 * NCLASS + 8, "%zu pages for %llu bytes", dirty,
                  (unsigned long long)bytes);
    TU_OK(tm_store_commit(st));
    CHECK(st);
    TU_OK(tm_close(st));
}
