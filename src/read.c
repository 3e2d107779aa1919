/*
 * read.c — read transactions: while one is open, no writer of this or any
 * other process changes the arena.
 *
 * Within the process the reader holds the store's rwlock shared, which
 * keeps this process's writer out for the whole read transaction (its
 * uncommitted pages are visible to every thread).  The process's first
 * reader also takes the shared data lock, which other processes' commits
 * need exclusively to apply; before it trusts the store file it heals a
 * commit that a dead writer left half applied (checkpoint.c S2).
 *
 * Per thread and store, tls_reads counts nested read transactions, and
 * tls_locked says whether the outermost one holds the locks (a read
 * transaction begun inside this thread's own write transaction does not:
 * it reads the writer's pages, and takes the locks when the write ends).
 * Both belong to the fork generation in tls_gen: a forked child starts
 * with none.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

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

/* A read-only handle never heals, which is what refreshes the log length
 * of a read-write one: it looks at the log's length itself. */
static void ro_log_len(tm_store *st)
{
    if (st->read_only)
        (void)log_refresh_len(&st->log); /* on failure the old length: a pending record is then missed */
}

/* A read-only handle cannot heal: it waits for the live writer, if any, to
 * finish, then looks again.  A record still pending then belongs to a dead
 * writer: -EROFS, recovery needed. */
static int lock_readers_ro(tm_store *st)
{
    int r;
    if ((r = lock_writer_shared(&st->lk)) < 0)
        return r;
    if ((r = lock_data(&st->lk, 0)) == 0 && (r = hdr_current(st)) == 0) {
        ro_log_len(st);
        r = log_pending(&st->log, store_log_tail(st), super_of(st)->seq + 1) ? -EROFS : store_refresh(st);
        if (r < 0)
            lock_data_release(&st->lk);
    }
    lock_writer_shared_release(&st->lk);
    return r;
}

/* The process's first reader takes the shared data lock, after healing a
 * record that a dead writer left half applied. */
static int lock_readers(void *ctx)
{
    tm_store *st = ctx;
    int r;
    for (;;) {
        if ((r = lock_data(&st->lk, 0)) < 0)
            return r;
        if ((r = hdr_current(st)) < 0)
            break;
        ro_log_len(st);
        if (!log_pending(&st->log, store_log_tail(st), super_of(st)->seq + 1)) {
            if ((r = store_refresh(st)) == 0)
                track_drop_stale(st);
            return r;
        }
        /* A commit is being applied, or its writer died: wait for the
         * writer lock (never while holding the data lock) and heal. */
        lock_data_release(&st->lk);
        if (st->read_only)
            return lock_readers_ro(st);
        if ((r = lock_writer(&st->lk)) < 0)
            return r;
        r = store_heal(st);
        lock_writer_release(&st->lk, 1);
        if (r < 0)
            return r;
    }
    lock_data_release(&st->lk);
    return r;
}

static int read_lock(tm_store *st)
{
    int r = lock_readers_enter(&st->lk, lock_readers, st);
    if (r == 0)
        tls_locked[st->slot] = 1;
    return r;
}

/* After this thread's write transaction on st ended: a read transaction
 * begun inside it goes on under locks of its own.  On failure it reads
 * unlocked, and its end unlocks nothing. */
void read_relock(tm_store *st)
{
    if (tls_reads[st->slot] && !tls_locked[st->slot])
        (void)read_lock(st);
}

int tm_store_read_begin(tm_store *st)
{
    int r;
    if (st->state == ST_FORKED && (r = store_revive(st)) < 0)
        return tm__err(r);
    if (st->state == ST_APPLY_PENDING) /* the store file is half written: keep out */
        return TM_EPOISONED;
    fresh();
    if (tls_reads[st->slot] || tx_owned(st)) { /* nested, or inside our own write */
        tls_reads[st->slot]++;
        return 0;
    }
    if ((r = read_lock(st)) < 0)
        return tm__err(r);
    tls_reads[st->slot] = 1;
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
    lock_readers_leave(&st->lk);
    return 0;
}

/* For calls that read outside a transaction (tm_store_root, _stats,
 * _check): drops stale kept copies, unless a transaction of this process
 * is open (then they were checked when it began, or its pages are in use). */
static void drop_stale(void *ctx)
{
    track_drop_stale(ctx);
}

void read_refresh(tm_store *st)
{
    if (st->trk.nkept)
        (void)lock_if_idle(&st->lk, drop_stale, st);
}
