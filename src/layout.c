/*
 * layout.c — the code layout: which programs and libraries, loaded where,
 * the committed data may point into (format.h "the code layout").
 *
 * Data built by unmodified libraries hold pointers into code and static
 * data: function pointers, C++ vtables, an SQLite database's method
 * tables, a Lua VM's allocator and C functions.  They stay valid across
 * restarts only while the same binaries load at the same addresses (the
 * preload turns address randomisation off for that, preload/aslr.c).
 * When that fails — a rebuilt program, an upgraded library, randomisation
 * back on — following one is a crash far from its cause.  So:
 *
 *   commit  A commit whose changes hold a word inside a loaded module's
 *           mapped ranges, in a store whose record does not list this
 *           process's modules as they are, writes the record first: the
 *           process's modules (path, build id, base, ranges), and those of
 *           the old record that the data still point into.  The record is
 *           part of the same commit (tx.c calls layout_check after the
 *           diff, and layout_write and the diff again when it says so).
 *           Once a store has a record, each process whose layout differs
 *           rewrites it at its first commit.  A store that never held such
 *           a word has none and costs a scan of each commit's changed
 *           bytes; one whose record lists this process costs nothing.
 *   open    When the record lists a module this process does not have
 *           loaded at the same address with the same build id, the live
 *           heap blocks are scanned for 8-byte aligned words inside that
 *           module's recorded ranges; one such word refuses the open with
 *           TM_ELAYOUT, and stderr names the module and why.  The scan is
 *           conservative: a number that happens to fall there counts.
 *
 * The check is at open: it is where the data become reachable (tm_root
 * comes next), and the libraries a program links are loaded by then.  A
 * store whose data point into a module loaded later with dlopen must be
 * opened after that dlopen.  Two processes with different layouts that use
 * one store at the same time are not protected from each other's
 * pointers: each was checked when it opened (a commit rescans before it
 * rewrites a record another process changed meanwhile, and keeps what is
 * still pointed into).  A corrupt record fails the open with TM_ECORRUPT.
 *
 * Not routed: a process whose malloc the preload does not route
 * (tm_route_preloaded unset) and whose commit stores a pointer into
 * glibc's main heap gets one warning naming the remedy.  Programs that
 * allocate persistent data with tm_malloc store no such pointer.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "inspect.h"
#include "internal.h"

int tm__layout_ignore;

/* This process's modules, while modules.c's lock is held (here_lock). */
static const struct modules *here;

static int here_lock(void)
{
    return (here = modules_lock()) ? 0 : -ENOMEM;
}

static void here_unlock(void)
{
    here = NULL;
    modules_unlock();
}

/* ---- the record ---- */

static uint64_t *record_field(tm_store *st)
{
    return (uint64_t *)((char *)super_of(st) + SUPER_LAYOUT_OFF);
}

static uint64_t record_sum(const struct layout_head *h)
{
    struct layout_head c = *h;
    hash_state s;
    c.checksum = 0;
    hash_init(&s, LAYOUT_SEED);
    hash_update(&s, &c, sizeof c);
    hash_update(&s, h + 1, h->bytes - sizeof c);
    return hash_final(&s);
}

/* The record, checked: NULL when the store has none; -TM_ECORRUPT when
 * its address, size, fields or checksum are wrong.  Every length read from
 * the arena is checked before use. */
static int record_get(tm_store *st, const struct layout_head **out)
{
    uint64_t at = *record_field(st), base = (uintptr_t)st->base, size = super_of(st)->size;
    const struct layout_head *h = (const void *)(uintptr_t)at;
    const struct layout_mod *m;
    const char *end;
    *out = NULL;
    if (!at)
        return 0;
    if (at % 8 || at < base + 2 * PAGE || at > base + size - sizeof *h || size > st->mapped ||
        memcmp(h->magic, LAYOUT_MAGIC, 8) || h->bytes < sizeof *h || h->bytes > base + size - at ||
        h->nmods > LAYOUT_MODS || record_sum(h) != h->checksum)
        return -TM_ECORRUPT;
    end = (const char *)h + h->bytes;
    m = (const void *)(h + 1);
    for (unsigned i = 0; i < h->nmods; i++, m = layout_mod_next(m)) {
        if ((const char *)(m + 1) > end || m->nseg < 1 || m->nseg > LAYOUT_SEGS || m->id_len > LAYOUT_ID_MAX ||
            (const char *)layout_mod_next(m) > end)
            return -TM_ECORRUPT;
        for (unsigned j = 0; j < m->nseg; j++)
            if (layout_mod_segs(m)[2 * j] >= layout_mod_segs(m)[2 * j + 1])
                return -TM_ECORRUPT;
    }
    *out = h;
    return 0;
}

static int record_is_here(const struct layout_head *h)
{
    const struct layout_mod *m;
    if (!h || h->nmods != here->n)
        return 0;
    m = (const void *)(h + 1);
    for (unsigned i = 0; i < h->nmods; i++, m = layout_mod_next(m))
        if (modules_find(here, m) < 0)
            return 0;
    return 1;
}

/* ---- counting the words that point into recorded modules ---- */

struct scan {
    const char *base;
    const char *skip_lo, *skip_hi; /* the record itself: its numbers are no pointers */
    uint64_t lo, hi;               /* the hull of the ranges */
    size_t n;
    struct {
        uint64_t lo, hi;
        unsigned mod;
    } r[LAYOUT_MODS * LAYOUT_SEGS];
    uint64_t count[LAYOUT_MODS];
};

static void scan_words(struct scan *s, const char *p, const char *end)
{
    for (p = (const char *)((uintptr_t)p & ~(uintptr_t)7); p + 8 <= end; p += 8) {
        uint64_t w = *(const uint64_t *)p;
        if (w - s->lo >= s->hi - s->lo || (p >= s->skip_lo && p < s->skip_hi))
            continue;
        for (size_t i = 0; i < s->n; i++)
            if (w - s->r[i].lo < s->r[i].hi - s->r[i].lo) {
                s->count[s->r[i].mod]++;
                break;
            }
    }
}

/* The live blocks only: freed ones may keep old words. */
static void scan_run(void *ctx, uint64_t off, uint64_t len, int kind)
{
    struct scan *s = ctx;
    if (kind == HK_USED || kind == HK_SPAN_USED)
        scan_words(s, s->base + off, s->base + off + len);
}

/* Counts, for each module of the record that pick() selects, the aligned
 * words of the live heap inside its ranges, into s->count.  A heap whose
 * walk fails is scanned whole.  Inside a read or write transaction. */
static int scan_record(tm_store *st, const struct layout_head *h, int (*pick)(const struct layout_mod *),
                       struct scan *s)
{
    const struct layout_mod *m = (const void *)(h + 1);
    memset(s, 0, sizeof *s);
    s->base = st->base;
    s->skip_lo = (const char *)h, s->skip_hi = (const char *)h + h->bytes;
    s->lo = UINT64_MAX;
    for (unsigned i = 0; i < h->nmods; i++, m = layout_mod_next(m)) {
        const uint64_t *g = layout_mod_segs(m);
        if (!pick(m))
            continue;
        for (unsigned j = 0; j < m->nseg; j++) {
            s->r[s->n].lo = g[2 * j], s->r[s->n].hi = g[2 * j + 1], s->r[s->n].mod = i, s->n++;
            s->lo = g[2 * j] < s->lo ? g[2 * j] : s->lo;
            s->hi = g[2 * j + 1] > s->hi ? g[2 * j + 1] : s->hi;
        }
    }
    if (!s->n)
        return 0;
    if (heap_walk(st, scan_run, s) < 0) { /* damaged: every word of the heap counts */
        memset(s->count, 0, sizeof s->count);
        scan_words(s, st->base + 2 * PAGE, st->base + super_of(st)->size);
    }
    return 0;
}

static int pick_all(const struct layout_mod *m)
{
    (void)m;
    return 1;
}

static int pick_gone(const struct layout_mod *m)
{
    return modules_find(here, m) < 0;
}

/* ---- the state of each open store ---- */

static struct seen {
    uint64_t gen;         /* the record's generation this process checked; 0: none */
    uint64_t seq;         /* the commit it was checked at */
    unsigned long long adds, subs; /* this process's modules then */
    int here;             /* the record listed this process's modules exactly */
    int written;          /* layout_write wrote it for the commit in progress */
    int ignore;           /* opened for the tools: no check */
} seen[MAX_STORES];

static void seen_set(struct seen *s, const struct layout_head *h, uint64_t seq, int is_here)
{
    s->gen = h ? h->gen : 0;
    s->seq = seq;
    s->adds = here->adds, s->subs = here->subs;
    s->here = is_here;
}

/* ---- open ---- */

static int refuse_gone(tm_store *st, const struct layout_head *h)
{
    struct scan *s = os_alloc(sizeof *s);
    const struct layout_mod *m = (const void *)(h + 1);
    char msg[1536], why[256], id[2 * LAYOUT_ID_MAX + 1];
    if (!s)
        return -ENOMEM;
    scan_record(st, h, pick_gone, s);
    for (unsigned i = 0; i < h->nmods; i++, m = layout_mod_next(m)) {
        if (!s->count[i])
            continue;
        modules_fate(here, m, why, sizeof why);
        modules_hex(id, m->build_id, m->id_len);
        snprintf(msg, sizeof msg,
                 "%s: its data hold %llu pointer(s) into the code or static data of %.*s (build id %s), loaded at "
                 "%#llx when they were committed, but %s: the store cannot be used by this program as it is now "
                 "(run the same program and libraries, under LD_PRELOAD=libtmfpreload.so, which keeps their "
                 "addresses; `tmf info` lists what the store expects)",
                 st->path, (unsigned long long)s->count[i], (int)m->path_len, layout_mod_path(m), m->id_len ? id : "none",
                 (unsigned long long)m->base, why);
        os_say(msg, NULL, 0);
        os_free(s, sizeof *s);
        return -TM_ELAYOUT;
    }
    os_free(s, sizeof *s);
    return 0;
}

int layout_open(tm_store *st)
{
    struct seen *s = &seen[st->slot];
    const struct layout_head *h = NULL;
    int r;
    memset(s, 0, sizeof *s);
    if (tm__layout_ignore) {
        s->ignore = 1;
        return 0;
    }
    if (tm_store_read_begin(st) != 0) /* nothing readable yet (recovery pending): nothing to follow either */
        return 0;
    if ((r = here_lock()) == 0) {
        if ((r = record_get(st, &h)) == 0 && h) {
            int is_here = record_is_here(h);
            seen_set(s, h, st->lk.sh->seq, is_here);
            if (!is_here)
                r = refuse_gone(st, h);
        }
        here_unlock();
    }
    tm_store_read_end(st);
    if (r == -TM_ECORRUPT)
        os_say(st->path, "(its code layout record is damaged)", 0);
    return r;
}

/* ---- commit ---- */

static void warn_not_routed(tm_store *st, const struct log_piece *p, size_t n)
{
    static _Atomic int warned;
    for (size_t i = 0; i < n && !warned; i++)
        if (modules_glibc_heap(st->base + p[i].g.off, st->base + p[i].g.off + p[i].g.len) && !warned++)
            os_say("a commit stores in the arena a pointer into glibc's heap: malloc inside a transaction goes to "
                   "glibc in this process, and that memory is gone after it exits.  Run the program with "
                   "LD_PRELOAD=libtmfpreload.so, or allocate what must persist with tm_malloc (tmf::allocator in "
                   "C++)",
                   NULL, 0);
}

/* Whether the changes hold a word inside one of this process's modules. */
static int changes_point_here(tm_store *st, const struct log_piece *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *q = (const char *)((uintptr_t)(st->base + p[i].g.off) & ~(uintptr_t)7);
        for (const char *end = st->base + p[i].g.off + p[i].g.len; q + 8 <= end; q += 8)
            if (modules_hold(here, *(const uint64_t *)q))
                return 1;
    }
    return 0;
}

int layout_check(tm_store *st, const struct log_piece *p, size_t n)
{
    struct seen *s = &seen[st->slot];
    const struct layout_head *h;
    int need = 0;
    if (s->written || s->ignore) {
        s->written = 0;
        return 0;
    }
    if (here_lock() < 0)
        return 0; /* no room to list the modules: nothing to compare with */
    if (!tm_route_preloaded)
        warn_not_routed(st, p, n);
    if (record_get(st, &h) < 0)
        need = 1; /* damaged: written anew */
    else if (!h)
        need = changes_point_here(st, p, n);
    else if (!(s->here && s->gen == h->gen && s->adds == here->adds && s->subs == here->subs)) {
        seen_set(s, h, s->gen == h->gen ? s->seq : 0, record_is_here(h));
        need = !s->here;
    }
    here_unlock();
    return need;
}

static size_t rec_bytes(const struct layout_mod *m)
{
    return (size_t)((const char *)layout_mod_next(m) - (const char *)m);
}

static int kept_of(tm_store *st, const struct layout_head *old, const struct seen *s, struct scan *sc)
{
    memset(sc->count, 0, sizeof sc->count);
    if (!old || (s->gen == old->gen && s->seq == st->lk.sh->seq))
        return 0;
    return scan_record(st, old, pick_gone, sc);
}

int layout_write(tm_store *st)
{
    struct seen *s = &seen[st->slot];
    const struct layout_head *old = NULL;
    const struct layout_mod *m;
    struct scan *sc = os_alloc(sizeof *sc);
    struct layout_head *h;
    size_t bytes = sizeof *h;
    unsigned nmods = 0, i;
    char *out;
    int r;
    if (!sc)
        return -ENOMEM;
    if (st->trk.mode == TRACK_SETTLED) { /* writable again: the next settle lists every copy anew (track.c) */
        if ((r = os_mprotect(st->base + PAGE, st->mapped - PAGE, PROT_READ | PROT_WRITE)) < 0)
            goto out;
        st->trk.mode = TRACK_BULK;
    }
    if ((r = here_lock()) < 0)
        goto out;
    if (record_get(st, &old) < 0)
        old = NULL; /* damaged: left where it is, rather than freed on its word */
    kept_of(st, old, s, sc);
    for (i = 0; i < here->n; i++)
        bytes += modules_bytes(&here->m[i]), nmods++;
    for (i = 0, m = old ? (const void *)(old + 1) : NULL; old && i < old->nmods; i++, m = layout_mod_next(m))
        if (sc->count[i] && nmods < LAYOUT_MODS)
            bytes += rec_bytes(m), nmods++;
    if (!(h = heap_alloc(st, bytes, 16))) {
        r = -errno;
        goto unlock;
    }
    memset(h, 0, sizeof *h);
    memcpy(h->magic, LAYOUT_MAGIC, 8);
    h->nmods = nmods;
    h->bytes = (uint32_t)bytes;
    h->gen = old ? old->gen + 1 : 1;
    out = (char *)(h + 1);
    for (i = 0; i < here->n; i++)
        out = modules_put(out, &here->m[i]);
    for (i = 0, m = old ? (const void *)(old + 1) : NULL; old && i < old->nmods; i++, m = layout_mod_next(m))
        if (sc->count[i] && (size_t)(out - (char *)h) + rec_bytes(m) <= bytes)
            memcpy(out, m, rec_bytes(m)), out += rec_bytes(m);
    h->checksum = record_sum(h);
    if (old)
        heap_free(st, (void *)old);
    *record_field(st) = (uintptr_t)h;
    seen_set(s, h, st->lk.sh->seq + 1, nmods == here->n);
    s->written = 1;
unlock:
    here_unlock();
out:
    os_free(sc, sizeof *sc);
    return r;
}

/* ---- the tools ---- */

int inspect_layout(tm_store *st, uint64_t *gen, layout_fn *fn, void *ctx)
{
    const struct layout_head *h;
    const struct layout_mod *m;
    struct scan *s;
    int r;
    if ((r = record_get(st, &h)) < 0 || !h)
        return r;
    *gen = h->gen;
    if (!fn)
        return 1;
    if (!(s = os_alloc(sizeof *s)))
        return -ENOMEM;
    scan_record(st, h, pick_all, s);
    m = (const void *)(h + 1);
    for (unsigned i = 0; i < h->nmods; i++, m = layout_mod_next(m)) {
        struct tm_layout_module e = {
            .path = layout_mod_path(m), .path_len = m->path_len, .base = m->base,
            .lo = layout_mod_segs(m)[0], .hi = layout_mod_segs(m)[2 * m->nseg - 1],
            .build_id = m->build_id, .id_len = m->id_len, .pointers = s->count[i],
        };
        fn(ctx, &e);
    }
    os_free(s, sizeof *s);
    return 1;
}

