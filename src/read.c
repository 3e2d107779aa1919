/*
 * read.c — read transactions: while one is open, no writer of this or any
 * other process changes the arena.
 *
 * A reader takes a reader slot of the lock file (lock.c): no system call
 * when no writer is in its way.  It reads only a consistent store file:
 * when the lock file says a commit is durable but not applied (its writer
 * died, or no writer has healed since a crash), the reader takes the
 * writer's lock and heals it (checkpoint.c S2) — or, on a read-only
 * handle, which may not write, refuses with EROFS: recovery needed.  It
 * also catches up with commits of other processes: its mapping to their
 * arena size, and no private copy of this process older than them.
 *
 * Per thread and store, tls_reads counts nested read transactions, and
 * tls_locked says whether the outermost one holds a reader slot (one begun
 * inside this thread's own write transaction does not: it reads the
 * writer's pages, and takes its slot when the write ends, tx.c).  Both
 * belong to the fork generation in tls_gen: a forked child starts with
 * none.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

static TLS uint16_t tls_reads[MAX_STORES];
static TLS uint8_t tls_locked[MAX_STORES];
static TLS unsigned tls_gen;

/* This thread's counters, forgotten across fork. */
static void fresh(void)
{
    if (unlikely(tls_gen != registry_fork_gen)) {
        memset(tls_reads, 0, sizeof tls_reads);
        memset(tls_locked, 0, sizeof tls_locked);
        tls_gen = registry_fork_gen;
    }
}

int read_active(const tm_store *st)
{
    fresh();
    return tls_reads[st->slot] != 0;
}

/* Whether this process may read the arena as it is: every commit applied,
 * and seen. */
static inline int current(const tm_store *st)
{
    const struct tm_shared *sh = st->lk.sh;
    uint64_t seq = sh->seq;
    return seq == sh->applied && seq == st->seen_seq;
}

/* Outside the reader slot: waits for the writer's lock and heals what
 * stands in the way, which a read-only handle may not do. */
static int heal(tm_store *st)
{
    struct tm_shared *sh;
    int died = lock_writer(&st->lk), r = 0;
    if (died < 0)
        return died;
    sh = st->lk.sh;
    if (!st->read_only)
        r = store_heal(st, died);
    else if (died || sh->applied != sh->seq || sh->applying)
        r = -EROFS;
    lock_writer_release(&st->lk);
    return r;
}

static int enter(tm_store *st)
{
    for (;;) {
        int r = lock_read_enter(&st->lk);
        if (likely(r == 0 && current(st)))
            return 0;
        if (r == 0) {
            if (st->lk.sh->seq == st->lk.sh->applied && (r = store_catch_up(st)) == 0)
                return 0;
            lock_read_leave(&st->lk);
            if (r < 0)
                return r;
        } else if (r != -EAGAIN) {
            return r;
        }
        if ((r = heal(st)) < 0) /* a commit unapplied, or an apply that takes too long */
            return r;
    }
}

/* After this thread's write transaction on st ended with a read
 * transaction open inside it (tx.c took its slot). */
void read_relock(tm_store *st)
{
    tls_locked[st->slot] = 1;
}

int tm_store_read_begin(tm_store *st)
{
    int r;
    if (unlikely(st->state == ST_FORKED) && (r = store_revive(st)) < 0)
        return tm__err(r);
    if (unlikely(st->state == ST_APPLY_PENDING)) /* the store file is half written: keep out */
        return TM_EPOISONED;
    fresh();
    if (tls_reads[st->slot] || tx_owned(st)) { /* nested, or inside our own write */
        tls_reads[st->slot]++;
        return 0;
    }
    if ((r = enter(st)) < 0)
        return tm__err(r);
    tls_reads[st->slot] = 1;
    tls_locked[st->slot] = 1;
    return 0;
}

int tm_store_read_end(tm_store *st)
{
    fresh();
    if (!tls_reads[st->slot])
        return TM_ENOTX;
    if (--tls_reads[st->slot] > 0 || !tls_locked[st->slot])
        return 0;
    tls_locked[st->slot] = 0;
    lock_read_leave(&st->lk);
    return 0;
}

/* For calls that read outside a transaction (tm_store_root, _stats,
 * _check): one empty read transaction catches this process up with the
 * others' commits. */
void read_refresh(tm_store *st)
{
    if (tx_owned(st) || read_active(st))
        return;
    if (tm_store_read_begin(st) == 0)
        tm_store_read_end(st);
}
