/*
 * checkpoint.c — the store's crash safety: the current header, checkpoints,
 * and recovery (healing a dead writer's apply, replaying after a crash).
 *
 * Crash-safety rules
 *   S1. A commit is durable once its log record is (log.c L3); the store
 *       file is only ever written with pages of durable records (apply,
 *       replay), and a new store is built in a temporary file and linked into
 *       place whole (store.c).
 *   S2. Apply writes the superblock last.  So a superblock whose sequence
 *       number is N proves that records up to N are in the store file, as far
 *       as the page cache goes; store_heal replays any record past it, which
 *       repairs an apply cut short by the death of its process.
 *   S3. The page cache can be lost only with every process that had the store
 *       open (power cut, OS crash).  The first opener, which holds LOCK_OPEN
 *       alone, therefore replays every record of the current generation
 *       (idempotent, L4), syncs the store file and checkpoints.
 *   S4. A checkpoint syncs the store file before it writes the new header
 *       slot, and syncs the slot before the log is reused.  Every record it
 *       retires is then in the synced store file.
 *   S5. The store file is longer than the committed arena only while a
 *       transaction that grew it is open; recovery and abort cut it back.
 */
#include <errno.h>

#include "internal.h"

void store_set_hdr(tm_store *st, const struct hdr_slot *h)
{
    st->hdr = *h;
    st->log.gen = h->gen;
}

/* Rereads the current slot through the mapping (another process may have
 * checkpointed). */
int hdr_current(tm_store *st)
{
    struct hdr_slot h;
    int r = hdr_pick((const uint8_t *)st->base, &h);
    if (r < 0)
        return r;
    if (h.store_id != st->hdr.store_id || h.base != (uintptr_t)st->base)
        return -TM_ECORRUPT;
    store_set_hdr(st, &h);
    return 0;
}

uint64_t store_log_tail(const tm_store *st)
{
    const struct tm_super *sb = super_of(st);
    return sb->log_gen == st->hdr.gen ? sb->log_tail : LOG_START;
}

/* ---- checkpoints ---- */

/* S4: the store file is synced, then the next header slot written and
 * synced; the log restarts.  seq and size are the committed state:
 * callable inside a write transaction, whose superblock already holds
 * uncommitted changes. */
int store_checkpoint_at(tm_store *st, uint64_t seq, uint64_t size)
{
    struct hdr_slot h = st->hdr, prev;
    int full = st->log.sync == TM_SYNC_FULL, r;
    off_t at = (off_t)(((st->hdr.gen + 1) & 1) * HDR_SLOT_SIZE);

    if (full && (r = os_fdatasync(st->fd)) < 0)
        return r;
    h.gen = st->hdr.gen + 1; /* the version stays: only a first opener upgrades (recover) */
    h.ckpt_seq = seq;
    h.ckpt_size = size;
    h.checksum = hdr_checksum(&h);
    if ((r = os_pread_all(st->fd, &prev, sizeof prev, at)) < 0)
        return r;
    if ((r = os_pwrite_all(st->fd, &h, sizeof h, at)) < 0 || (full && (r = os_fdatasync(st->fd)) < 0)) {
        /* The new header may be in the page cache but not on disk: put the
         * slot back, or later openers would take the new generation, log
         * over the old one's records, and a power cut would lose them.  If
         * that write fails too, the handle is poisoned by our caller and
         * the old slot's generation is still the higher one on disk. */
        (void)os_pwrite_all(st->fd, &prev, sizeof prev, at);
        return r;
    }
    st->n_syncs += full ? 2 : 0;
    st->n_ckpts++;
    st->ckpt_commits = st->n_commits;
    store_set_hdr(st, &h);
    log_restart(&st->log);
    return 0;
}

int store_checkpoint(tm_store *st)
{
    return store_checkpoint_at(st, super_of(st)->seq, super_of(st)->size);
}

/* ---- healing ---- */

/* Finds where the next record goes and replays any durable record that a
 * dead writer did not finish applying (S2).  Caller holds LOCK_WRITER, and
 * refreshes the mapping afterwards (the arena may have grown). */
int store_heal(tm_store *st)
{
    struct tm_super *sb = super_of(st);
    uint64_t off, seq, size;
    long n;
    int r;

    if ((r = hdr_current(st)) < 0)
        return r;
    off = store_log_tail(st);
    if (off > st->log.len && (r = log_refresh_len(&st->log)) < 0)
        return r;
    if (off < LOG_START || off > st->log.len)
        return -TM_ECORRUPT;
    seq = sb->seq, size = sb->size;
    st->log.off = off;
    if (!log_pending(&st->log, off, seq + 1))
        return 0;
    if ((r = lock_data(&st->lk, 1)) < 0)
        return r;
    n = log_replay(&st->log, st->fd, &off, &seq, &size);
    lock_data_release(&st->lk);
    if (n < 0)
        return (int)n;
    st->log.off = off;
    /* L1: a record with a valid header but a torn or corrupt body (a power
     * cut, a writer killed mid-write) can never become valid; erase its
     * header, or readers would find it pending and heal forever. */
    if (log_pending(&st->log, off, seq + 1) && (r = log_invalidate(&st->log, off)) < 0)
        return r;
    return 0;
}

/* After an apply failed (its handle kept both locks), writes the record
 * into the store file again.  The superblock may already be half new, so
 * store_heal cannot be trusted to see the record as pending. */
int store_reapply(tm_store *st)
{
    uint64_t off = st->apply_off, seq = st->apply_seq - 1, size = 0;
    long n;
    int r;
    if ((r = log_refresh_len(&st->log)) < 0)
        return r;
    n = log_replay(&st->log, st->fd, &off, &seq, &size);
    if (n < 0)
        return (int)n;
    return n == 0 ? -TM_ECORRUPT : 0;
}

/* S3: replay everything since the checkpoint; cut the file to the arena.
 * The first opener only, before anything is mapped. */
int store_recover(tm_store *st, uint64_t file_size)
{
    uint8_t page[PAGE];
    struct tm_super *sb = (struct tm_super *)page;
    uint64_t off = LOG_START, seq = st->hdr.ckpt_seq, size = 0;
    long n = log_replay(&st->log, st->fd, &off, &seq, &size);
    int r;

    if (n < 0)
        return (int)n;
    if ((r = os_pread_all(st->fd, page, PAGE, PAGE)) < 0)
        return r == -ENODATA ? -TM_ETRUNCATED : r;
    if ((r = super_check(sb, &st->hdr, n > 0 ? size : file_size, NULL)) < 0)
        return r;
    if ((n > 0 || file_size != sb->size) && (r = os_ftruncate(st->fd, (off_t)sb->size)) < 0)
        return r;
    if (n > 0 || st->hdr.ckpt_seq != sb->seq || st->hdr.version < FORMAT_VERSION) {
        /* Upgrade an older store here and only here: no other process has
         * it open, so none runs a library that would misread it. */
        st->hdr.version = FORMAT_VERSION;
        return store_checkpoint_at(st, sb->seq, sb->size);
    }
    st->log.off = LOG_START;
    return 0;
}

/* The last handle to close checkpoints, so the next open has no log to
 * replay.  Its error, if any: the commits stay in the log. */
int store_checkpoint_if_last(tm_store *st)
{
    int r = 0;
    if (st->state != ST_READY || st->read_only)
        return 0;
    if (lock_open_try_last(&st->lk) < 0)
        return 0; /* not the last */
    if (lock_writer_try(&st->lk) == 0) {
        if ((r = store_heal(st)) == 0 && super_of(st)->seq != st->hdr.ckpt_seq)
            r = store_checkpoint(st);
        lock_writer_release(&st->lk, 1);
    }
    return r;
}
