/*
 * torture.h — the state, invariants and workers of the torture tests, shared
 * by tests/test_torture.c (Criterion) and tests/progs/torture_threads.c (the
 * same thread torture as a plain program, for ThreadSanitizer: Criterion's
 * runner maps its arena where TSan allows no application memory).  See
 * test_torture.c for the invariants.  Nothing here uses Criterion.
 */
#ifndef TMF_TEST_TORTURE_H
#define TMF_TEST_TORTURE_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "tmfalloc.h"

/* splitmix64, as tu_rand */
static inline uint64_t t_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#define NELEM 5000
#define MAXNODES 48
#define MAXWORKERS 16
#define TOTAL ((uint64_t)NELEM * (NELEM - 1) / 2 * 7)

struct node {
    struct node *next;
    uint64_t size; /* payload bytes */
    uint64_t tag;
    uint64_t check;
    uint64_t payload[];
};

struct troot {
    uint64_t magic;
    uint64_t gen;
    uint64_t count, bytes;
    struct node *head;
    uint64_t cell[NELEM];
};

#define TROOT_MAGIC 0x6572757472f74ull

struct counters {
    _Atomic uint64_t reads, writes, aborts, violations, starts;
};

struct shared {
    _Atomic uint64_t committed_gen; /* highest generation seen committed */
    _Atomic int stop;
    struct counters w[MAXWORKERS];
    char first_violation[256];
    _Atomic int have_violation;
};

static struct shared *sh;

static long env_long(const char *name, long def)
{
    const char *s = getenv(name);
    long v = s && *s ? strtol(s, NULL, 10) : 0;
    return v > 0 ? v : def;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t node_check(const struct node *n)
{
    uint64_t s = n->tag ^ (n->size << 20) ^ 0x5eed;
    return t_rand(&s);
}

static void violation(struct counters *c, const char *fmt, unsigned long long a, unsigned long long b)
{
    c->violations++;
    if (!atomic_exchange(&sh->have_violation, 1))
        snprintf(sh->first_violation, sizeof sh->first_violation, fmt, a, b);
    fprintf(stderr, "torture: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
}

/* I1..I3 on the root as this thread sees it; *last is the reader's last gen. */
static void check_root(const struct troot *r, uint64_t floor, uint64_t *last, struct counters *c)
{
    uint64_t sum = 0, n = 0, bytes = 0, i;
    const struct node *p;
    if (r->magic != TROOT_MAGIC) {
        violation(c, "root magic %#llx (%llu)", (unsigned long long)r->magic, 0);
        return;
    }
    for (i = 0; i < NELEM; i++)
        sum += r->cell[i];
    if (sum != TOTAL)
        violation(c, "cells sum to %llu, want %llu", (unsigned long long)sum, (unsigned long long)TOTAL);
    if (r->gen < *last)
        violation(c, "generation went back from %llu to %llu", (unsigned long long)*last,
                  (unsigned long long)r->gen);
    if (r->gen < floor)
        violation(c, "generation %llu below the committed %llu", (unsigned long long)r->gen,
                  (unsigned long long)floor);
    *last = r->gen;
    for (p = r->head; p && n <= MAXNODES; p = p->next, n++) {
        uint64_t k = p->size / 8;
        if (p->check != node_check(p) || p->payload[0] != p->tag || p->payload[k - 1] != ~p->tag) {
            violation(c, "list block %llu of gen %llu is damaged", (unsigned long long)n,
                      (unsigned long long)r->gen);
            return;
        }
        bytes += p->size;
    }
    if (n != r->count || bytes != r->bytes)
        violation(c, "list of %llu blocks, root says %llu", (unsigned long long)n, (unsigned long long)r->count);
}

static struct troot *root_of(tm_store *st)
{
    return tm_store_root(st, sizeof(struct troot));
}

static void read_once(tm_store *st, uint64_t *last, struct counters *c)
{
    uint64_t floor = sh->committed_gen;
    int r = tm_store_read_begin(st);
    if (r) {
        violation(c, "read_begin: %llu (%llu)", (unsigned long long)r, 0);
        return;
    }
    check_root(root_of(st), floor, last, c);
    tm_store_read_end(st);
    c->reads++;
}

static void write_once(tm_store *st, uint64_t *rng, uint64_t *last, struct counters *c)
{
    struct troot *rt;
    uint64_t floor = sh->committed_gen, gen;
    void *scratch = NULL;
    int i, r, abort_it = t_rand(rng) % 8 == 0;

    if ((r = tm_store_begin(st))) {
        violation(c, "begin: %llu (%llu)", (unsigned long long)r, 0);
        return;
    }
    rt = root_of(st);
    check_root(rt, floor, last, c);
    if (t_rand(rng) % 2)
        scratch = malloc(1 + t_rand(rng) % 5000); /* glibc, inside the transaction */
    for (i = 0; i < 16; i++) {
        uint64_t a = t_rand(rng) % NELEM, b = t_rand(rng) % NELEM, v = t_rand(rng) % 1000;
        rt->cell[a] -= v;
        rt->cell[b] += v;
    }
    if (rt->count < MAXNODES && (rt->count == 0 || t_rand(rng) % 2)) {
        uint64_t size = 16 + 8 * (t_rand(rng) % (t_rand(rng) % 4 ? 64 : 2500));
        struct node *n = tm_store_malloc(st, sizeof *n + size);
        if (!n) {
            violation(c, "tm_store_malloc: errno %llu (%llu)", (unsigned long long)errno, 0);
        } else {
            n->size = size;
            n->tag = t_rand(rng);
            n->check = node_check(n);
            n->payload[0] = n->tag;
            n->payload[size / 8 - 1] = ~n->tag;
            n->next = rt->head;
            rt->head = n;
            rt->count++;
            rt->bytes += size;
        }
    } else if (rt->count) {
        uint64_t k = t_rand(rng) % rt->count;
        struct node **pp = &rt->head, *n;
        while (k--)
            pp = &(*pp)->next;
        n = *pp;
        *pp = n->next;
        rt->count--;
        rt->bytes -= n->size;
        tm_store_free(st, n);
    }
    gen = ++rt->gen;
    free(scratch);
    if (abort_it) {
        tm_store_abort(st);
        c->aborts++;
        return;
    }
    if ((r = tm_store_commit(st))) {
        violation(c, "commit: %llu (%llu)", (unsigned long long)r, 0);
        return;
    }
    c->writes++;
    /* Publish: every read that starts from now on must see gen or later. */
    uint64_t old = sh->committed_gen;
    while (old < gen && !atomic_compare_exchange_weak(&sh->committed_gen, &old, gen))
        ;
}


static tm_store *tstore;

struct targ {
    int slot;
    double end;
};

static void *worker(void *p)
{
    struct targ *a = p;
    struct counters *c = &sh->w[a->slot];
    uint64_t rng = 1000 + (uint64_t)a->slot, last = 0;
    c->starts++;
    while (now() < a->end) {
        char *tmp = malloc(1 + t_rand(&rng) % 300); /* glibc, outside any transaction */
        memset(tmp, a->slot, 1);
        read_once(tstore, &last, c);
        free(tmp);
        write_once(tstore, &rng, &last, c);
    }
    return NULL;
}

static void *churn(void *p)
{
    struct targ *a = p;
    struct counters *c = &sh->w[a->slot];
    uint64_t rng = 7;
    void *keep[64] = {0};
    while (now() < a->end) {
        int k = (int)(t_rand(&rng) % 64);
        free(keep[k]);
        keep[k] = malloc(1 + t_rand(&rng) % 4096);
        memset(keep[k], k, 1);
        c->reads++;
    }
    for (int k = 0; k < 64; k++)
        free(keep[k]);
    return NULL;
}

/* Creates the root in the store at path: 0 or an error code. */
static int t_init_store(const tm_options *o, const char *path)
{
    tm_store *st = NULL;
    struct troot *rt;
    uint64_t i;
    int r;
    if ((r = tm_open(path, o, &st)) || (r = tm_store_begin(st)))
        return r;
    if (!(rt = root_of(st)))
        return errno;
    rt->magic = TROOT_MAGIC;
    for (i = 0; i < NELEM; i++)
        rt->cell[i] = i * 7;
    if ((r = tm_store_commit(st)))
        return r;
    return tm_close(st);
}

/* Reopens path: the invariants (violations counted in *c) and the heap
 * checker (its result returned, its message in msg). */
static int t_final_check(const tm_options *o, const char *path, struct counters *c, uint64_t *gen,
                         char *msg, size_t len)
{
    tm_store *st = NULL;
    uint64_t last = 0;
    int r;
    if ((r = tm_open(path, o, &st)))
        return r;
    if ((r = tm_store_read_begin(st)) == 0) {
        check_root(root_of(st), sh->committed_gen, &last, c);
        r = tm_store_read_end(st);
    }
    if (r == 0)
        r = tm_store_check(st, msg, len);
    *gen = last;
    tm_close(st);
    return r;
}

static struct shared *shared_map(void)
{
    struct shared *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return s == MAP_FAILED ? NULL : s;
}

/* The thread torture: nthr workers and one glibc churner (slot nthr) on the
 * open store st until end.  0 or a pthread error. */
static int t_run_threads(tm_store *st, int nthr, double end)
{
    pthread_t th[MAXWORKERS];
    struct targ args[MAXWORKERS];
    int i, r = 0, n;
    tstore = st;
    for (n = 0; n <= nthr; n++) {
        args[n].slot = n;
        args[n].end = end;
        if ((r = pthread_create(&th[n], NULL, n < nthr ? worker : churn, &args[n])))
            break;
    }
    for (i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    return r;
}

#endif
