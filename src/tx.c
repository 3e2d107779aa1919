/*
 * tx.c — write transactions: begin, commit, abort.
 *
 * Begin takes the writer locks (lock.c), heals what a dead writer left
 * (checkpoint.c S2), and hands the arena to the tracker (track.c), which
 * finds the pages the transaction writes.
 *
 * Commit, in order (the commit point is step 3):
 *   1. the tracker lists the dirty pages and write-protects them again;
 *      the superblock is stamped (seq + 1, log position) on a copy, so its
 *      page in the arena holds only what the transaction wrote into it;
 *   2. append the dirty pages and the stamped superblock to the log as one
 *      checksummed record (checkpointing first when the ring is full);
 *   3. fdatasync the log (TMF_SYNC=full);
 *   4. take the data lock exclusively and write the pages into the store
 *      file, superblock last (S2);
 *   5. keep the private copies, which now equal the file, or drop them;
 *   6. release the locks, and checkpoint when the log has grown past
 *      CKPT_BYTES (after the data lock, so readers elsewhere do not wait).
 * A failure before 3 rolls the transaction back, poisons the handle and
 * returns the error; a failure after it leaves the commit durable (commit
 * returns 0) and poisons the handle, which keeps the store locked until
 * closed (APPLY_PENDING: tm_close writes the record again).
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
    int r;
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
    lock_local_write(&st->lk);
    if ((r = lock_writer(&st->lk)) < 0) {
        lock_local_release(&st->lk);
        return tm__err(r);
    }
    if ((r = store_heal(st)) < 0 || (r = store_refresh(st)) < 0) {
        lock_writer_release(&st->lk, 1);
        lock_local_release(&st->lk);
        return tm__err(r);
    }
    track_begin(st);
    st->tx_size0 = super_of(st)->size;
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
 * goes on under read locks of its own.  A handle whose apply failed keeps
 * the writer and data locks (S2): nobody may read the half-written file. */
static void release(tm_store *st)
{
    int pending = st->state == ST_APPLY_PENDING;
    tx_forget(st);
    if (st->state == ST_WRITING)
        st->state = ST_READY;
    route_leave(st, other_owned(st));
    if (!pending)
        lock_writer_release(&st->lk, 0);
    lock_local_release(&st->lk);
    if (!pending)
        read_relock(st);
}

/* Undoes everything since begin: the copies, and the growth (S5).  A
 * failed cut of the file is poisonous: the next recovery must see it. */
static void rollback(tm_store *st)
{
    track_rollback(st);
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

/* Where the log takes page pg from: the arena, or the stamped superblock. */
static const char *commit_page(void *ctx, uint64_t pg)
{
    tm_store *st = ctx;
    return pg == 1 ? st->sb_buf : st->base + pg * PAGE;
}

/* Steps 1-3: returns 0 once the record is durable. */
static int write_record(tm_store *st)
{
    struct tm_super *sb = (struct tm_super *)st->sb_buf;
    uint64_t len;
    int r;

    if ((r = track_settle(st)) < 0)
        return r;
    track_add_super(st);
    memcpy(st->sb_buf, st->base + PAGE, PAGE);
    sb->seq += 1;
    len = log_record_len(st->trk.ndirty);
    if (!log_fits(&st->log, len)) { /* the ring is full: restart it (log.c L5) */
        int grow = st->n_commits - st->ckpt_commits < RING_MIN_COMMITS;
        if ((r = store_checkpoint_at(st, sb->seq - 1, st->tx_size0)) < 0)
            return r;
        if (grow && (r = log_grow_ring(&st->log)) < 0)
            return r;
    }
    sb->log_gen = st->hdr.gen;
    sb->log_tail = st->log.off + len;
    sb->checksum = super_checksum(sb);
    if ((r = log_append(&st->log, sb->seq, sb->size, st->trk.dirty, st->trk.ndirty, commit_page, st, &len)) < 0)
        return r;
    if (st->log.sync == TM_SYNC_FULL) {
        if ((r = os_fdatasync(st->log.fd)) < 0)
            return r;
        st->n_syncs++;
    }
    return 0;
}

/* Step 4 (S2): runs of neighbours in one write, the superblock last. */
static int apply(tm_store *st)
{
    const uint64_t *d = st->trk.dirty;
    size_t n = st->trk.ndirty, i, j;
    int r;
    if ((r = lock_data(&st->lk, 1)) < 0)
        return r;
    for (i = 0; i < n; i = j) {
        for (j = i + 1; d[i] != 1 && j < n && d[j] == d[j - 1] + 1; j++)
            ;
        if (d[i] != 1 && (r = os_pwrite_all(st->fd, st->base + d[i] * PAGE, (j - i) * PAGE, (off_t)(d[i] * PAGE))) < 0)
            return r;
    }
    return os_pwrite_all(st->fd, st->sb_buf, PAGE, PAGE);
}

int tm_store_commit(tm_store *st)
{
    struct tm_super *sb = (struct tm_super *)st->sb_buf;
    int r;
    if (!tx_owned(st))
        return TM_ENOTX;
    if (--st->tx_depth > 0)
        return 0;
    if (st->trk.ndirty == 0 && st->trk.mode == TRACK_PAGES) { /* nothing written: nothing to log */
        release(st);
        return 0;
    }
    if ((r = write_record(st)) < 0) {
        (void)log_invalidate(&st->log, st->log.off); /* never replayed: its checksum fails, or this erases it */
        st->state = ST_POISONED;
        rollback(st);
        release(st);
        return tm__err(r);
    }
    st->apply_off = st->log.off;
    st->apply_seq = sb->seq;
    st->log.off = sb->log_tail;
    st->n_commits++;
    if (apply(st) < 0) {
        st->state = ST_APPLY_PENDING; /* keeps both locks: tm_close writes it again */
        track_drop(st);
    } else {
        track_keep(st, sb->seq);
        if (st->log.off - LOG_START >= CKPT_BYTES) {
            lock_data_release(&st->lk); /* readers need not wait for it */
            if (store_checkpoint(st) < 0)
                st->state = ST_POISONED;
        }
    }
    release(st);
    return 0;
}
