/*
 * store.c — a store's files and mapping: creation, opening, the arena's
 * mapping and growth, revival after fork, and closing.
 *
 * The arena is the store file mapped MAP_PRIVATE at its base, inside a
 * PROT_NONE reservation of max bytes (MAP_FIXED_NOREPLACE: never over
 * memory the process uses): uncommitted changes live only in this
 * process's copy-on-write pages.  [base, base + mapped) is readable, and
 * mapped follows the committed arena size, which other processes may grow.
 * The file layout is in format.h, the crash-safety rules S1-S5 in
 * checkpoint.c, the locks in lock.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "internal.h"

/* ---- creation ---- */

/* A new file named path, written whole by fill and synced before it gets
 * the name: a crash never leaves a half-made file under it (S1).  Where the
 * file system has O_TMPFILE the file has no name before, so a crash leaves
 * nothing beside it either; elsewhere a temporary name, which a crash can
 * leave behind (path.tmp.<pid>.<tid>).  -EEXIST when another process made
 * it first. */
static int create_whole(const char *path, unsigned mode, int (*fill)(int fd, void *ctx), void *ctx)
{
    char tmp[PATH_MAX];
    int fd = os_tmpfile(path, mode), named = fd == -EOPNOTSUPP, r;
    if (named) {
        if (strlen(path) + 32 >= sizeof tmp)
            return -ENAMETOOLONG;
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%ld", path, (long)os_pid(), (long)os_tid());
        fd = os_open(tmp, O_RDWR | O_CREAT | O_TRUNC, mode);
    }
    if (fd < 0)
        return fd;
    if ((r = fill(fd, ctx)) == 0 && (r = os_fdatasync(fd)) == 0)
        r = os_link_fd(fd, path);
    os_close(fd);
    if (named)
        (void)os_unlink(tmp); /* a leftover is a leftover, not a loss */
    return r == 0 ? os_fsync_dir(path) : r;
}

/* A store file: both header slots (one damaged slot alone never loses the
 * store), the superblock, zeros. */
static int fill_store(int fd, void *ctx)
{
    const struct hdr_slot *h = ctx;
    uint8_t page[PAGE];
    struct tm_super *sb = (struct tm_super *)page;
    int r = os_ftruncate(fd, (off_t)h->ckpt_size);
    memset(page, 0, PAGE);
    memcpy(page, h, sizeof *h);
    memcpy(page + HDR_SLOT_SIZE, h, sizeof *h);
    if (r == 0)
        r = os_pwrite_all(fd, page, PAGE, 0);
    memset(page, 0, PAGE);
    sb->magic = SUPER_MAGIC;
    sb->size = h->ckpt_size;
    sb->checksum = super_checksum(sb);
    return r == 0 ? os_pwrite_all(fd, page, PAGE, PAGE) : r;
}

/* Under the preload the reservation must lie in the window that free
 * tests (route.h): a block of a store outside it would go to glibc. */
static int window_check(uint64_t base, uint64_t max)
{
    if (!tm_route_preloaded || route_window_holds(base, max))
        return 0;
    os_say("a store reserved at", "lies outside " ROUTE_WINDOW_TEXT
           ", where the preload needs every store: set TMF_ADDR (and TMF_MAX_SIZE) within it", base);
    return -EINVAL;
}

static int create_file(const char *path, const tm_options *o)
{
    struct hdr_slot h;
    size_t size = o->initial_size ? o->initial_size : DEFAULT_INITIAL;
    int r;
    size = (size + PAGE - 1) & ~(size_t)(PAGE - 1);
    if (size < 2 * PAGE)
        size = 2 * PAGE;
    if (size > o->max_size || o->base % PAGE || o->base + o->max_size > ADDR_LIMIT ||
        o->base < ((uint64_t)1 << 32))
        return -EINVAL;
    if ((r = window_check(o->base, o->max_size)) < 0)
        return r;
    hdr_init(&h, o->base, o->max_size, size, os_random64() | 1);
    return create_whole(path, o->mode ? o->mode : 0600, fill_store, &h);
}

/* ---- mapping ---- */

/* The whole reservation, at first writable for one write: a private copy
 * of page 1, dropped at once, gives the mapping its anon_vma before the
 * first mprotect splits it, so that split pieces can merge back (they
 * cannot when some were split off before it had one).  Scattered small
 * commits meet the page cache in small folios, not the large ones
 * readahead builds: a write into a large folio costs ten times one into a
 * page, and its write-back writes the whole folio. */
static int map_arena(tm_store *st, int replace)
{
    int flags = MAP_PRIVATE | MAP_NORESERVE | (replace ? MAP_FIXED : MAP_FIXED_NOREPLACE);
    void *p = os_mmap(st->base, st->max, PROT_READ | PROT_WRITE, flags, st->fd, 0);
    volatile char *one = st->base + PAGE;
    int r;
    if (os_map_failed(p))
        return (intptr_t)p == -EEXIST ? -TM_EADDR : (int)(intptr_t)p;
    if (p != st->base) { /* a kernel without MAP_FIXED_NOREPLACE took it as a hint */
        os_munmap(p, st->max);
        return -TM_EADDR;
    }
    *one = *one;
    (void)os_madvise(st->base + PAGE, PAGE, MADV_DONTNEED); /* our own copy: it cannot fail */
    (void)os_madvise(p, st->max, MADV_RANDOM);              /* a hint: only speed depends on it */
    os_fadvise(st->fd, POSIX_FADV_RANDOM);
    st->mapped = 0;
    if ((r = os_mprotect(st->base, st->max, PROT_NONE)) < 0 || (r = os_mprotect(st->base, 2 * PAGE, PROT_READ)) < 0)
        return r;
    st->mapped = 2 * PAGE;
    return store_map_size(st, st->lk.sh->size);
}

/* Brings this process's view up to the committed state: the mapping to the
 * committed size (another process may have grown the arena), and no
 * private copy older than the last commit.  Inside a read or write
 * transaction, so the state holds still. */
int store_catch_up(tm_store *st)
{
    uint64_t seq = st->lk.sh->seq;
    int r;
    pthread_mutex_lock(&st->refresh_mu);
    r = store_map_size(st, st->lk.sh->size);
    if (r == 0 && st->seen_seq != seq) {
        track_drop_copies(st);
        st->seen_seq = seq;
    }
    pthread_mutex_unlock(&st->refresh_mu);
    return r;
}

/* Makes exactly [base, base+size) readable. */
int store_map_size(tm_store *st, size_t size)
{
    int r;
    if (size == st->mapped)
        return 0;
    if (size > st->max || size % PAGE)
        return -TM_ECORRUPT;
    if (size > st->mapped)
        r = os_mprotect(st->base + st->mapped, size - st->mapped, PROT_READ);
    else
        r = os_mprotect(st->base + size, st->mapped - size, PROT_NONE);
    if (r == 0)
        st->mapped = size;
    return r;
}

/* ---- growth and its undoing (inside the write transaction) ---- */

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
    if ((r = os_mprotect(st->base + old, nsize - old, track_grow_prot(st))) < 0) {
        (void)os_ftruncate(st->fd, (off_t)old); /* S5; if it fails too, recovery cuts it */
        return r;
    }
    st->mapped = nsize;
    sb->size = nsize; /* dirties the superblock: the new size commits with it */
    return 0;
}

/* Undoes the growth of an aborted transaction: the arena back to size
 * (S5).  The mapping shrinks whatever happens to the file; a file left
 * longer is cut by the next recovery, and its error is returned. */
int store_shrink(tm_store *st, size_t size)
{
    int r;
    if (st->mapped <= size)
        return 0;
    r = os_mprotect(st->base + size, st->mapped - size, PROT_NONE);
    (void)os_madvise(st->base + size, st->mapped - size, MADV_DONTNEED); /* only frees our copies */
    st->mapped = size;
    return r < 0 ? r : os_ftruncate(st->fd, (off_t)size);
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

static void free_path(char *p)
{
    if (p)
        os_free(p, strlen(p) + 1);
}

static int fill_log(int fd, void *ctx)
{
    struct tm_log lg = *(const struct tm_log *)ctx;
    lg.fd = fd;
    return log_create(&lg);
}

/* Whether a log that fails its check never held a record: its header page
 * never reached the disk (a crash while it was made in place, by an older
 * library), its store was never checkpointed, and no first record follows. */
static int log_never_used(tm_store *st)
{
    uint8_t page[PAGE];
    struct stat sb;
    if (os_fstat(st->log.fd, &sb) < 0 || st->hdr.gen != 1 || st->hdr.ckpt_seq != 0)
        return 0;
    st->log.len = (uint64_t)sb.st_size;
    memset(page, 0, PAGE);
    if (st->log.len >= PAGE && os_pread_all(st->log.fd, page, PAGE, 0) < 0)
        return 0;
    if (memcmp(page, LOG_HDR_MAGIC, 8) == 0)
        return 0; /* a log's header, another store's: keep it (TM_ECORRUPT) */
    for (size_t i = sizeof(struct log_head); i < PAGE; i++)
        if (page[i])
            return 0;
    return log_head_check(page, PAGE, st->hdr.store_id) < 0 && !log_pending(&st->log, LOG_START, 1);
}

/* The log, made whole by the first opener when it is missing (a new
 * store), or remade when it never held a record. */
static int open_log(tm_store *st, int first)
{
    int r;
    st->log.fd = os_open(st->log_path, st->read_only ? O_RDONLY : O_RDWR, 0);
    if (st->log.fd == -ENOENT && first) {
        if ((r = create_whole(st->log_path, st->mode, fill_log, &st->log)) < 0 && r != -EEXIST)
            return r;
        st->log.fd = os_open(st->log_path, O_RDWR, 0);
    }
    if (st->log.fd < 0)
        return st->log.fd == -ENOENT ? -TM_ECORRUPT : st->log.fd;
    r = log_open_check(&st->log);
    if (r == -TM_ECORRUPT && first && log_never_used(st)) {
        if ((r = os_ftruncate(st->log.fd, 0)) < 0 || (r = log_create(&st->log)) < 0)
            return r;
        r = log_open_check(&st->log);
    }
    return r;
}

/* Reads and checks header and superblock before anything is mapped. */
static int validate(tm_store *st, int first, uint64_t *file_size)
{
    uint8_t page[PAGE];
    struct hdr_slot h;
    struct stat sb;
    int r;

    if ((r = os_fstat(st->fd, &sb)) < 0)
        return r;
    if (!S_ISREG(sb.st_mode))
        return -TM_ENOTSTORE;
    st->dev = sb.st_dev, st->ino = sb.st_ino;
    *file_size = (uint64_t)sb.st_size;
    memset(page, 0, sizeof page);
    if ((r = os_pread_all(st->fd, page, *file_size < PAGE ? (size_t)*file_size : PAGE, 0)) < 0)
        return r;
    if ((r = hdr_pick(page, &h)) < 0)
        return r;
    if (*file_size < 2 * PAGE)
        return -TM_ETRUNCATED;
    if ((r = window_check(h.base, h.max_size)) < 0)
        return r;
    store_set_hdr(st, &h);
    st->log.store_id = h.store_id;
    st->log.max = h.max_size;
    st->base = (char *)(uintptr_t)h.base;
    st->max = h.max_size; /* the store's own: every opener maps it all */
    if (!first && h.version < FORMAT_VERSION)
        return -EBUSY; /* open elsewhere by an older library, which upgrading would break */
    return open_log(st, first);
}

/* A fresh lock file's committed state: what recovery left, or what the
 * last run of this boot left, or else only the checkpoint (S3); then the
 * log's valid records after it, durable but not applied: a writer heals
 * them before anyone reads. */
/* Whether the kept state describes these files: its last record is where
 * it says, with its checksum (the files may have been replaced meanwhile). */
static int kept_fits(tm_store *st)
{
    struct tm_shared *sh = st->lk.sh;
    if (sh->gen != st->hdr.gen || sh->applied > sh->seq || sh->applied_off > sh->log_off ||
        sh->seq < st->hdr.ckpt_seq || sh->applied < st->hdr.ckpt_seq || sh->applied_off < LOG_START)
        return 0;
    if (sh->seq == st->hdr.ckpt_seq)
        return sh->log_off == LOG_START;
    return log_is(&st->log, sh->last_off, sh->seq, sh->last_sum, sh->log_off);
}

static int init_shared(tm_store *st, int recovered, int kept, uint64_t arena)
{
    struct tm_shared *sh = st->lk.sh;
    uint64_t off, seq, size;
    long n;
    if (recovered || !kept || !kept_fits(st)) {
        sh->gen = st->hdr.gen;
        sh->seq = sh->applied = st->hdr.ckpt_seq;
        sh->log_off = sh->applied_off = LOG_START;
        sh->size = arena;
    }
    off = sh->log_off, seq = sh->seq, size = sh->size;
    if ((n = recovered ? 0 : log_replay(&st->log, -1, 0, &off, &seq, &size)) < 0)
        return (int)n;
    sh->seq = seq;
    sh->size = size;
    sh->log_off = off;
    return 0;
}

/* Joins the lock file; the first opener recovers meanwhile, alone. */
static int attach(tm_store *st, int first, uint64_t file_size)
{
    uint8_t page[PAGE];
    uint64_t arena = 0;
    int fresh, short_file = 0, r, e;
    if ((r = lock_attach(&st->lk, st->lock_path, st->mode, st->read_only, st->hdr.store_id, &fresh)) < 0)
        return r;
    if (first)
        r = store_recover(st, file_size, &arena);
    else if ((r = os_pread_all(st->fd, page, PAGE, PAGE)) == 0)
        r = super_check((struct tm_super *)page, &st->hdr, file_size, NULL);
    /* A store file shorter than its superblock says is what a crash leaves
     * of a growth whose new size did not reach the disk while the
     * superblock's page did (S1: its record is durable).  It is truncated
     * only if no commit waits in the log: replaying them sets the size
     * (reads wait for that; read-only, EROFS). */
    if (r == -TM_ETRUNCATED && !first)
        short_file = 1, r = 0;
    if (r == 0 && fresh && !first)
        arena = ((struct tm_super *)page)->size;
    /* S3: a checkpoint killed between writing its header slot and syncing
     * it leaves a generation the page cache holds and the disk may not;
     * the next commit would log over the records the disk still needs.
     * So the lock file's first user syncs the store file, unless its
     * recovery made a durable checkpoint (which synced it); only a durable
     * writer must succeed (a read-only file system may refuse it). */
    int full = st->log.sync == TM_SYNC_FULL;
    if (r == 0 && fresh && !(full && st->n_ckpts) && (e = os_fdatasync(st->fd)) < 0 && full && !st->read_only)
        r = e;
    if (r == 0 && fresh)
        r = init_shared(st, first, fresh == 2, arena);
    if (r == 0 && short_file && st->lk.sh->applied == st->lk.sh->seq)
        r = -TM_ETRUNCATED;
    if (fresh)
        lock_attach_done(&st->lk);
    st->seen_seq = st->lk.sh->seq;
    st->log.off = st->lk.sh->log_off;
    return r;
}

/* The part of the open under open_mu: st->fd is open; on failure the caller
 * destroys st (its fd was parked when the store is open here already). */
static int open_locked(tm_store *st)
{
    uint64_t file_size;
    int first = 0, r;
    if (registry_park(st->fd)) {
        st->fd = -1;
        return -EBUSY;
    }
    if ((r = lock_open(&st->lk, st->fd, st->read_only, &first)) < 0 || (r = validate(st, first, &file_size)) < 0 ||
        (r = attach(st, first, file_size)) < 0 || (r = registry_add(st)) < 0)
        return r;
    st->lk.idx = st->slot;
    r = track_alloc(st, st->track);
    if (r == 0 && !st->read_only)
        r = diff_open(st);
    if (r == 0)
        r = map_arena(st, 0);
    if (r == 0)
        r = track_start(st);
    if (r == 0 && first)
        r = lock_open_downgrade(&st->lk);
    if (r < 0) {
        if (r != -TM_EADDR && st->mapped)
            os_munmap(st->base, st->max);
        registry_remove(st);
    }
    return r;
}

static void destroy(tm_store *st)
{
    track_free(st);
    diff_close(st);
    lock_detach(&st->lk);
    log_close(&st->log);
    while (st->nparked > 0)
        os_close(st->parked[--st->nparked]);
    if (st->fd >= 0)
        os_close(st->fd); /* drops this process's locks on the file */
    free_path(st->path);
    free_path(st->log_path);
    free_path(st->lock_path);
    os_free(st, sizeof *st);
}

/* Opens the store file, creating it when it is missing (unless told not
 * to).  A log without its store is kept, not created over: it may hold the
 * only copy of a lost store's commits, and a new store would refuse it
 * anyway (-EEXIST). */
static int open_file(tm_store *st, const tm_options *o)
{
    int lone_log, r;
    if ((st->fd = os_open(st->path, st->read_only ? O_RDONLY : O_RDWR, 0)) != -ENOENT || o->no_create ||
        st->read_only)
        return st->fd;
    lone_log = os_open(st->log_path, O_PATH, 0); /* exists, readable or not */
    if (lone_log >= 0)
        os_close(lone_log);
    r = lone_log >= 0 ? 0 : create_file(st->path, o);
    if (r < 0 && r != -EEXIST)
        return r;
    st->fd = os_open(st->path, O_RDWR, 0); /* made here, or by another opener meanwhile */
    return st->fd == -ENOENT && lone_log >= 0 ? -EEXIST : st->fd;
}

int store_open(const char *path, const tm_options *o, tm_store **out)
{
    tm_store *st;
    int r;
    __atomic_store_n(&tm_route_opened, 1, __ATOMIC_SEQ_CST);
    if (tm_route_opening && tm_route_opening() < 0) {
        os_say("a store cannot open:", "the preload could not route this process's malloc again (mprotect refused)",
               0);
        return -ENOMEM;
    }
    if (!(st = os_alloc(sizeof *st)))
        return -ENOMEM;
    st->fd = st->log.fd = st->lk.lock_fd = -1;
    st->trk.pm_fd = st->trk.hot.uffd = -1;
    pthread_mutex_init(&st->refresh_mu, NULL);
    st->slot = -1;
    st->log.sync = o->sync;
    st->mode = o->mode ? o->mode : 0600;
    st->max = o->max_size;
    st->read_only = o->read_only != 0;
    st->pid = os_pid();
    if ((st->track = track_choice()) < 0) {
        r = st->track;
        os_free(st, sizeof *st);
        return r;
    }
    st->path = dup_path(path, "");
    st->log_path = dup_path(path, ".log");
    st->lock_path = dup_path(path, ".lock");
    if (!st->path || !st->log_path || !st->lock_path) {
        destroy(st);
        return -ENOMEM;
    }
    if ((r = open_file(st, o)) < 0) {
        destroy(st);
        return r;
    }
    registry_open_lock();
    if ((r = open_locked(st)) < 0)
        destroy(st); /* its close must not drop the locks of an open that follows */
    registry_open_unlock();
    if (r == 0)
        *out = st;
    return r;
}

/* ---- fork and close ---- */

/* After fork, in the child: a fresh mapping (the parent's uncommitted pages
 * are dropped) and no inherited transaction, locks or readers. */
static int revive_locked(tm_store *st)
{
    int r;
    tx_forget(st);
    track_forget(st);
    pthread_mutex_init(&st->refresh_mu, NULL);
    st->pid = os_pid();
    if ((r = lock_revive(&st->lk)) < 0 || (r = map_arena(st, 1)) < 0 || (r = track_start(st)) < 0) {
        st->state = ST_POISONED;
        return r;
    }
    st->seen_seq = st->lk.sh->seq;
    st->state = ST_READY;
    return 0;
}

int store_revive(tm_store *st)
{
    int r = 0;
    registry_open_lock(); /* a child's threads may race to revive it */
    if (st->state == ST_FORKED)
        r = revive_locked(st);
    registry_open_unlock();
    return r;
}

/* A commit whose apply failed is written again (S2), by healing. */
static int reapply(tm_store *st)
{
    int r = lock_writer(&st->lk);
    if (r >= 0) {
        r = store_heal(st, r);
        lock_writer_release(&st->lk);
    }
    return r;
}

/* Closes a handle that owns no transaction: a durable commit whose apply
 * failed is written again first (S2), and the last handle of all processes
 * checkpoints.  The handle goes whatever happens; the error is returned. */
int store_close(tm_store *st)
{
    int r = 0;
    registry_open_lock();
    if (st->state == ST_APPLY_PENDING)
        r = reapply(st);
    if (st->state != ST_FORKED && r == 0) /* a child's inherited handle holds no lock */
        r = store_checkpoint_if_last(st);
    registry_remove(st);
    os_munmap(st->base, st->max);
    destroy(st);
    registry_open_unlock();
    return r;
}
