/*
 * heap_bench.c — the persistent heap against jemalloc (a benchmark: it
 * prints, it does not assert).
 *
 *   speed          one deterministic trace of alloc/free/realloc (sizes 8 B to
 *                  4 KiB mostly, some to 64 KiB, random lifetimes) on jemalloc
 *                  (this binary's malloc) and on the persistent heap inside
 *                  one long write transaction whose pages are already dirty
 *                  (a first run warms them); ops/s, median of 5 runs.
 *   fragmentation  a churn trace whose live set swings up and down: the
 *                  store's arena size over peak live bytes, beside jemalloc's
 *                  peak resident bytes (mallctl stats.resident) over the same.
 *   pages          pages dirtied per transaction of 1,000 alloc/free
 *                  operations on a churned heap, in the three size ranges of
 *                  alloc_bench, beside the payload pages the workload itself
 *                  wrote; and the pages one transaction dirties that
 *                  allocates 1,000 small blocks and frees them again.
 *
 * Usage: heap_bench [ops (default 2000000)] [store path (default
 * /tmp/heap_bench.tmf)]
 */
#include <jemalloc/jemalloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "internal.h"
#include "tmfalloc.h"

enum { OP_ALLOC, OP_FREE, OP_REALLOC };
struct op {
    uint32_t slot;
    uint32_t size;
    uint32_t kind;
};

struct trace {
    struct op *ops;
    size_t n;
    uint32_t nslots;
};

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* 8 B to 4 KiB mostly (skewed small), 2% to 64 KiB. */
static uint32_t pick_size(uint64_t *s)
{
    uint64_t r = rnd(s) % 100;
    if (r < 60)
        return 8 + (uint32_t)(rnd(s) % 120);
    if (r < 90)
        return 8 + (uint32_t)(rnd(s) % 1024);
    if (r < 98)
        return 8 + (uint32_t)(rnd(s) % 4096);
    return 4096 + (uint32_t)(rnd(s) % 61440);
}

static void *map(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    return p;
}

/* A trace over nslots slots; target(i) is the wanted share of full slots
 * (per mille) at op i, which makes the live set swing. */
static struct trace make_trace(size_t n, uint32_t nslots, uint64_t seed, int swing)
{
    struct trace t = {map(n * sizeof(struct op)), n, nslots};
    uint8_t *full = map(nslots);
    uint64_t s = seed, live = 0;
    for (size_t i = 0; i < n; i++) {
        struct op *o = &t.ops[i];
        uint64_t want = 500;
        if (swing) { /* a triangle wave between 5% and 95% full */
            uint64_t ph = (i * 8 / n) % 2, pos = (i * 8) % n * 1000 / n;
            want = 50 + (ph ? 1000 - pos : pos) * 900 / 1000;
        }
        o->slot = (uint32_t)(rnd(&s) % nslots);
        if (!full[o->slot]) {
            if (live * 1000 / nslots > want && swing) { /* find a full one to free */
                uint32_t k = o->slot;
                while (!full[k])
                    k = (k + 1) % nslots;
                o->slot = k;
                o->kind = OP_FREE;
                full[k] = 0, live--;
                continue;
            }
            o->kind = OP_ALLOC;
            o->size = pick_size(&s);
            full[o->slot] = 1, live++;
        } else if (rnd(&s) % 4 == 0) {
            o->kind = OP_REALLOC;
            o->size = pick_size(&s);
        } else if (swing && live * 1000 / nslots < want) {
            o->kind = OP_REALLOC;
            o->size = pick_size(&s);
        } else {
            o->kind = OP_FREE;
            full[o->slot] = 0, live--;
        }
    }
    munmap(full, nslots);
    return t;
}

/* The same loop for both allocators; live bytes tracked for the peak. */
#define RUN_TRACE(T, SLOTS, SIZES, MALLOC, REALLOC, FREE, SAMPLE)                    \
    do {                                                                             \
        for (size_t i_ = 0; i_ < (T)->n; i_++) {                                     \
            const struct op *o_ = &(T)->ops[i_];                                     \
            char **p_ = &(SLOTS)[o_->slot];                                          \
            switch (o_->kind) {                                                      \
            case OP_ALLOC:                                                           \
                *p_ = MALLOC(o_->size);                                              \
                **p_ = 1;                                                            \
                live_ += o_->size, SIZES[o_->slot] = o_->size;                      \
                break;                                                               \
            case OP_REALLOC:                                                         \
                *p_ = REALLOC(*p_, o_->size);                                        \
                **p_ = 2;                                                            \
                live_ += o_->size, live_ -= SIZES[o_->slot], SIZES[o_->slot] = o_->size; \
                break;                                                               \
            default:                                                                 \
                FREE(*p_);                                                           \
                *p_ = NULL;                                                          \
                live_ -= SIZES[o_->slot];                                            \
            }                                                                        \
            if (live_ > peak_)                                                       \
                peak_ = live_;                                                       \
            if ((i_ & 8191) == 0) {                                                  \
                SAMPLE;                                                              \
            }                                                                        \
        }                                                                            \
        for (uint32_t k_ = 0; k_ < (T)->nslots; k_++)                               \
            if ((SLOTS)[k_])                                                         \
                FREE((SLOTS)[k_]), (SLOTS)[k_] = NULL;                               \
    } while (0)

static tm_store *g_st;
static void *tm_m(size_t n) { return tm_store_malloc(g_st, n); }
static void *tm_r(void *p, size_t n) { return tm_store_realloc(g_st, p, n); }
static void tm_f(void *p) { tm_store_free(g_st, p); }

static size_t je_resident(void)
{
    uint64_t epoch = 1;
    size_t res = 0, len = sizeof res, elen = sizeof epoch;
    mallctl("epoch", &epoch, &elen, &epoch, elen);
    mallctl("stats.resident", &res, &len, NULL, 0);
    return res;
}

static tm_store *open_store(const char *path)
{
    tm_options o;
    tm_store *st;
    int r;
    tm_options_init(&o);
    o.sync = TM_SYNC_NONE;
    o.max_size = (size_t)8 << 30;
    remove_store(path);
    if ((r = tm_open(path, &o, &st)) != 0)
        die(path, tm_strerror(r));
    return st;
}

static void fragmentation(const char *path)
{
    struct trace t = make_trace(1500000, 100000, 7, 1);
    char **slots = map(t.nslots * sizeof(char *));
    uint32_t *sizes = map(t.nslots * sizeof(uint32_t));
    uint64_t live_ = 0, peak_ = 0, je_peak = 0, base_res = je_resident();
    tm_stats_t s;
    char msg[256];

    RUN_TRACE(&t, slots, sizes, malloc, realloc, free, {
        size_t r = je_resident();
        if (r > je_peak)
            je_peak = r;
    });
    printf("fragmentation (churn trace, %zu ops, peak live %.1f MiB)\n", t.n, peak_ / 1048576.0);
    printf("  jemalloc  peak resident / peak live  %.3f  (%.3f without its %.1f MiB at start)\n",
           (double)je_peak / peak_, (double)(je_peak - base_res) / peak_, base_res / 1048576.0);

    g_st = open_store(path);
    live_ = peak_ = 0;
    tm_store_begin(g_st);
    RUN_TRACE(&t, slots, sizes, tm_m, tm_r, tm_f, (void)0);
    tm_store_commit(g_st);
    tm_store_stats(g_st, &s);
    printf("  tmfalloc  arena size / peak live     %.3f  (arena %.1f MiB; check: %s)\n",
           (double)(s.arena_size - 2 * PAGE) / peak_, s.arena_size / 1048576.0,
           tm_store_check(g_st, msg, sizeof msg) == 0 ? "ok" : msg);
    printf("RESULT frag_tmf=%.4f\n", (double)(s.arena_size - 2 * PAGE) / peak_);
    printf("RESULT frag_jemalloc=%.4f\n", (double)je_peak / peak_);
    printf("RESULT frag_ratio=%.4f\n", (double)je_peak / (double)(s.arena_size - 2 * PAGE));
    tm_close(g_st);
    munmap(t.ops, t.n * sizeof(struct op));
    munmap(slots, t.nslots * sizeof(char *));
    munmap(sizes, t.nslots * sizeof(uint32_t));
}

/* Pages the open transaction has dirtied (in bulk mode, as commit finds them). */
static size_t dirty_pages(void)
{
    long n = track_count(g_st);
    if (n < 0)
        die("track_count", "failed");
    return (size_t)n;
}

static void speed(const char *path, size_t nops)
{
    struct trace t = make_trace(nops, 8192, 42, 0);
    char **slots = map(t.nslots * sizeof(char *));
    uint32_t *sizes = map(t.nslots * sizeof(uint32_t));
    uint64_t live_ = 0, peak_ = 0;
    double je[5], tm[5], t0;
    size_t dirty0;

    RUN_TRACE(&t, slots, sizes, malloc, realloc, free, (void)0); /* warm */
    for (int r = 0; r < 5; r++) {
        t0 = now();
        RUN_TRACE(&t, slots, sizes, malloc, realloc, free, (void)0);
        je[r] = t.n / (now() - t0);
    }
    g_st = open_store(path);
    tm_store_begin(g_st);
    RUN_TRACE(&t, slots, sizes, tm_m, tm_r, tm_f, (void)0); /* dirties the pages */
    dirty0 = dirty_pages();
    for (int r = 0; r < 5; r++) {
        t0 = now();
        RUN_TRACE(&t, slots, sizes, tm_m, tm_r, tm_f, (void)0);
        tm[r] = t.n / (now() - t0);
    }
    printf("speed (%zu ops: alloc/free/realloc, 8 B-4 KiB mostly; median of 5)\n", t.n);
    printf("  jemalloc  %.2f Mops/s\n", median(je, 5) / 1e6);
    printf("  tmfalloc  %.2f Mops/s  (warm transaction; pages dirtied by the warm-up %zu, "
           "by the timed runs %zu more)\n",
           median(tm, 5) / 1e6, dirty0, dirty_pages() - dirty0);
    printf("  ratio tmfalloc / jemalloc  %.2f\n", median(tm, 5) / median(je, 5));
    tm_store_commit(g_st);
    tm_close(g_st);
    munmap(t.ops, t.n * sizeof(struct op));
    munmap(slots, t.nslots * sizeof(char *));
    munmap(sizes, t.nslots * sizeof(uint32_t));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Pages dirtied per transaction of 1,000 alloc/free operations (sizes lo to
 * hi, each block filled) on a churned heap of ns slots, against the
 * distinct pages the payload writes touch. */
static void pages(const char *path, const char *key, uint32_t lo, uint32_t hi, uint32_t ns)
{
    enum { TXS = 200, OPS = 1000 };
    char **slots = map(ns * sizeof(char *));
    uint32_t *sizes = map(ns * sizeof(uint32_t));
    uint64_t *touched = map(OPS * 20 * sizeof(uint64_t)), s = 3, dirty = 0, minimum = 0;
    size_t ntx = 0;

    g_st = open_store(path);
    tm_store_begin(g_st);
    for (int i = 0; i < 200000; i++) { /* churn to a steady state */
        uint32_t k = (uint32_t)(rnd(&s) % ns);
        if (slots[k])
            tm_store_free(g_st, slots[k]), slots[k] = NULL;
        else
            slots[k] = tm_store_malloc(g_st, sizes[k] = lo + (uint32_t)(rnd(&s) % (hi - lo + 1))),
            memset(slots[k], 1, sizes[k]);
    }
    tm_store_commit(g_st);
    for (ntx = 0; ntx < TXS; ntx++) {
        size_t nt = 0, distinct = 0;
        tm_store_begin(g_st);
        for (int i = 0; i < OPS; i++) {
            uint32_t k = (uint32_t)(rnd(&s) % ns);
            if (slots[k]) {
                tm_store_free(g_st, slots[k]), slots[k] = NULL;
                continue;
            }
            slots[k] = tm_store_malloc(g_st, sizes[k] = lo + (uint32_t)(rnd(&s) % (hi - lo + 1)));
            memset(slots[k], 2, sizes[k]);
            for (uintptr_t a = (uintptr_t)slots[k] / PAGE; a <= ((uintptr_t)slots[k] + sizes[k] - 1) / PAGE; a++)
                touched[nt++] = a;
        }
        qsort(touched, nt, sizeof *touched, cmp_u64);
        for (size_t i = 0; i < nt; i++)
            distinct += i == 0 || touched[i] != touched[i - 1];
        dirty += dirty_pages();
        minimum += distinct;
        tm_store_commit(g_st);
    }
    printf("  %u-%u B, %u slots: tmfalloc %.1f pages, minimum %.1f (distinct payload pages written)\n", lo, hi,
           ns, (double)dirty / ntx, (double)minimum / ntx);
    printf("RESULT heap_pages_%s=%.1f\n", key, (double)dirty / ntx);
    printf("RESULT heap_pages_%s_min=%.1f\n", key, (double)minimum / ntx);
    tm_close(g_st);
    munmap(slots, ns * sizeof(char *));
    munmap(sizes, ns * sizeof(uint32_t));
    munmap(touched, OPS * 20 * sizeof(uint64_t));
}

/* Pages dirtied by one transaction that allocates n small blocks (8-512 B,
 * one byte written) and frees them all again, on a churned heap. */
static void batch(const char *path, int n)
{
    enum { NS = 20000 };
    char **slots = map(NS * sizeof(char *)), **mine = map((size_t)n * sizeof(char *));
    uint64_t s = 5, dirty = 0;
    int txs = 50;

    g_st = open_store(path);
    tm_store_begin(g_st);
    for (int i = 0; i < 200000; i++) {
        uint32_t k = (uint32_t)(rnd(&s) % NS);
        if (slots[k])
            tm_store_free(g_st, slots[k]), slots[k] = NULL;
        else
            slots[k] = tm_store_malloc(g_st, 8 + rnd(&s) % 505), *slots[k] = 1;
    }
    tm_store_commit(g_st);
    for (int t = 0; t < txs; t++) {
        tm_store_begin(g_st);
        for (int i = 0; i < n; i++)
            mine[i] = tm_store_malloc(g_st, 8 + rnd(&s) % 505), *mine[i] = 1;
        for (int i = 0; i < n; i++)
            tm_store_free(g_st, mine[i]);
        dirty += dirty_pages();
        tm_store_commit(g_st);
    }
    printf("  one transaction allocating %d blocks of 8-512 B and freeing them: %.1f pages dirtied\n", n,
           (double)dirty / txs);
    printf("RESULT heap_batch_pages=%.1f\n", (double)dirty / txs);
    tm_close(g_st);
    munmap(slots, NS * sizeof(char *));
    munmap(mine, (size_t)n * sizeof(char *));
}

int main(int argc, char **argv)
{
    size_t nops = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
    const char *path = argc > 2 ? argv[2] : "/tmp/heap_bench.tmf";
    setvbuf(stdout, NULL, _IONBF, 0);
    fragmentation(path); /* first: jemalloc's resident size is still its own */
    speed(path, nops);
    printf("pages dirtied per transaction of 1,000 alloc/free ops on a churned heap (superblock included)\n");
    pages(path, "small", 8, 512, 20000);
    pages(path, "medium", 16, 4096, 4000);
    pages(path, "large", 1024, 65536, 400);
    batch(path, 1000);
    remove_store(path);
    return 0;
}
