/*
 * internal.h — the core's types, and its cross-file functions layer by layer.
 *
 * Glossary
 *   store       a file (and its redo log, "<path>.log") mapped at a fixed
 *               base address; tm_store is an open handle on it.
 *   arena       the mapped bytes [base, base + size): the whole store file.
 *               Page 0 is the header, page 1 the superblock, the heap
 *               follows (format.h).  The arena lies inside a PROT_NONE
 *               reservation of max bytes so that it can grow in place.
 *   page        4 KiB, the unit of protection, dirty tracking and logging.
 *   transaction a write transaction: one writer per store across threads
 *               and processes; its changes live in private copy-on-write
 *               pages until commit.  A read transaction excludes writers.
 *   dirty page  a page the current transaction wrote; found by the tracker
 *               (track.c).
 *   kept copy   a private copy that outlived its commit: it equals the
 *               file, so a later write to it costs no copy (kept.c).
 *   log record  the byte ranges one commit changed, with a checksum,
 *               appended to the redo log; durable record = committed
 *               transaction (diff.c, format.h).
 *   apply       writing a committed record's bytes into the store file,
 *               while no reader is inside (lock.c).
 *   lock file   "<path>.lock": the committed state, the writer's mutex and
 *               the reader slots, shared by every process that has the
 *               store open (lock.c).
 *   checkpoint  after the store file is synced, a new header generation
 *               makes every log record obsolete; the log restarts.
 *   module      a program or shared library loaded in the process; its
 *               code and static data are what function pointers, vtables
 *               and method tables in the arena point into.
 *   layout      where each module was loaded: the store's record of it
 *               says which modules its data may point into (layout.c).
 *
 * Layers (a file calls only into its own layer or those below it):
 *   1  os.c                          system calls (os.h)
 *   2  checksum.c format.c route.c   on-disk format (format.h), routing (route.h)
 *   3  log.c replay.c lock.c robust.c registry.c pagemap.c hot.c kept.c track.c
 *      diff.c modules.c
 *   4  store.c checkpoint.c          files, mapping, growth, recovery
 *   5  heap.c heap_smap.c heap_large.c heap_bins.c heap_check.c
 *      fault.c
 *   6  tx.c read.c layout.c          write and read transactions; the
 *                                    code layout they record and check
 *   7  open.c alloc.c root.c default.c interpose.c inspect.c error.c
 *                                    the public calls, and the tools' (inspect.h)
 */
#ifndef TMF_INTERNAL_H
#define TMF_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "format.h"
#include "os.h"
#include "route.h"
#include "tmfalloc.h"

#define MAX_STORES 16
#define DEFAULT_BASE ((uintptr_t)0x200000000000ull) /* 32 TiB: far from heap, stacks, libraries */
#define DEFAULT_MAX ((size_t)64 << 30)
#define DEFAULT_INITIAL ((size_t)1 << 20)
#define MIN_GROWTH ((size_t)1 << 20)
#define BULK_PAGES 16384             /* past this many dirty pages, stop splitting mappings */
#define KEEP_MAX 1024                /* private copies kept after commits, at most */
#define BULK_MIN 16                  /* ... or past this many and 1/BULK_RATIO of the arena: */
#define BULK_RATIO 1024              /* a scan of the arena now costs less than the faults so far */
#define CKPT_BYTES ((uint64_t)64 << 20) /* checkpoint when the log passes this */
#define LOG_CHUNK ((uint64_t)1 << 20)   /* the log grows by written zeros in these steps */
#define RING_MIN_COMMITS 256            /* a ring that fills faster doubles */

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* ---- the handle ---- */

/* One range of a record to write: its header, and where its bytes are. */
struct log_piece {
    struct log_range g;
    const void *src;
};

/* The redo log of a store (log.c). */
struct tm_log {
    int fd;
    tm_sync sync;
    uint64_t store_id;
    uint64_t gen;        /* the header's current generation */
    uint64_t max;        /* records describe arenas of at most max bytes */
    uint64_t off;        /* where the next record goes */
    uint64_t len;        /* length of the file as last seen */
    uint64_t last_off, last_sum; /* the last record written or replayed: where, its checksum */
    const char *map;     /* the file's first map_len bytes, read-only, shared: */
    uint64_t map_len;    /* record headers are looked up there, not read */
    char *wmap;          /* TMF_SYNC=none: the ring, writable and shared (log.c) */
};

/* What every process that has a store open shares, in its lock file
 * "<path>.lock" (lock.c), beside the writer's mutex and the reader slots.
 * It is lost only when the last process closes or dies; the first to
 * attach again rebuilds it from the files (store.c).  The fields change
 * only under the writer's mutex. */
struct tm_shared {
    uint64_t magic;
    uint64_t store_id;
    uint32_t version, nreaders;
    pthread_mutex_t writer;       /* robust, process-shared: the one writer */
    _Atomic uint64_t seq;         /* the last durable commit */
    _Atomic uint64_t applied;     /* commits whose bytes are in the store file */
    _Atomic uint64_t applied_off; /* log offset just past the last applied record */
    _Atomic uint64_t log_off;     /* where the next record goes */
    _Atomic uint64_t size;        /* the committed arena size */
    _Atomic uint64_t gen;         /* the header's generation */
    uint64_t last_off, last_sum;  /* the record of commit seq: where, its checksum */
    _Atomic uint32_t resync;      /* a sync of the store file failed since the checkpoint */
    _Atomic uint32_t nslots;      /* reader slots ever claimed: the rest are free */
    _Atomic uint32_t applying;    /* a commit is being applied (futex word) */
    _Atomic uint32_t apply_waiters;
    _Atomic uint32_t leave_seq;   /* bumped when a reader leaves while a writer waits (futex) */
    _Atomic uint32_t writer_waits;
    char boot[36];                /* the system's boot id when it was set up */
    /* The writer holding the mutex (lock.c, unstick): who is the count of
     * holders recorded << 32 | the holder's thread, 0 when none is, set
     * after pid and mark once it holds the mutex, cleared before it lets go. */
    _Atomic uint64_t writer_who;
    _Atomic uint64_t writer_mark; /* the holder's handle (tm_locks.mark) */
    _Atomic int32_t writer_pid;   /* its process, as its own PID namespace numbers it */
};

#define LOCK_READERS 1024 /* reader slots: threads reading a store at once */

/* The locks of a store (lock.c). */
struct tm_locks {
    int fd;                       /* the store file: LOCK_OPEN, LOCK_DETACHED */
    int lock_fd;                  /* the lock file; -1 when detached */
    int detached;                 /* read-only, without a writable lock file */
    struct tm_shared *sh;         /* the lock file's mapping (private when detached) */
    int idx;                      /* the handle's registry slot */
    unsigned gen;                 /* unique per handle and process */
    pid_t pid;
    uint64_t mark;                /* random, per handle and process: unlike pid, the same in every PID namespace */
    _Atomic uint32_t local_writer;  /* this process's writer is in (futex word) */
    _Atomic uint32_t local_waiters; /* readers asleep on local_writer, or about to be */
    _Atomic uint32_t own_leave;   /* bumped when a reader leaves while local_writer waits */
    _Atomic uint32_t own_waits;
    pthread_mutex_t mu;           /* claiming reader slots */
    unsigned nowned;
    uint16_t owned[LOCK_READERS]; /* the slots this process claimed */
};

/* How the tracker finds the dirty pages (track.c). */
enum track_mode {
    TRACK_PAGES,   /* a first-write fault per page, each page listed */
    TRACK_BULK,    /* the arena writable; the page map lists the copies */
    TRACK_SETTLED, /* bulk, at the end: protected again and listed */
};

/* The hot set (hot.c): pages tracked by the kernel through userfaultfd. */
#define HOT_RANGES 16   /* registered ranges, each a mapping the scan pays for */
#define HOT_PAGES 1024  /* hot pages, each a private copy */
#define HOT_OPEN 32     /* open pages beyond those written lately, each compared twice a transaction */
#define HOT_IDLE 64     /* commits that change no hot page, after which the set goes back to cold */
#define HOT_HOLD 64     /* commits a set that filled up again is kept before it may reset, doubled each time */
#define HOT_HOLD_MAX 16384
#define HOT_WINDOW 64   /* commits over which a large set's use is judged */
/* The next wait of HOT_HOLD, doubled up to HOT_HOLD_MAX, after wait. */
static inline size_t hot_longer(size_t wait)
{
    return !wait ? HOT_HOLD : wait < HOT_HOLD_MAX ? 2 * wait : HOT_HOLD_MAX;
}
struct hot {
    int uffd;            /* -1: pages are tracked by their faults alone */
    int reset;           /* the set is full with pages worth adding: demote at commit */
    size_t open;         /* pages left writable by the last commit (hot.c: open pages) */
    size_t stay;         /* of those, opened again after the last write-protection */
    int rearmed;         /* this commit's scan write-protected the open pages */
    size_t refused;      /* promotions refused since the last reset: too far from every range */
    size_t idle;         /* commits in a row that changed no hot page */
    size_t commits;      /* commits since the set last reset */
    size_t hold;         /* commits before a full set may reset again (hot.c) */
    size_t window, hits; /* commits in this window of HOT_WINDOW, and those that changed a hot page */
    size_t quiet;        /* commits after a retirement for little use without promotions (track.c) */
    size_t nranges, npages;
    uint64_t start[HOT_RANGES], end[HOT_RANGES]; /* sorted page ranges [start, end) */
};

#define SAVED 16        /* cold pages saved at their first write, for the diff */
#define DIFF_PAGES 256  /* past this many dirty pages a commit logs them whole, uncompared (diff.c) */
struct tm_tracker {
    volatile int mode;   /* enum track_mode; the fault handler changes it */
    int want_uffd;       /* TMF_TRACK: TM_TRACK_PROTECT, _UFFD or _AUTO */
    struct hot hot;
    int pm_fd;           /* /proc/self/pagemap, for bulk mode; -1 until needed */
    uint64_t *dirty;     /* page numbers, capacity dirty_cap() (track.c) */
    volatile size_t ndirty; /* the fault handler appends: always reload */
    size_t ncold;        /* first-write faults of cold pages in this transaction */
    char *before;        /* SAVED pages as they were before this transaction's first write */
    uint64_t saved[SAVED]; /* ... which pages, in the order of their faults */
    volatile size_t nsaved;
    uint64_t *kept;      /* sorted pages whose copies outlived their commit */
    size_t nkept;        /* capacity 2 * KEEP_MAX (the second half: scratch) */
    size_t evict_at;     /* where the next eviction from the kept list starts */
};

/*
 * The life of a handle (st->state):
 *
 *   tm_open --> READY --begin--> WRITING --commit, abort--> READY
 *                 ^                 |  |
 *                 |    record failed|  |apply failed (the commit is durable)
 *                 |    (rolled back)v  v
 *                 |          POISONED  APPLY_PENDING (keeps writer + data locks)
 *                 |                 |  |
 *                 |                 v  v
 *                 |               tm_close (reapplies; last closer checkpoints)
 *                 |
 *   fork() --> FORKED (the child's copy, any state) --first tm_* call--> READY
 *
 * A checkpoint failing after a commit also poisons.  A poisoned handle
 * refuses transactions (TM_EPOISONED) until closed and reopened.  Only the
 * owning thread moves a handle in and out of WRITING; other threads read
 * the state to refuse or revive.  tx_reset() is the one place that forgets
 * a transaction.
 */
enum store_state { ST_READY, ST_WRITING, ST_POISONED, ST_APPLY_PENDING, ST_FORKED };

struct tm_store {
    /* files (store.c) */
    char *path, *log_path, *lock_path;
    int fd;
    dev_t dev;
    ino_t ino;
    unsigned mode;       /* permission bits of files we create */
    int read_only;       /* tm_options.read_only: never writes either file */
    int track;           /* TMF_TRACK (track.c) */
    pid_t pid;           /* process that opened or revived the handle */
    int slot;            /* index in the registry */
    int parked[4];       /* fds of refused second opens: closing them would drop our locks */
    int nparked;

    /* the mapping */
    char *base;
    size_t max;          /* bytes reserved at base */
    size_t mapped;       /* [base, base+mapped) is readable */

    _Atomic int state;   /* enum store_state */
    struct hdr_slot hdr; /* the current header slot */
    struct tm_log log;
    struct tm_locks lk;
    struct tm_tracker trk;

    /* the write transaction (tx.c) */
    atomic_int tx_tid;   /* owning thread, 0 when none */
    int tx_depth;
    size_t tx_size0;     /* arena size at begin */
    const char *view;    /* the store file, shared: the committed bytes (diff.c) */
    struct log_piece *pieces; /* what the commit changed (diff.c), capacity max/PAGE */
    uint64_t *applied;   /* pages applied lately, plus one, by page % APPLIED (diff.c) */

    /* what this process's mapping and private copies reflect */
    _Atomic uint64_t seen_seq;
    pthread_mutex_t refresh_mu; /* readers catching up */

    /* counters of this handle */
    uint64_t n_syncs, n_ckpts, n_commits;
    uint64_t ckpt_commits; /* n_commits at the last checkpoint */
};

static inline struct tm_super *super_of(const tm_store *st)
{
    return (struct tm_super *)(st->base + PAGE);
}

/* Does the calling thread own st's write transaction? */
static inline int tx_owned(const tm_store *st)
{
    return st->tx_tid == os_tid();
}

/* Forgets the write transaction (its end, or a forked child's revival). */
static inline void tx_forget(tm_store *st)
{
    st->tx_tid = 0;
    st->tx_depth = 0;
}

/* ---- 2: route.c (route.h) ---- */
void route_enter(tm_store *st);
void route_leave(tm_store *st, tm_store *next);
void route_forget(void);
void route_set_bounds(uintptr_t lo, uintptr_t hi);

/* ---- 3: log.c ---- */
int log_create(struct tm_log *lg);
int log_open_check(struct tm_log *lg);
void log_close(struct tm_log *lg);
int log_refresh_len(struct tm_log *lg);
/* Does a record of len bytes fit at lg->off without extending the ring (or
 * is the ring empty)?  0 means: checkpoint first (log.c L5). */
int log_fits(struct tm_log *lg, uint64_t len);
int log_grow_ring(struct tm_log *lg);
/* After a checkpoint: records restart at LOG_START; a file grown past twice
 * the checkpoint threshold is cut back. */
void log_restart(struct tm_log *lg);
int log_append(struct tm_log *lg, uint64_t seq, uint64_t size, const struct log_piece *p, size_t n,
               uint64_t *len_out);
int log_invalidate(struct tm_log *lg, uint64_t off);
/* Nonzero when a record with sequence number seq begins at off (header
 * checks only: cheap enough for every transaction start). */
int log_pending(struct tm_log *lg, uint64_t off, uint64_t seq);
/* Whether the record at off has sequence number seq, checksum sum, and
 * ends at end (its header checked only). */
int log_is(struct tm_log *lg, uint64_t off, uint64_t seq, uint64_t sum, uint64_t end);
/* Whether a whole valid record (L1, checksum included) with sequence
 * number seq begins at off: 1, 0, or a negative errno. */
int log_valid(struct tm_log *lg, uint64_t off, uint64_t seq);
/* Replays valid records from *off with sequence numbers from *seq + 1 into
 * the store file store_fd; returns the number replayed or a negative errno;
 * *off, *seq, *size advance past them. */
long log_replay(struct tm_log *lg, int store_fd, uint64_t keep, uint64_t *off, uint64_t *seq, uint64_t *size);

/* ---- 3: replay.c: record bodies ----
 * A body of up to REPLAY_BUF bytes is read into buf once (*whole = 1) and
 * applied from there.  verify: 1 valid, 0 not, or a negative errno. */
#define REPLAY_BUF ((4u << 20) + (4u << 20) / PAGE * 8)
int rec_verify(int log_fd, uint64_t off, const struct log_rec *rec, uint8_t *buf, int *whole);
int rec_apply(int log_fd, int store_fd, uint64_t off, const struct log_rec *rec, uint8_t *buf, int whole);

/* ---- 3: pagemap.c ---- */
int pagemap_open(tm_store *st);
int pagemap_copies(tm_store *st, uint64_t *out, size_t *n);
int pagemap_written(tm_store *st, uint64_t from, uint64_t to, uint64_t *out, size_t *n, int wp);

/* ---- 3: hot.c ---- */
int hot_open(tm_store *st);
void hot_close(tm_store *st);
int hot_has(const tm_store *st, uint64_t page);
int hot_promote(tm_store *st, uint64_t page);
size_t hot_reopen(tm_store *st, uint64_t from, uint64_t to);
int hot_scan(tm_store *st, uint64_t *out, size_t *n);
int hot_peek(tm_store *st, uint64_t *out, size_t *n);
size_t hot_changed(const tm_store *st, uint64_t *pages, size_t n);
int hot_resume(tm_store *st, uint64_t *scratch);
void hot_drop(tm_store *st);
int hot_demote(tm_store *st);

/* ---- 3: kept.c ---- */
/* Calls fn on each run of consecutive pages of the sorted pages[0..n);
 * stops at the first error and returns it. */
int pages_for_runs(tm_store *st, const uint64_t *pages, size_t n, int (*fn)(char *, size_t));
/* In-place heapsort (the commit path must not allocate). */
void sort_pages(uint64_t *v, size_t n);
/* Drops the private copies of the sorted pages[0..n). */
void kept_discard(tm_store *st, const uint64_t *pages, size_t n);
void kept_drop_all(tm_store *st);
void kept_drop_clean(tm_store *st);
int kept_has(const tm_store *st, uint64_t page);
void kept_remove_hot(tm_store *st);
void kept_evict(tm_store *st, const uint64_t *d, size_t n, size_t m);

/* ---- 3: diff.c ---- */
int diff_open(tm_store *st);
void diff_close(tm_store *st);
size_t diff_pages(tm_store *st, const uint64_t *pages, size_t n);
int diff_apply(tm_store *st, const struct log_piece *p);

/* ---- 3: lock.c ---- */
int lock_open(struct tm_locks *lk, int fd, int read_only, int *first);
int lock_open_downgrade(struct tm_locks *lk);
int lock_open_try_last(struct tm_locks *lk);
int lock_open_held(int fd);
/* Joins the lock file (or, read-only without write access to it, goes it
 * alone).  *fresh: no other process uses it, and its state is for the
 * caller to set before lock_attach_done lets others in; 2: the state of
 * the last run, which was of this boot, is kept. */
int lock_attach(struct tm_locks *lk, const char *path, unsigned mode, int read_only, uint64_t store_id,
                int *fresh);
void lock_attach_done(struct tm_locks *lk);
void lock_detach(struct tm_locks *lk);
void lock_fork_child(struct tm_locks *lk);
int lock_revive(struct tm_locks *lk);
/* The writer: 0, 1 when the last holder died (heal), a negative errno;
 * _try: -EBUSY when held. */
int lock_writer(struct tm_locks *lk);
int lock_writer_try(struct tm_locks *lk);
void lock_writer_release(struct tm_locks *lk);
/* Readers of every process out while a commit writes the store file. */
void lock_apply_begin(struct tm_locks *lk);
void lock_apply_end(struct tm_locks *lk);
/* 0 once inside; -EAGAIN when a commit's apply takes too long (its writer
 * may be dead) or all slots are taken. */
int lock_read_enter(struct tm_locks *lk);
void lock_read_enter_writer(struct tm_locks *lk);
void lock_read_leave(struct tm_locks *lk);
unsigned lock_readers_inside(struct tm_locks *lk);

/* ---- 3: robust.c: the writer's mutex ---- */
#define LF_PID ((off_t)1 << 32) /* lock file byte LF_PID + pid: read-locked by each process attached */
#define STUCK_NS 20000000l      /* a reader or writer that long in the way may be dead */
/* lock_writer's taking and letting go of the mutex itself. */
int robust_take(struct tm_locks *lk, int wait);
void robust_release(struct tm_locks *lk);
/* Whether a thread tid of the handle marked mark, in process pid (as its
 * PID namespace numbers it), may be alive. */
int lock_holder_alive(const struct tm_locks *lk, uint64_t mark, pid_t pid, pid_t tid);

/* ---- 3: registry.c ---- */
extern tm_store *_Atomic store_registry[MAX_STORES];
extern _Atomic unsigned registry_fork_gen; /* bumped in every forked child */
void registry_open_lock(void);
void registry_open_unlock(void);
int registry_add(tm_store *st);
void registry_remove(tm_store *st);
int registry_park(int fd);
tm_store *registry_find(uintptr_t addr);
void registry_fork_prepare(void);
void registry_fork_parent(void);
void registry_fork_child(void);

/* ---- 3: track.c ---- */
enum { TM_TRACK_PROTECT, TM_TRACK_UFFD, TM_TRACK_AUTO };
int track_choice(void);
int track_alloc(tm_store *st, int track);
int track_start(tm_store *st);
int track_uses_uffd(const tm_store *st);
void track_free(tm_store *st);
int track_begin(tm_store *st);
int track_fault(tm_store *st, uint64_t page);
const char *track_before(const tm_store *st, uint64_t page);
int track_grow_prot(const tm_store *st);
int track_settle(tm_store *st);
long track_count(tm_store *st);
const uint64_t *track_copies(tm_store *st, size_t *n);
int track_protect(tm_store *st);
int track_keep(tm_store *st, size_t npieces);
int track_drop(tm_store *st);
void track_drop_copies(tm_store *st);
int track_rollback(tm_store *st);
void track_fork_child(tm_store *st);
void track_forget(tm_store *st);

/* ---- 3: modules.c: this process's modules ---- */
struct mod {
    uint64_t base;                  /* load address */
    unsigned nseg, id_len, path_len;
    uint64_t seg[LAYOUT_SEGS][2];   /* PT_LOAD ranges widened to pages, increasing */
    uint8_t id[LAYOUT_ID_MAX];      /* build id */
    const char *path;               /* in names */
};
#define MODULES_NAMES (64u << 10)
struct modules {
    unsigned long long adds, subs;  /* dl_iterate_phdr's counters when listed */
    uint64_t lo, hi;                /* the hull of every module's ranges */
    unsigned n;
    size_t names_used;
    struct mod m[LAYOUT_MODS];
    char names[MODULES_NAMES];
};
/* The current list, locked until modules_unlock; NULL (unlocked) when
 * there is no memory for it. */
const struct modules *modules_lock(void);
void modules_unlock(void);
/* Whether w lies in a module's ranges. */
int modules_hold(const struct modules *ms, uint64_t w);
/* The index of the module that is the recorded one, at the same address;
 * -1 when none is. */
int modules_find(const struct modules *ms, const struct layout_mod *rm);
/* What became of a recorded module here, in words ("this process loads it
 * at 0x..."). */
void modules_fate(const struct modules *ms, const struct layout_mod *rm, char *out, size_t len);
/* A module as a record holds it: its bytes, and writing them (returns the
 * end). */
size_t modules_bytes(const struct mod *m);
char *modules_put(char *out, const struct mod *m);
/* n bytes as 2n hexadecimal digits and a NUL. */
void modules_hex(char *out, const uint8_t *p, unsigned n);
/* Whether [p, end) holds an aligned word pointing into glibc's main heap. */
int modules_glibc_heap(const char *p, const char *end);

/* ---- 4: store.c, checkpoint.c ---- */
int store_open(const char *path, const tm_options *o, tm_store **out);
int store_close(tm_store *st);
int store_revive(tm_store *st);
int store_catch_up(tm_store *st);
int store_map_size(tm_store *st, size_t size);
int store_grow(tm_store *st, size_t need);
int store_shrink(tm_store *st, size_t size);
void store_set_hdr(tm_store *st, const struct hdr_slot *h);
int hdr_current(tm_store *st);
int store_checkpoint(tm_store *st);
int store_checkpoint_at(tm_store *st, uint64_t seq, uint64_t size);
int store_heal(tm_store *st, int died);
int store_recover(tm_store *st, uint64_t file_size, uint64_t *arena);
int store_checkpoint_if_last(tm_store *st);

/* ---- 5: heap.c, heap_check.c (layout and invariants in heap.h) ----
 * All but heap_stats, heap_check and heap_usable need the caller to own the
 * write transaction; heap_alloc fails with TM_ENOTX otherwise, heap_free and
 * heap_realloc report the misuse and abort, as they do for a double free or
 * a pointer the heap never returned.  align is a power of two. */
void *heap_alloc(tm_store *st, size_t size, size_t align);
void heap_free(tm_store *st, void *p);
void *heap_realloc(tm_store *st, void *p, size_t size); /* p != NULL, size > 0 */
size_t heap_usable(tm_store *st, const void *p);
int heap_stats(tm_store *st, tm_stats_t *out); /* 0 or -TM_ECORRUPT */
int heap_check(tm_store *st, char *msg, size_t len); /* 0, -TM_ECORRUPT or -ENOMEM */

/* ---- 5: fault.c ---- */
int fault_install(void);
int fault_touch(tm_store *st, void *p, size_t len);

/* ---- 6: tx.c, read.c ---- */
/* Whether this thread has a read transaction open on st. */
int read_active(const tm_store *st);
void read_relock(tm_store *st);
/* Drops stale kept copies before a read outside any transaction. */
void read_refresh(tm_store *st);

/* ---- 6: layout.c ---- */
/* At open: -TM_ELAYOUT (said on stderr) when the data point into a
 * recorded module this process does not have where it was; -TM_ECORRUPT
 * for a damaged record. */
int layout_open(tm_store *st);
/* At commit, after the diff: 1 when the record must be written first
 * (layout_write, then the diff again), else 0. */
int layout_check(tm_store *st, const struct log_piece *p, size_t n);
int layout_write(tm_store *st);

/* ---- 7: interpose.c ---- */
/* Resolves the wrapped libc calls (and brings the wrappers into a static
 * link: tm_open calls it). */
void interpose_resolve(void);

/* The public form of an internal result (0 or a negative errno or
 * -TM_E code): 0, or the positive code. */
static inline int tm__err(int r)
{
    return -r;
}

#endif
