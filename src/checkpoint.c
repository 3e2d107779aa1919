/*
 * checkpoint.c — the store's crash safety: the current header, checkpoints,
 * and recovery (healing a dead writer's commit, replaying after a crash).
 *
 * The committed state while the store is open is in the lock file
 * (struct tm_shared): seq, the last durable commit; applied, the last one
 * whose bytes are in the store file; the log offsets just past each.
 *
 * Crash-safety rules
 *   S1. A commit is durable once its log record is (log.c L3); the store
 *       file is only ever written with the bytes of durable records (apply,
 *       replay), and a new store is built in a temporary file and linked into
 *       place whole (store.c).
 *   S2. A commit publishes seq only once its record is durable, and applied
 *       only once its bytes are in the store file; readers stay out while
 *       applied != seq (lock.c).  A writer that finds them different, or
 *       finds the writer's mutex of a dead holder, heals: it replays every
 *       valid record from applied's offset on (L4: replay is idempotent), a
 *       durable record its dead holder never published included.
 *   S3. The page cache can be lost only with every process that had the store
 *       open (power cut, OS crash), and the lock file's state with it.  The
 *       first opener, which holds LOCK_OPEN alone, therefore replays every
 *       record of the current generation, syncs the store file and
 *       checkpoints.  Any other first user of the lock file (a read-only
 *       opener, which may not recover) takes only the checkpoint as
 *       applied: a writer's healing then replays the whole log.  Either
 *       first user syncs the store file: a checkpoint killed between its
 *       header slot's write and sync leaves a generation that only the
 *       page cache may hold, whose commits would log over the records the
 *       disk still needs (store.c, attach).
 *   S4. A checkpoint syncs the store file before it writes the new header
 *       slot, and syncs the slot before the log is reused.  Every record it
 *       retires is then in the synced store file.  A failed sync may have
 *       left pages that Linux now takes for clean though they never reached
 *       the disk, so after one (resync, in the lock file) the next
 *       checkpoint, whoever makes it, first writes every record of the
 *       generation into the store file again, never cutting it (a
 *       transaction in progress may have grown it).  While resync is owed,
 *       healing replays the whole generation too: a rewrite cut short
 *       leaves older states in the file.
 *   S5. The store file is longer than the committed arena only while a
 *       transaction that grew it is open, or after its writer died; abort,
 *       healing and recovery cut it back.
 */
#include <errno.h>
#include <sys/stat.h>

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

/* ---- checkpoints ---- */

/* S4: the store file is synced, then the next header slot written and
 * synced; the log restarts.  seq and size are the committed state, all of
 * it applied: callable by the writer inside its transaction, whose arena
 * already holds uncommitted changes. */
/* S4: writes the generation's records into the store file again, readers
 * kept out (the store file passes through their older states). */
static int rewrite_records(tm_store *st, uint64_t seq)
{
    uint64_t off = LOG_START, s = st->hdr.ckpt_seq, size = 0;
    struct stat sb;
    long n;
    int r;
    /* Never shorter than now: a transaction in progress may have grown the
     * file, and a cut would drop its private copies past the cut. */
    if ((r = os_fstat(st->fd, &sb)) < 0)
        return r;
    lock_apply_begin(&st->lk);
    n = log_replay(&st->log, st->fd, (uint64_t)sb.st_size, &off, &s, &size);
    if (n >= 0)
        lock_apply_end(&st->lk);
    return n < 0 ? (int)n : s < seq ? -EIO : 0;
}

int store_checkpoint_at(tm_store *st, uint64_t seq, uint64_t size)
{
    struct hdr_slot h = st->hdr, prev;
    int full = st->log.sync == TM_SYNC_FULL, r;
    off_t at = (off_t)(((st->hdr.gen + 1) & 1) * HDR_SLOT_SIZE);

    if (full && st->lk.sh->resync && (r = rewrite_records(st, seq)) < 0)
        return r;
    if (full && (r = os_fdatasync(st->fd)) < 0) {
        st->lk.sh->resync = 1;
        return r;
    }
    st->lk.sh->resync = 0;
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
    st->lk.sh->gen = h.gen;
    st->lk.sh->log_off = st->lk.sh->applied_off = LOG_START;
    return 0;
}

int store_checkpoint(tm_store *st)
{
    return store_checkpoint_at(st, st->lk.sh->seq, st->lk.sh->size);
}

/* ---- healing ---- */

/* S5: a dead writer's growth. */
static int cut_to(tm_store *st, uint64_t size)
{
    struct stat sb;
    int r = os_fstat(st->fd, &sb);
    if (r == 0 && (uint64_t)sb.st_size > size)
        r = os_ftruncate(st->fd, (off_t)size);
    return r;
}

/* S2: replays every valid record from the applied offset on.  Readers of
 * every process stay out meanwhile; on failure they stay out, until a
 * writer heals. */
static int replay_unapplied(tm_store *st, int died)
{
    struct tm_shared *sh = st->lk.sh;
    uint64_t off = sh->applied_off, seq = sh->applied, size = sh->size;
    long n;
    int r;
    if (sh->resync) /* S4's rewrite may have been cut short, leaving older states: all again */
        off = LOG_START, seq = st->hdr.ckpt_seq;
    lock_apply_begin(&st->lk);
    if ((r = log_refresh_len(&st->log)) < 0)
        return r;
    if ((n = log_replay(&st->log, st->fd, 0, &off, &seq, &size)) < 0)
        return (int)n;
    /* L1: a record with a valid header but a torn or corrupt body (a power
     * cut, a writer killed mid-write) can never become valid; erase its
     * header, as its writer would have. */
    if (log_pending(&st->log, off, seq + 1) && (r = log_invalidate(&st->log, off)) < 0)
        return r;
    if (died && (r = cut_to(st, size)) < 0)
        return r;
    if (n > 0) {
        sh->last_off = st->log.last_off;
        sh->last_sum = st->log.last_sum;
    }
    sh->seq = seq;
    sh->size = size;
    sh->log_off = sh->applied_off = off;
    sh->applied = seq;
    lock_apply_end(&st->lk);
    return 0;
}

/* Brings the store file up to the committed state.  The caller holds the
 * writer's mutex; died: its last holder died holding it. */
int store_heal(tm_store *st, int died)
{
    struct tm_shared *sh = st->lk.sh;
    int r;
    if ((died || sh->gen != st->hdr.gen) && (r = hdr_current(st)) < 0)
        return r;
    if (sh->gen != st->hdr.gen) {
        /* A writer died inside a checkpoint: its header slot is written,
         * maybe not yet on disk.  Everything before it was applied (and
         * synced); sync the slot before any record of its generation. */
        if (st->log.sync == TM_SYNC_FULL && (r = os_fdatasync(st->fd)) < 0)
            return r;
        sh->gen = st->hdr.gen;
        sh->log_off = sh->applied_off = LOG_START;
        sh->applied = sh->seq = st->hdr.ckpt_seq;
    }
    if (died || sh->applied != sh->seq || sh->applying)
        if ((r = replay_unapplied(st, died)) < 0)
            return r;
    st->log.off = sh->log_off;
    return 0;
}

/* S3: replay everything since the checkpoint; cut the file to the arena.
 * The first opener only, before anything is mapped.  *size: the arena's. */
int store_recover(tm_store *st, uint64_t file_size, uint64_t *arena)
{
    uint8_t page[PAGE];
    struct tm_super *sb = (struct tm_super *)page;
    uint64_t off = LOG_START, seq = st->hdr.ckpt_seq, size = 0;
    long n = log_replay(&st->log, st->fd, 0, &off, &seq, &size);
    int r;

    if (n < 0)
        return (int)n;
    if ((r = os_pread_all(st->fd, page, PAGE, PAGE)) < 0)
        return r == -ENODATA ? -TM_ETRUNCATED : r;
    if ((r = super_check(sb, &st->hdr, n > 0 ? size : file_size, NULL)) < 0)
        return r;
    if ((n > 0 || file_size != sb->size) && (r = os_ftruncate(st->fd, (off_t)sb->size)) < 0)
        return r;
    *arena = sb->size;
    st->log.off = LOG_START;
    if (n > 0 || st->hdr.version < FORMAT_VERSION) {
        /* Upgrade an older store here and only here: no other process has
         * it open, so none runs a library that would misread it. */
        st->hdr.version = FORMAT_VERSION;
        return store_checkpoint_at(st, seq, sb->size);
    }
    return 0;
}

/* The last handle to close checkpoints, so the next open has no log to
 * replay.  Its error, if any: the commits stay in the log. */
int store_checkpoint_if_last(tm_store *st)
{
    int r = 0, held;
    if (st->state != ST_READY || st->read_only)
        return 0;
    if (lock_open_try_last(&st->lk) < 0)
        return 0; /* not the last */
    if ((held = lock_writer_try(&st->lk)) >= 0) {
        if ((r = store_heal(st, held)) == 0 && st->lk.sh->seq != st->hdr.ckpt_seq)
            r = store_checkpoint(st);
        lock_writer_release(&st->lk);
    }
    return r;
}
