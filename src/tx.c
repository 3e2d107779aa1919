/*
 * tx.c — write transactions: begin, commit, abort.
 *
 * Begin takes the writer's lock (lock.c), heals what a dead writer left
 * (checkpoint.c S2), catches up with other processes' commits, and hands
 * the arena to the tracker (track.c), which finds the pages the
 * transaction writes.
 *
 * Commit, in order (the commit point is step 3):
 *   1. the tracker lists the dirty pages and write-protects them again;
 *      diff.c turns them into the byte ranges they changed;
 *   2. append the ranges to the log as one checksummed record
 *      (checkpointing first when the ring is full);
 *   3. fdatasync the log (TMF_SYNC=full);
 *   4. with readers of every process kept out, publish the commit in the
 *      lock file and write its ranges into the store file (through the
 *      view, diff.c, or by pwrite), then mark it applied (S2);
 *   5. keep the private copies, which now equal the file, or drop them;
 *   6. release the writer's lock, and checkpoint when the log has grown
 *      past CKPT_BYTES.
 * A failure before 3 rolls the transaction back, poisons the handle and
 * returns the error; a failure after it leaves the commit durable (commit
 * returns 0) and poisons the handle, and readers stay out until a writer
 * heals the store file (APPLY_PENDING; tm_close tries first).
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

/* A handle another thread forked away from, or poisoned. */
static int check_usable(tm_store *st)
{
    int r;
    if (unlikely(st->state == ST_FORKED) && (r = store_revive(st)) < 0)
        return r;
    return st->state == ST_POISONED || st->state == ST_APPLY_PENDING ? -TM_EPOISONED : 0;
}

int tm_store_begin(tm_store *st)
{
    int r, died;
    if ((r = check_usable(st)) < 0)
        return tm__err(r);
    if (st->read_only)
        return EROFS;
    if (tx_owned(st)) {
        st->tx_depth++;
        return 0;
    }
    if (read_active(st))
        return TM_EREADTX;
    if ((died = lock_writer(&st->lk)) < 0)
        return tm__err(died);
    if ((r = store_heal(st, died)) < 0 || (r = store_catch_up(st)) < 0 || (r = track_begin(st)) < 0) {
        lock_writer_release(&st->lk);
        return tm__err(r);
    }
    st->tx_size0 = st->lk.sh->size;
    st->tx_depth = 1;
    st->tx_tid = os_tid();
    st->state = ST_WRITING;
    route_enter(st);
    return 0;
}

/* ---- the end of a transaction ---- */

/* Another store whose write transaction this thread has open, if any: the
 * malloc family goes there once the one it went to ends. */
static tm_store *other_owned(const tm_store *st)
{
    for (int i = 0; tm_route_tx > 1 && i < MAX_STORES; i++) {
        tm_store *o = store_registry[i];
        if (o && o != st && tx_owned(o))
            return o;
    }
    return NULL;
}

/* Unlocks and forgets the transaction.  A read transaction begun inside it
 * goes on under a reader slot of its own, taken before the writer's lock
 * goes so that no other commit slips in between. */
static void release(tm_store *st)
{
    if (read_active(st)) {
        lock_read_enter_writer(&st->lk);
        read_relock(st);
    }
    tx_forget(st);
    if (st->state == ST_WRITING)
        st->state = ST_READY;
    route_leave(st, other_owned(st));
    lock_writer_release(&st->lk);
}

/* Undoes everything since begin: the copies, and the growth (S5).  A
 * failed cut of the file is poisonous: the next recovery must see it; so
 * are pages left writable (track_drop). */
static void rollback(tm_store *st)
{
    if (track_rollback(st) < 0)
        st->state = ST_POISONED;
    if (store_shrink(st, st->tx_size0) < 0)
        st->state = ST_POISONED;
}

void tm_store_abort(tm_store *st)
{
    if (!tx_owned(st))
        return;
    rollback(st);
    release(st);
}

/* ---- commit ---- */

/* The superblock's checksum, anew when the transaction changed what it
 * covers (then its page is dirty, and writable, already). */
static void super_seal(tm_store *st)
{
    struct tm_super *sb = super_of(st);
    uint64_t c = super_checksum(sb);
    if (sb->checksum != c)
        sb->checksum = c;
}

/* Steps 1-3: returns 0 once the record is durable, 1 when the
 * transaction changed nothing (no record), or 2 when the code layout
 * record must be written first (then the diff again). */
static int write_record(tm_store *st, size_t *npieces)
{
    struct tm_shared *sh = st->lk.sh;
    uint64_t len = sizeof(struct log_rec), seq = sh->seq + 1, size = super_of(st)->size;
    size_t i, n;
    int r;

    super_seal(st);
    if ((r = track_settle(st)) < 0)
        return r;
    if ((n = *npieces = diff_pages(st, st->trk.dirty, st->trk.ndirty)) == 0)
        return 1;
    if (layout_check(st, st->pieces, n)) /* layout.c: its record first */
        return 2;
    for (i = 0; i < n; i++)
        len += log_range_bytes(st->pieces[i].g.len);
    if (!log_fits(&st->log, len)) { /* the ring is full: restart it (log.c L5) */
        int grow = st->n_commits - st->ckpt_commits < RING_MIN_COMMITS;
        if ((r = store_checkpoint_at(st, seq - 1, st->tx_size0)) < 0)
            return r;
        if (grow && (r = log_grow_ring(&st->log)) < 0)
            return r;
    }
    if ((r = log_append(&st->log, seq, size, st->pieces, n, &len)) < 0)
        return r;
    if (st->log.sync == TM_SYNC_FULL) {
        if ((r = os_fdatasync(st->log.fd)) < 0)
            return r;
        st->n_syncs++;
    }
    st->log.off += len;
    return 0;
}

/* Step 4 (S2): the ranges, neighbours merged already (diff.c). */
static int apply(tm_store *st, size_t n)
{
    struct tm_shared *sh = st->lk.sh;
    size_t i;
    int r;
    lock_apply_begin(&st->lk);
    sh->seq = sh->seq + 1;
    sh->size = super_of(st)->size;
    sh->log_off = st->log.off;
    sh->last_off = st->log.last_off;
    sh->last_sum = st->log.last_sum;
    for (i = 0; i < n; i++)
        if ((r = diff_apply(st, &st->pieces[i])) < 0)
            return r; /* readers stay out: a writer heals (S2) */
    sh->applied = sh->seq;
    sh->applied_off = sh->log_off;
    lock_apply_end(&st->lk);
    st->seen_seq = sh->seq;
    return 0;
}

int tm_store_commit(tm_store *st)
{
    size_t n = 0;
    int r;
    if (!tx_owned(st))
        return TM_ENOTX;
    if (--st->tx_depth > 0)
        return 0;
    if (st->trk.ndirty == 0 && st->trk.mode == TRACK_PAGES && !st->trk.hot.nranges) { /* nothing written */
        release(st);
        return 0;
    }
    r = write_record(st, &n);
    if (r == 2) { /* layout.c: the code layout record joins the transaction */
        if ((r = layout_write(st)) < 0) {
            rollback(st);
            release(st);
            return tm__err(r);
        }
        r = write_record(st, &n);
    }
    if (r < 0) {
        (void)log_invalidate(&st->log, st->log.off); /* never replayed: its checksum fails, or this erases it */
        st->state = ST_POISONED;
        rollback(st);
        release(st);
        return tm__err(r);
    }
    if (r == 1) { /* written, but every byte as it was */
        if (track_keep(st, 0) < 0)
            st->state = ST_POISONED;
        release(st);
        return 0;
    }
    st->n_commits++;
    if (apply(st, n) < 0) {
        st->state = ST_APPLY_PENDING;
        (void)track_drop(st); /* poisoned already */
    } else {
        if (track_keep(st, n) < 0 ||
            (st->log.off - LOG_START >= CKPT_BYTES && store_checkpoint(st) < 0))
            st->state = ST_POISONED;
    }
    release(st);
    return 0;
}
