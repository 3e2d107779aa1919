/*
 * internal.h — the core's types and cross-file functions.
 *
 * Glossary
 *   store       a file (and its redo log, "<path>.log") mapped at a fixed
 *               base address; tm_store is an open handle on it.
 *   arena       the mapped bytes [base, base + size): the whole store file.
 *               Page 0 is the header, page 1 the superblock, the heap
 *               follows.  The arena lies inside a PROT_NONE reservation of
 *               max bytes so that it can grow in place.
 *   page        4 KiB, the unit of protection, dirty tracking and logging.
 *   header      page 0: magic, version, base, store id, and the checkpoint
 *               (generation, commit sequence, size), in two checksummed
 *               slots written alternately, never through the mapping.
 *   superblock  page 1: commit sequence, arena size, log position, root and
 *               heap state.  An ordinary transactional page.
 *   transaction a write transaction: one writer per store across threads
 *               and processes; its changes live in private copy-on-write
 *               pages until commit.  A read transaction excludes writers.
 *   dirty page  a page the current transaction wrote; found by a first-write
 *               fault (per-page mode) or, past BULK_PAGES, by scanning the
 *               page map for private copies (bulk mode).
 *   log record  the dirty pages of one commit with a checksum, appended to
 *               the redo log; durable record = committed transaction.
 *   apply       writing a committed record's pages into the store file, under
 *               the exclusive data lock, superblock last.
 *   checkpoint  after the store file is synced, a new header generation
 *               makes every log record obsolete; the log restarts.
 */
#ifndef TMF_INTERNAL_H
#define TMF_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "tmfalloc.h"

#define PAGE 4096u
#define PAGE_SHIFT 12
#define HDR_SLOT_SIZE 512u  /* one sector: the two slots never share one */
#define FORMAT_VERSION 4u     /* 2: the heap's recent lists (heap.h H7); 3: heap_prio; 4: big lists, span map (H8, H9) */
#define MIN_FORMAT_VERSION 1u /* older versions read, and upgraded by their first read-write opener */
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

/* Lock bytes in the store file (POSIX record locks: per process, dropped at
 * exit, not inherited across fork). */
enum { LOCK_OPEN = 0, LOCK_WRITER = 1, LOCK_DATA = 2 };

#define TLS __attribute__((tls_model("initial-exec"))) __thread
extern TLS int tm_tls_tx;
extern TLS tm_store *tm_tls_route;

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* ---- on-disk structures (little-endian, x86-64 layout) ---- */

#define HDR_MAGIC "TMFSTORE"
struct hdr_slot {
    char magic[8];
    uint32_t version;
    uint32_t page_size;
    uint64_t base;       /* address the arena is mapped at */
    uint64_t max_size;   /* address space reserved for growth */
    uint64_t store_id;   /* random; ties the log to its store */
    uint64_t gen;        /* checkpoint generation, salt of the log records */
    uint64_t ckpt_seq;   /* commit sequence number at the checkpoint */
    uint64_t ckpt_size;  /* arena size at the checkpoint */
    uint64_t checksum;   /* of the bytes above */
};

#define SUPER_MAGIC 0x5245505553464d54ull /* "TMFSUPER" */
#define SUPER_HEAP_BYTES 3072
struct tm_super {
    uint64_t magic;
    uint64_t seq;        /* commits so far */
    uint64_t size;       /* arena size in bytes, a multiple of PAGE */
    uint64_t log_gen;    /* generation of the record that wrote this page */
    uint64_t log_tail;   /* log offset just past that record */
    uint64_t root;       /* address of the root object, or 0 */
    uint64_t root_size;
    uint64_t checksum;   /* of the fields above */
    uint8_t heap[SUPER_HEAP_BYTES]; /* the heap's own state */
};

/* ---- the handle ---- */

struct tm_store {
    char *path;
    char *log_path;
    int fd, log_fd;
    char *base;
    size_t max;          /* bytes reserved at base */
    size_t mapped;       /* [base, base+mapped) is readable */
    tm_sync sync;
    unsigned mode;
    uint64_t store_id;
    dev_t dev;
    ino_t ino;
    pid_t pid;           /* process that opened or revived the handle */
    int slot;            /* index in the registry */
    int read_only;       /* tm_options.read_only: never writes either file */
    atomic_int poisoned;
    atomic_int forked;   /* set in a child after fork: revive before use */
    int apply_pending;   /* a durable record is not fully in the store file: */
    uint64_t apply_off, apply_seq; /* where it is, and its sequence number */

    pthread_rwlock_t rw; /* this process's readers against its writer */
    pthread_mutex_t mu;  /* readers' count and the shared file lock */
    int readers;

    /* the write transaction */
    atomic_int tx_tid;   /* owning thread, 0 when none */
    int tx_depth;
    int tx_bulk;
    int pm_fd;           /* /proc/self/pagemap of st->pid, for bulk mode; -1 until needed */
    size_t tx_size0;     /* arena size at begin */
    uint64_t *dirty;     /* page numbers, capacity max/PAGE */
    volatile size_t ndirty; /* the fault handler appends: always reload */
    volatile int sb_dirty;  /* the superblock is among them */
    int sb_copy;         /* ... but unwritten: commit logs and writes sb_buf instead */
    char *sb_buf;        /* PAGE bytes: that copy of the superblock */
    uint64_t *kept;      /* sorted pages whose private copies outlived their commit */
    size_t nkept;        /* (tx.c "kept copies"); capacity 2 * KEEP_MAX */
    uint64_t kept_seq;   /* the commit they are exact for */
    int parked[4];       /* fds of refused second opens: closing them would drop our locks */
    int nparked;

    /* the log, and the header it belongs to */
    struct hdr_slot hdr; /* the current slot: gen, ckpt_seq, ... */
    uint64_t gen, ckpt_seq;
    uint64_t log_off;    /* where the next record goes */
    uint64_t log_len;    /* length of the log file */
    const char *log_map; /* the log's first log_map_len bytes, read-only, shared: */
    uint64_t log_map_len; /* record headers are looked up there, not read */

    /* counters of this handle */
    uint64_t n_syncs, n_ckpts, n_commits;
    uint64_t ckpt_commits; /* n_commits at the last checkpoint */
};

static inline struct tm_super *super_of(const tm_store *st)
{
    return (struct tm_super *)(st->base + PAGE);
}

/* store.c */
extern tm_store *_Atomic store_registry[MAX_STORES];
extern _Atomic uintptr_t tm_arena_lo, tm_arena_hi; /* bounds of all reservations */
int store_grow(tm_store *st, size_t need);
int store_refresh(tm_store *st);
int store_map_size(tm_store *st, size_t size);
/* fork(): hold the default store's, the open and the registry mutexes
 * across it, release after. */
void store_fork_prepare(void);
void store_fork_done(void);
void default_fork_prepare(void);
void default_fork_done(void);
int store_revive(tm_store *st);
int store_checkpoint(tm_store *st);
int store_checkpoint_at(tm_store *st, uint64_t seq, uint64_t size);
int store_heal(tm_store *st);
int store_reapply(tm_store *st);
uint64_t super_checksum(const struct tm_super *sb);
uint64_t hdr_checksum(const struct hdr_slot *s);
int hdr_current(tm_store *st);

/* log.c */
struct log_rec {
    uint32_t magic;
    uint32_t npages;
    uint64_t store_id;
    uint64_t gen;
    uint64_t seq;
    uint64_t size;       /* arena size after the commit */
    uint64_t len;        /* bytes of the record, this header included */
    uint64_t checksum;   /* of this header (checksum 0), index and pages */
    uint64_t reserved;
};
#define LOG_MAGIC 0x434552544d54ull /* "TMTREC" */
#define LOG_HDR_MAGIC "TMFLOG\0\0"
#define LOG_START PAGE  /* records start after the log file's header page */
int log_create(tm_store *st);
int log_refresh_len(tm_store *st);
/* Does a record of len bytes fit at st->log_off without extending the ring
 * (or is the ring empty)?  0 means: checkpoint first. */
int log_fits(tm_store *st, uint64_t len);
/* Doubles the ring of written zeros, up to CKPT_BYTES. */
int log_grow_ring(tm_store *st);
int log_check_file(tm_store *st);
int log_append(tm_store *st, uint64_t seq, const uint64_t *pages, size_t n, uint64_t *len_out);
uint64_t log_record_len(size_t npages);
/* Replays valid records from offset off onward with sequence numbers from
 * seq; returns the number replayed or a negative errno; *off, *seq, *size
 * advance past them. */
long log_replay(tm_store *st, uint64_t *off, uint64_t *seq, uint64_t *size);
int log_invalidate(tm_store *st, uint64_t off);
/* Nonzero when a record with sequence number seq begins at off (header
 * checks only: cheap enough for every transaction start). */
int log_pending(tm_store *st, uint64_t off, uint64_t seq);

/* checksum.c */
typedef struct {
    uint64_t v[4];
    uint64_t total;
    uint8_t buf[32];
    unsigned nbuf;
} hash_state;
void hash_init(hash_state *h, uint64_t seed);
void hash_update(hash_state *h, const void *p, size_t len);
uint64_t hash_final(hash_state *h);
uint64_t hash_bytes(const void *p, size_t len, uint64_t seed);

/* tx.c */
int tx_install_handler(void);
int tx_touch(tm_store *st, void *p, size_t len);
void tx_rollback(tm_store *st);
pid_t tx_tid_slow(void);
extern TLS pid_t tm_tls_tid;

static inline pid_t tx_my_tid(void)
{
    pid_t t = tm_tls_tid;
    return likely(t) ? t : tx_tid_slow();
}

/* Does the calling thread own st's write transaction? */
/* Where commit takes page pg from: the arena, or the superblock's copy. */
static inline const char *tx_page(const tm_store *st, uint64_t pg)
{
    return pg == 1 && st->sb_copy ? st->sb_buf : st->base + pg * PAGE;
}

static inline int tx_owned(const tm_store *st)
{
    return st->tx_tid == tx_my_tid();
}
int tx_dirty_scan(tm_store *st);
void tx_kept_refresh(tm_store *st);
void tx_release(tm_store *st);

/* heap.c, heap_check.c (layout and invariants in heap.h).  All but
 * heap_stats, heap_check and heap_usable need the caller to own the write
 * transaction; heap_alloc fails with TM_ENOTX otherwise, heap_free and
 * heap_realloc report the misuse and abort, as they do for a double free or
 * a pointer the heap never returned.  align is a power of two. */
void *heap_alloc(tm_store *st, size_t size, size_t align);
void heap_free(tm_store *st, void *p);
void *heap_realloc(tm_store *st, void *p, size_t size); /* p != NULL, size > 0 */
size_t heap_usable(tm_store *st, const void *p);
int heap_stats(tm_store *st, tm_stats_t *out); /* 0 or -TM_ECORRUPT */
int heap_check(tm_store *st, char *msg, size_t len); /* 0, TM_ECORRUPT or ENOMEM */

/* error.c */
int tm__err(int negerrno);

#endif
