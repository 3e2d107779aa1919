/*
 * store.c — the store file: header, creation, opening and recovery,
 * mapping, growth, locks, checkpoints, close.
 *
 * File layout (every length and offset read from it is checked before use):
 *
 *   page 0   header.  Two slots of struct hdr_slot, at offsets 0 and 512, each
 *            with its own checksum.  The valid slot with the highest gen is
 *            current.  A checkpoint writes the other slot, so a write torn by
 *            a power cut leaves the previous slot intact.  Never written
 *            through the mapping, which keeps it read-only.
 *   page 1   superblock (struct tm_super): an ordinary transactional page.
 *   page 2.. the heap.
 *
 * Locks (POSIX record locks on single bytes of the store file):
 *   LOCK_OPEN    shared by every open handle; the opener that gets it
 *                exclusively is alone and runs full recovery.
 *   LOCK_WRITER  exclusive for a whole write transaction: one writer.
 *   LOCK_DATA    shared by read transactions, exclusive while a commit writes
 *                its pages into the store file (apply) or a record is replayed.
 * The kernel drops a dead process's locks, so none can go stale.
 *
 * Crash-safety rules
 *   S1. A commit is durable once its log record is (log.c L3); the store
 *       file is only ever written with pages of durable records (apply,
 *       replay), and a new store is built in a temporary file and linked into
 *       place whole.
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
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "os.h"

tm_store *_Atomic store_registry[MAX_STORES];
_Atomic uintptr_t tm_arena_lo, tm_arena_hi;
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
/* Held by tm_open from the duplicate check until the handle is registered
 * and LOCK_OPEN downgraded, and by tm_close from its checkpoint until the
 * descriptor is closed: the process's file locks never conflict with each
 * other, so without it two threads opening one store could both pass the
 * check and both recover it, and an open racing a close would take locks
 * that closing the old descriptor then drops. */
static pthread_mutex_t open_mu = PTHREAD_MUTEX_INITIALIZER;

/* fork() must not copy a mutex locked by another thread: it takes them
 * all, in the order tm_default, tm_open and the registry take them. */
void store_fork_prepare(void)
{
    default_fork_prepare();
    pthread_mutex_lock(&open_mu);
    pthread_mutex_lock(&registry_mu);
}

void store_fork_done(void)
{
    pthread_mutex_unlock(&registry_mu);
    pthread_mutex_unlock(&open_mu);
    default_fork_done();
}

#define ADDR_LIMIT ((uint64_t)1 << 47) /* x86-64 user space */

/* ---- header ---- */

uint64_t hdr_checksum(const struct hdr_slot *s)
{
    return hash_bytes(s, offsetof(struct hdr_slot, checksum), 0x746d6668);
}

uint64_t super_checksum(const struct tm_super *sb)
{
    return hash_bytes(sb, offsetof(struct tm_super, checksum), 0x746d6673);
}

static int slot_sane(const struct hdr_slot *s)
{
    return s->page_size == PAGE && s->base % PAGE == 0 && s->base >= ((uint64_t)1 << 32) &&
           s->max_size % PAGE == 0 && s->max_size >= 2 * PAGE && s->max_size < ADDR_LIMIT &&
           s->base + s->max_size <= ADDR_LIMIT && s->ckpt_size >= 2 * PAGE &&
           s->ckpt_size % PAGE == 0 && s->ckpt_size <= s->max_size && s->store_id != 0;
}

/* Picks the current slot of a header page.  Errors: TM_ENOTSTORE (no magic),
 * TM_EVERSION (the current slot is of a newer format), TM_ECORRUPT. */
static int hdr_pick(const uint8_t *page0, struct hdr_slot *out)
{
    struct hdr_slot s[2];
    int best = -1, magic = 0, i;
    for (i = 0; i < 2; i++) {
        memcpy(&s[i], page0 + i * HDR_SLOT_SIZE, sizeof s[i]);
        if (memcmp(s[i].magic, HDR_MAGIC, 8) != 0)
            continue;
        magic = 1;
        if (hdr_checksum(&s[i]) != s[i].checksum)
            continue;
        if (best < 0 || s[i].gen > s[best].gen)
            best = i;
    }
    if (best < 0)
        return magic ? -TM_ECORRUPT : -TM_ENOTSTORE;
    if (s[best].version > FORMAT_VERSION)
        return -TM_EVERSION;
    if (s[best].version < MIN_FORMAT_VERSION || !slot_sane(&s[best]))
        return -TM_ECORRUPT;
    *out = s[best];
    return 0;
}

/* Rereads the current slot through the mapping (another process may have
 * checkpointed) into st->hdr, st->gen and st->ckpt_seq. */
int hdr_current(tm_store *st)
{
    struct hdr_slot h;
    int r = hdr_pick((const uint8_t *)st->base, &h);
    if (r < 0)
        return r;
    if (h.store_id != st->store_id || h.base != (uintptr_t)st->base)
        return -TM_ECORRUPT;
    st->hdr = h;
    st->gen = h.gen;
    st->ckpt_seq = h.ckpt_seq;
    return 0;
}

/* ---- creation ---- */

static int fsync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    int fd, r = 0;
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else if ((size_t)(slash - path) < sizeof dir)
        memcpy(dir, path, (size_t)(slash - path)), dir[slash - path] = 0;
    else
        return -ENAMETOOLONG;
    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return -errno;
    if (fsync(fd) < 0)
        r = -errno;
    close(fd);
    return r;
}

/* Builds a complete store in a temporary file and links it into place, so a
 * crash never leaves a half-made store under the real name (S1).  -EEXIST
 * when another process created it first. */
static int create_file(const char *path, const tm_options *o)
{
    size_t plen = strlen(path);
    char tmp[PATH_MAX];
    uint8_t page[PAGE];
    struct hdr_slot h;
    struct tm_super *sb = (struct tm_super *)page;
    size_t size = o->initial_size ? o->initial_size : DEFAULT_INITIAL;
    int fd, r;

    size = (size + PAGE - 1) & ~(size_t)(PAGE - 1);
    if (size < 2 * PAGE)
        size = 2 * PAGE;
    if (size > o->max_size || o->base % PAGE || o->base + o->max_size > ADDR_LIMIT ||
        o->base < ((uint64_t)1 << 32))
        return -EINVAL;
    if (plen + 32 >= sizeof tmp)
        return -ENAMETOOLONG;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%ld", path, (long)getpid(), (long)os_gettid());
    fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, o->mode ? o->mode : 0600);
    if (fd < 0)
        return -errno;

    memset(&h, 0, sizeof h);
    memcpy(h.magic, HDR_MAGIC, 8);
    h.version = FORMAT_VERSION;
    h.page_size = PAGE;
    h.base = o->base;
    h.max_size = o->max_size;
    while (h.store_id == 0)
        if (getrandom(&h.store_id, sizeof h.store_id, 0) != sizeof h.store_id)
            h.store_id = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)&h;
    h.gen = 1;
    h.ckpt_seq = 0;
    h.ckpt_size = size;
    h.checksum = hdr_checksum(&h);

    r = os_ftruncate(fd, (off_t)size);
    if (r == 0) { /* both slots: one damaged slot alone never loses the store */
        memset(page, 0, PAGE);
        memcpy(page, &h, sizeof h);
        memcpy(page + HDR_SLOT_SIZE, &h, sizeof h);
        r = os_pwrite_all(fd, page, PAGE, 0);
    }
    if (r == 0) {
        memset(page, 0, PAGE);
        sb->magic = SUPER_MAGIC;
        sb->size = size;
        sb->checksum = super_checksum(sb);
        r = os_pwrite_all(fd, page, PAGE, PAGE);
    }
    if (r == 0)
        r = os_fdatasync(fd);
    close(fd);
    if (r == 0 && link(tmp, path) < 0)
        r = -errno;
    unlink(tmp);
    if (r == 0)
        r = fsync_dir_of(path);
    return r;
}

/* ---- validation ---- */

static int super_check(const struct tm_super *sb, const struct hdr_slot *h, uint64_t file_size)
{
    if (sb->magic != SUPER_MAGIC || sb->checksum != super_checksum(sb))
        return -TM_ECORRUPT;
    if (sb->size < 2 * PAGE || sb->size % PAGE || sb->size > h->max_size || sb->seq < h->ckpt_seq)
        return -TM_ECORRUPT;
    if (sb->size > file_size)
        return -TM_ETRUNCATED;
    if (sb->root && (sb->root < h->base + 2 * PAGE || sb->root - h->base > sb->size ||
                     sb->root_size > sb->size - (sb->root - h->base)))
        return -TM_ECORRUPT;
    return 0;
}

/* ---- mapping ---- */

static int map_arena(tm_store *st, int replace)
{
    int flags = MAP_PRIVATE | MAP_NORESERVE | (replace ? MAP_FIXED : MAP_FIXED_NOREPLACE);
    void *p = mmap(st->base, st->max, PROT_NONE, flags, st->fd, 0);
    if (p == MAP_FAILED)
        return errno == EEXIST ? -TM_EADDR : -errno;
    if (p != st->base) { /* a kernel without MAP_FIXED_NOREPLACE took it as a hint */
        munmap(p, st->max);
        return -TM_EADDR;
    }
    st->mapped = 0;
    return store_refresh(st);
}

/* Makes the mapping cover the committed arena size: another process may have
 * grown it.  Called under a lock that keeps the size still. */
int store_refresh(tm_store *st)
{
    if (st->mapped < 2 * PAGE) {
        if (mprotect(st->base, 2 * PAGE, PROT_READ) < 0)
            return -errno;
        st->mapped = 2 * PAGE;
    }
    return store_map_size(st, super_of(st)->size);
}

/* Makes exactly [base, base+size) readable. */
int store_map_size(tm_store *st, size_t size)
{
    if (size == st->mapped)
        return 0;
    if (size > st->max || size % PAGE)
        return -TM_ECORRUPT;
    if (size > st->mapped) {
        if (mprotect(st->base + st->mapped, size - st->mapped, PROT_READ) < 0)
            return -errno;
    } else if (mprotect(st->base + size, st->mapped - size, PROT_NONE) < 0) {
        return -errno;
    }
    st->mapped = size;
    return 0;
}

/* ---- growth (inside the write transaction) ---- */

int store_grow(tm_store *st, size_t need)
{
    struct tm_super *sb = super_of(st);
    size_t old = sb->size, step = old / 8, nsize;
    int r;

    if (step < MIN_GROWTH)
        step = MIN_GROWTH;
    if (need > st->max - old)
        return -TM_EFULL;
    nsize = old + (need > step ? need : step);
    nsize = (nsize + PAGE - 1) & ~(size_t)(PAGE - 1);
    if (nsize > st->max)
        nsize = st->max;
    if ((r = os_extend(st->fd, (off_t)old, (off_t)(nsize - old))) < 0)
        return r;
    if (mprotect(st->base + old, nsize - old, st->tx_bulk ? PROT_READ | PROT_WRITE : PROT_READ) < 0) {
        r = -errno;
        os_ftruncate(st->fd, (off_t)old);
        return r;
    }
    st->mapped = nsize;
    sb->size = nsize; /* dirties the superblock: the new size commits with it */
    return 0;
}

/* ---- checkpoint and healing ---- */

/* S4: the store file is synced, then the next header slot written and
 * synced; the log restarts.  seq and size are the committed state. */
static int write_checkpoint(tm_store *st, uint64_t seq, uint64_t size)
{
    struct hdr_slot h = st->hdr, prev;
    int full = st->sync == TM_SYNC_FULL, r;
    off_t at = (off_t)(((st->gen + 1) & 1) * HDR_SLOT_SIZE);

    if (full && (r = os_fdatasync(st->fd)) < 0)
        return r;
    h.gen = st->gen + 1; /* the version stays: only a first opener upgrades (recover) */
    h.ckpt_seq = seq;
    h.ckpt_size = size;
    h.checksum = hdr_checksum(&h);
    if ((r = os_pread_all(st->fd, &prev, sizeof prev, at)) < 0)
        return r;
    if ((r = os_pwrite_all(st->fd, &h, sizeof h, at)) < 0 || (full && (r = os_fdatasync(st->fd)) < 0)) {
        /* The new header may be in the page cache but not on disk: put the
         * slot back, or later openers would take the new generation, log
         * over the old one's records, and a power cut would lose them. */
        os_pwrite_all(st->fd, &prev, sizeof prev, at);
        return r;
    }
    st->n_syncs += full ? 2 : 0;
    st->n_ckpts++;
    st->ckpt_commits = st->n_commits;
    st->hdr = h;
    st->gen = h.gen;
    st->ckpt_seq = seq;
    st->log_off = LOG_START;
    return 0;
}

int store_checkpoint(tm_store *st)
{
    return store_checkpoint_at(st, super_of(st)->seq, super_of(st)->size);
}

/* A checkpoint of the committed state (seq, size): callable inside a write
 * transaction, whose superblock already holds uncommitted changes. */
int store_checkpoint_at(tm_store *st, uint64_t seq, uint64_t size)
{
    int r = write_checkpoint(st, seq, size);
    if (r == 0 && st->log_len > LOG_START + 2 * CKPT_BYTES &&
        os_ftruncate(st->log_fd, LOG_START + CKPT_BYTES) == 0)
        st->log_len = LOG_START + CKPT_BYTES;
    return r;
}

/* Finds where the next record goes and replays any durable record that a
 * dead writer did not finish applying (S2).  Caller holds LOCK_WRITER. */
int store_heal(tm_store *st)
{
    struct tm_super *sb = super_of(st);
    uint64_t off, seq, size;
    long n;
    int r;

    if ((r = hdr_current(st)) < 0)
        return r;
    off = sb->log_gen == st->gen ? sb->log_tail : LOG_START;
    if (off > st->log_len && (r = log_refresh_len(st)) < 0)
        return r;
    if (off < LOG_START || off > st->log_len)
        return -TM_ECORRUPT;
    seq = sb->seq, size = sb->size;
    st->log_off = off;
    if (!log_pending(st, off, seq + 1))
        return 0;
    if ((r = os_lock(st->fd, LOCK_DATA, F_WRLCK, 1)) < 0)
        return r;
    n = log_replay(st, &off, &seq, &size);
    os_lock(st->fd, LOCK_DATA, F_UNLCK, 0);
    if (n < 0)
        return (int)n;
    st->log_off = off;
    /* L1: a record with a valid header but a torn or corrupt body (a power
     * cut, a writer killed mid-write) can never become valid; erase its
     * header, or lock_readers would find it pending and heal forever. */
    if (log_pending(st, off, seq + 1) && (r = log_invalidate(st, off)) < 0)
        return r;
    return store_refresh(st);
}

/* After an apply failed (its handle kept both locks), writes the record
 * into the store file again.  The superblock may already be half new, so
 * store_heal cannot be trusted to see the record as pending. */
int store_reapply(tm_store *st)
{
    uint64_t off = st->apply_off, seq = st->apply_seq - 1, size = 0;
    long n;
    int r;
    if ((r = log_refresh_len(st)) < 0)
        return r;
    n = log_replay(st, &off, &seq, &size);
    if (n < 0)
        return (int)n;
    if (n == 0)
        return -TM_ECORRUPT;
    st->apply_pending = 0;
    return 0;
}

/* ---- opening ---- */

static char *dup_path(const char *path, const char *suffix)
{
    size_t a = strlen(path), b = strlen(suffix);
    char *p = os_alloc(a + b + 1);
    if (p) {
        memcpy(p, path, a);
        memcpy(p + a, suffix, b + 1);
    }
    return p;
}

void tm_options_init(tm_options *o)
{
    memset(o, 0, sizeof *o);
    o->base = DEFAULT_BASE;
    o->max_size = DEFAULT_MAX;
    o->initial_size = DEFAULT_INITIAL;
    o->sync = TM_SYNC_FULL;
    o->mode = 0600;
}

static int open_log(tm_store *st, int first)
{
    int flags = (st->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | (first ? O_CREAT : 0);
    struct stat sb;
    st->log_fd = open(st->log_path, flags, st->mode);
    if (st->log_fd < 0)
        return errno == ENOENT ? -TM_ECORRUPT : -errno;
    if (fstat(st->log_fd, &sb) < 0)
        return -errno;
    if (first && sb.st_size == 0) {
        int r = log_create(st);
        return r < 0 ? r : fsync_dir_of(st->log_path);
    }
    return log_check_file(st);
}

/* S3: replay everything since the checkpoint; cut the file to the arena. */
static int recover(tm_store *st, uint64_t file_size)
{
    uint8_t page[PAGE];
    struct tm_super *sb = (struct tm_super *)page;
    uint64_t off = LOG_START, seq = st->ckpt_seq, size = 0;
    long n = log_replay(st, &off, &seq, &size);
    int r;

    if (n < 0)
        return (int)n;
    if ((r = os_pread_all(st->fd, page, PAGE, PAGE)) < 0)
        return r == -ENODATA ? -TM_ETRUNCATED : r;
    if ((r = super_check(sb, &st->hdr, n > 0 ? size : file_size)) < 0)
        return r;
    if (n > 0 || file_size != sb->size) {
        if ((r = os_ftruncate(st->fd, (off_t)sb->size)) < 0)
            return r;
    }
    if (n > 0 || st->ckpt_seq != sb->seq || st->hdr.version < FORMAT_VERSION) {
        /* Upgrade an older store here and only here: no other process has
         * it open, so none runs a library that would misread it. */
        st->hdr.version = FORMAT_VERSION;
        return write_checkpoint(st, sb->seq, sb->size);
    }
    st->log_off = LOG_START;
    return 0;
}

/* Reads and checks header and superblock before anything is mapped. */
static int validate(tm_store *st, int first, uint64_t *file_size)
{
    uint8_t page[PAGE];
    struct stat sb;
    int r;

    if (fstat(st->fd, &sb) < 0)
        return -errno;
    if (!S_ISREG(sb.st_mode))
        return -TM_ENOTSTORE;
    st->dev = sb.st_dev, st->ino = sb.st_ino;
    *file_size = (uint64_t)sb.st_size;
    memset(page, 0, sizeof page);
    r = os_pread_all(st->fd, page, *file_size < PAGE ? (size_t)*file_size : PAGE, 0);
    if (r < 0)
        return r;
    if ((r = hdr_pick(page, &st->hdr)) < 0)
        return r;
    if (*file_size < 2 * PAGE)
        return -TM_ETRUNCATED;
    st->store_id = st->hdr.store_id;
    st->gen = st->hdr.gen;
    st->ckpt_seq = st->hdr.ckpt_seq;
    st->base = (char *)(uintptr_t)st->hdr.base;
    st->max = st->hdr.max_size; /* the store's own: every opener maps it all */
    if ((r = open_log(st, first)) < 0)
        return r;
    if (first)
        return recover(st, *file_size);
    if ((r = os_pread_all(st->fd, page, PAGE, PAGE)) < 0)
        return r;
    return super_check((struct tm_super *)page, &st->hdr, *file_size);
}

/* The one range holding every reservation: the preload's ownership test. */
static void registry_bounds(void)
{
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    int i;
    for (i = 0; i < MAX_STORES; i++) {
        tm_store *o = store_registry[i];
        if (o && (uintptr_t)o->base < lo)
            lo = (uintptr_t)o->base;
        if (o && (uintptr_t)o->base + o->max > hi)
            hi = (uintptr_t)o->base + o->max;
    }
    if (hi == 0)
        lo = 0; /* no store: an empty range */
    tm_arena_lo = lo;
    tm_arena_hi = hi;
}

/* Under registry_mu: when the file (dev, ino) is open in this process
 * already, parks fd with that handle and returns 1.  A refused second open
 * must not close its descriptor: closing any descriptor of the file would
 * release every POSIX lock the process holds on it. */
static int park_if_open(dev_t dev, ino_t ino, int fd)
{
    int i;
    for (i = 0; i < MAX_STORES; i++) {
        tm_store *o = store_registry[i];
        if (o && o->dev == dev && o->ino == ino) {
            if (o->nparked < (int)(sizeof o->parked / sizeof *o->parked))
                o->parked[o->nparked++] = fd; /* else leaked: four refused opens already */
            return 1;
        }
    }
    return 0;
}

/* Adds st to the registry (under open_mu: no other open can race it). */
static int registry_add(tm_store *st)
{
    int i, r = -EMFILE;
    pthread_mutex_lock(&registry_mu);
    for (i = 0; r == -EMFILE && i < MAX_STORES; i++) {
        if (!store_registry[i]) {
            st->slot = i;
            store_registry[i] = st;
            registry_bounds();
            r = 0;
        }
    }
    pthread_mutex_unlock(&registry_mu);
    return r;
}

/* Whether fd is a store this process has open already (then it is parked,
 * see park_if_open).  Checked before any lock is taken: the process's own
 * locks never conflict with each other. */
static int registry_park(int fd)
{
    struct stat sb;
    int found;
    if (fstat(fd, &sb) < 0)
        return 0;
    pthread_mutex_lock(&registry_mu);
    found = park_if_open(sb.st_dev, sb.st_ino, fd);
    pthread_mutex_unlock(&registry_mu);
    return found;
}

static void registry_remove(tm_store *st)
{
    pthread_mutex_lock(&registry_mu);
    if (st->slot >= 0 && store_registry[st->slot] == st) {
        store_registry[st->slot] = NULL;
        registry_bounds();
    }
    pthread_mutex_unlock(&registry_mu);
}

static void init_locks(tm_store *st)
{
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&st->rw, &a);
    pthread_rwlockattr_destroy(&a);
    pthread_mutex_init(&st->mu, NULL);
}

static void destroy(tm_store *st)
{
    if (st->dirty)
        os_free(st->dirty, (st->max / PAGE) * sizeof *st->dirty);
    if (st->sb_buf)
        os_free(st->sb_buf, PAGE);
    if (st->kept)
        os_free(st->kept, 2 * KEEP_MAX * sizeof *st->kept);
    if (st->log_map)
        munmap((void *)st->log_map, st->log_map_len);
    if (st->log_fd >= 0)
        close(st->log_fd);
    if (st->pm_fd >= 0)
        close(st->pm_fd);
    while (st->nparked > 0)
        close(st->parked[--st->nparked]);
    if (st->fd >= 0)
        close(st->fd); /* drops this process's locks on the file */
    if (st->path)
        os_free(st->path, strlen(st->path) + 1);
    if (st->log_path)
        os_free(st->log_path, strlen(st->log_path) + 1);
    os_free(st, sizeof *st);
}

/* Takes LOCK_OPEN: exclusively when no other process has the store open
 * (*first = 1), else shared.  Waits out a first opener's recovery. */
static int lock_open(tm_store *st, int *first)
{
    int r;
    *first = 0;
    if (st->read_only) /* never the first opener: it must not recover */
        return os_lock(st->fd, LOCK_OPEN, F_RDLCK, 1);
    r = os_lock(st->fd, LOCK_OPEN, F_WRLCK, 0);
    *first = r == 0;
    if (r == -EAGAIN)
        r = os_lock(st->fd, LOCK_OPEN, F_RDLCK, 1);
    return r;
}

/* The part of tm_open under open_mu: st->fd is open; on failure the caller
 * destroys st (its fd was parked when the store is open here already). */
static int open_locked(tm_store *st)
{
    uint64_t file_size;
    int first = 0, r;
    if (registry_park(st->fd)) { /* before any lock: ours would not conflict with themselves */
        st->fd = -1;
        return -EBUSY;
    }
    if ((r = lock_open(st, &first)) < 0 || (r = validate(st, first, &file_size)) < 0 ||
        (r = registry_add(st)) < 0)
        return r;
    st->dirty = os_alloc((st->max / PAGE) * sizeof *st->dirty);
    st->sb_buf = os_alloc(PAGE);
    st->kept = os_alloc(2 * KEEP_MAX * sizeof *st->kept);
    r = st->dirty && st->sb_buf && st->kept ? map_arena(st, 0) : -ENOMEM;
    if (r == 0 && first)
        r = os_lock(st->fd, LOCK_OPEN, F_RDLCK, 0); /* downgrade: others may open now */
    if (r < 0) {
        if (r != -TM_EADDR && st->mapped)
            munmap(st->base, st->max);
        registry_remove(st);
    }
    return r;
}

int tm_open(const char *path, const tm_options *opts, tm_store **out)
{
    tm_options o;
    tm_store *st;
    int lone_log = 0, r;

    *out = NULL;
    if (!path || !*path)
        return EINVAL;
    if (os_page_size() != PAGE)
        return TM_EPAGESIZE;
    if (opts)
        o = *opts;
    else
        tm_options_init(&o);
    if (!o.base)
        o.base = DEFAULT_BASE;
    if (!o.max_size)
        o.max_size = DEFAULT_MAX;
    o.max_size = (o.max_size + PAGE - 1) & ~(size_t)(PAGE - 1);
    if ((r = tx_install_handler()) < 0)
        return tm__err(r);
    if (!(st = os_alloc(sizeof *st)))
        return ENOMEM;
    st->fd = st->log_fd = st->pm_fd = -1;
    st->slot = -1;
    st->sync = o.sync;
    st->mode = o.mode ? o.mode : 0600;
    st->max = o.max_size;
    st->read_only = o.read_only != 0;
    st->pid = getpid();
    init_locks(st);
    st->path = dup_path(path, "");
    st->log_path = dup_path(path, ".log");
    if (!st->path || !st->log_path) {
        destroy(st);
        return ENOMEM;
    }

    st->fd = open(path, (st->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (st->fd < 0 && errno == ENOENT && !o.no_create && !st->read_only) {
        /* A log without its store is kept, not created over: it may hold
         * the only copy of a lost store's commits, and a new store would
         * refuse it anyway. */
        lone_log = access(st->log_path, F_OK) == 0;
        r = lone_log ? 0 : create_file(path, &o);
        if (r < 0 && r != -EEXIST) {
            destroy(st);
            return tm__err(r);
        }
        st->fd = open(path, O_RDWR | O_CLOEXEC); /* made here, or by another opener meanwhile */
    }
    if (st->fd < 0) {
        r = lone_log && errno == ENOENT ? -EEXIST : -errno;
        destroy(st);
        return tm__err(r);
    }
    pthread_mutex_lock(&open_mu);
    if ((r = open_locked(st)) < 0)
        destroy(st); /* its close must not drop the locks of an open that follows */
    pthread_mutex_unlock(&open_mu);
    if (r < 0)
        return tm__err(r);
    *out = st;
    return 0;
}

/* After fork, in the child: a fresh mapping (the parent's uncommitted pages
 * are dropped) and no inherited transaction, locks or readers. */
static int revive_locked(tm_store *st)
{
    int r;
    init_locks(st);
    st->readers = 0;
    st->tx_tid = 0;
    st->tx_depth = 0;
    st->tx_bulk = 0;
    st->ndirty = 0;
    st->nkept = 0; /* the new mapping has no private copies */
    st->apply_pending = 0;
    if (st->pm_fd >= 0) /* it shows the parent's pages */
        close(st->pm_fd);
    st->pm_fd = -1;
    st->pid = getpid();
    if ((r = os_lock(st->fd, LOCK_OPEN, F_RDLCK, 1)) < 0 || (r = map_arena(st, 1)) < 0) {
        st->poisoned = 1;
        return r;
    }
    st->forked = 0;
    return 0;
}

int store_revive(tm_store *st)
{
    int r = 0;
    pthread_mutex_lock(&open_mu); /* a child's threads may race to revive it */
    if (st->forked)
        r = revive_locked(st);
    pthread_mutex_unlock(&open_mu);
    return r;
}

/* The last handle to close checkpoints, so the next open has no log to
 * replay.  Its error, if any: the commits stay in the log. */
static int checkpoint_if_last(tm_store *st)
{
    int r = 0;
    if (st->poisoned || st->apply_pending || st->read_only)
        return 0;
    if (os_lock(st->fd, LOCK_OPEN, F_WRLCK, 0) < 0)
        return 0; /* not the last */
    if (os_lock(st->fd, LOCK_WRITER, F_WRLCK, 0) == 0) {
        if ((r = store_heal(st)) == 0 && super_of(st)->seq != st->ckpt_seq)
            r = store_checkpoint(st);
        os_lock(st->fd, LOCK_WRITER, F_UNLCK, 0);
    }
    return r;
}

int tm_close(tm_store *st)
{
    int r = 0;
    if (!st)
        return EINVAL;
    pthread_mutex_lock(&open_mu);
    if (!st->forked) { /* a child's inherited handle holds no lock, owns no transaction */
        if (tx_owned(st))
            tm_store_abort(st);
        if (st->apply_pending) /* S2: finish the durable commit before unlocking */
            store_reapply(st);
        r = checkpoint_if_last(st);
    }
    registry_remove(st);
    munmap(st->base, st->max);
    destroy(st);
    pthread_mutex_unlock(&open_mu);
    return tm__err(r);
}

const char *tm_store_path(const tm_store *st)
{
    return st->path;
}

void *tm_store_base(const tm_store *st)
{
    return st->base;
}
