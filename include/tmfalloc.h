/*
 * tmfalloc — a transactional, memory-mapped-file allocator.
 *
 * A store is a file mapped at a fixed address.  Changes to it are made inside
 * write transactions (tm_begin / tm_commit / tm_abort), which are atomic and,
 * with the default sync mode, durable: kill the process at any instruction or
 * cut the power, and reopening the store yields exactly the state after the
 * last tm_commit that returned 0.  Pointers are stored raw; the store is
 * always mapped at the address recorded in its file.
 *
 * Conventions
 *   - Functions returning int return 0 on success or a positive error code:
 *     an errno value or one of the TM_E... codes below.  tm_strerror(code)
 *     gives a one-line message for either kind.
 *   - Functions returning a pointer return NULL and set errno on failure.
 *   - The tm_* calls without "store" act on the default store, opened on
 *     first use from the environment (TMF_PATH, TMF_ADDR, TMF_MAX_SIZE,
 *     TMF_SYNC).  The tm_store_* calls act on a store from tm_open.
 *
 * Caveats (read these)
 *   - Fixed address: a store can only be opened where no other mapping of the
 *     process is; opening fails with TM_EADDR rather than moving it.  Under
 *     the preload every store lies in [0x200000000000, 0x400000000000), the
 *     window its free tests; opening any other fails with EINVAL.
 *   - Outside a write transaction the arena is read-only, but for hot pages
 *     (pages transactions keep writing, TMF_TRACK): a stray write never
 *     reaches the file, and stops the process with a message naming the
 *     address at once, or, on a hot page, naming the page at the next
 *     tm_begin of the process.
 *   - The store's processes share a lock file "<path>.lock" beside it; a
 *     read-write handle must be able to write it, on a file system with
 *     coherent shared mappings (not NFS).
 *   - System calls that write into the arena (read(2) into a persistent
 *     buffer) work inside a write transaction for the wrapped libc calls
 *     (read, pread, readv, preadv, recv, recvfrom, fread); for any other
 *     call, tm_touch() the buffer first.
 *   - Another thread of the writer's process that writes to a page the
 *     transaction already changed is not caught: page protection is per
 *     process, not per thread.
 *   - fork(): the child keeps reading what it had mapped; its handles are
 *     reopened at its first tm_* call on them, and it never inherits the
 *     parent's transaction or locks.
 *   - Pointers into code and static data (function pointers, C++ vtables,
 *     method tables of libraries) survive a restart only when the same
 *     program and libraries load at the same addresses: the preload turns
 *     address randomisation off for that, in programs that use tmfalloc
 *     and their children (TMF_ASLR=keep leaves it on); a
 *     non-PIE executable or setarch -R does it without the preload.  The
 *     store records where each was loaded; an open by a process where one
 *     that the data point into moved, changed or is missing fails with
 *     TM_ELAYOUT, naming it on stderr.  Open FILE streams, descriptors,
 *     sockets, thread handles and library state set up per process never
 *     survive: set such libraries up in each run, outside transactions
 *     (sqlite3_initialize).
 *   - Under the preload, libc's own allocations inside a transaction
 *     (stdio buffers, threads, locale, dlopen, getaddrinfo) go to glibc;
 *     what libc hands to the caller (strdup, asprintf, getline, realpath,
 *     scandir, tsearch, open_memstream's buffer) goes to the arena.  Without the
 *     preload, malloc inside a transaction goes to glibc: the first commit
 *     that stores such a pointer in the arena warns once on stderr.
 *   - TMF_SYNC=none survives process crashes exactly; after a power cut or
 *     an operating-system crash it may lose recent commits, and since the
 *     kernel writes the store file back in no particular order, the store
 *     may then be inconsistent.  Use the default "full" where that matters.
 *   - A store is opened at most once per process (EBUSY otherwise).
 *
 * See README.md and the comments at the top of src/store.c and src/log.c for
 * the on-disk format and the crash-safety argument.
 */
#ifndef TMFALLOC_H
#define TMFALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

#define TMFALLOC_VERSION_MAJOR 0
#define TMFALLOC_VERSION_MINOR 1

/* Error codes beyond errno values.  tm_strerror() knows both. */
enum {
    TM_EFIRST = 10000,
    TM_ENOTSTORE = 10000, /* the file is not a tmfalloc store */
    TM_EVERSION,          /* the store has a newer format version */
    TM_ECORRUPT,          /* the store header or superblock is corrupt */
    TM_ETRUNCATED,        /* the store file is shorter than its header says */
    TM_EADDR,             /* the store's base address is already in use */
    TM_EPOISONED,         /* an earlier I/O error; close and reopen */
    TM_ENOTX,             /* no write transaction is open on this thread */
    TM_EREADTX,           /* not allowed inside a read transaction */
    TM_EOTHERTX,          /* another thread of this process owns the write transaction */
    TM_EFULL,             /* the arena reached its maximum size */
    TM_EPAGESIZE,         /* the system page size is not supported */
    TM_ELAYOUT,           /* the data point into code or static data of a
                           * program or library that moved or changed since */
    TM_ELAST
};

typedef enum tm_sync {
    TM_SYNC_FULL = 0, /* commit returns once the data is on stable storage */
    TM_SYNC_NONE = 1  /* no fsync: survives a process crash, not a power cut */
} tm_sync;

typedef struct tm_options {
    uintptr_t base;     /* base address for a new store; 0: the default */
    size_t max_size;    /* a new store's limit of growth (address space reserved;
                         * an existing store keeps its own); 0: the default */
    size_t initial_size;/* arena size of a new store; 0: the default (1 MiB) */
    tm_sync sync;       /* durability of commits */
    unsigned mode;      /* permission bits of a new file; 0: 0600 */
    int no_create;      /* nonzero: fail with ENOENT rather than create */
    int read_only;      /* nonzero: inspect only.  The files are opened
                         * O_RDONLY and never created, recovered, replayed,
                         * truncated or checkpointed; the handle takes the
                         * open lock shared only.  Write transactions fail
                         * with EROFS; a read transaction fails with EROFS
                         * when a dead writer left a durable commit
                         * unapplied (a read-write open must recover it). */
} tm_options;

typedef struct tm_store tm_store;

typedef struct tm_stats_t {
    uint64_t arena_size;     /* bytes of the store file mapped as arena */
    uint64_t max_size;       /* bytes reserved for growth */
    uint64_t live_bytes;     /* bytes in the blocks the program allocated */
    uint64_t free_bytes;     /* bytes in free blocks */
    uint64_t free_blocks;    /* number of free blocks */
    uint64_t largest_free;   /* largest free block */
    uint64_t commits;        /* commit sequence number of the store */
    uint64_t log_bytes;      /* bytes of redo log since the last checkpoint */
    uint64_t checkpoints;    /* checkpoints made by this handle */
    uint64_t syncs;          /* fdatasync calls made by this handle */
    uint64_t tx_commits;     /* commits made by this handle */
} tm_stats_t;

/* Options: defaults, and defaults overridden by the TMF_* environment.
 * tm_options_from_env: 0, or EINVAL when a variable is malformed (also
 * said on stderr, naming it). */
void tm_options_init(tm_options *opts);
int tm_options_from_env(tm_options *opts);

/* tm_open: opens the store at path, creating it if needed (mode 0600
 * unless opts->mode says otherwise), recovers it after a crash, and maps
 * it at its base.  opts may be NULL (the defaults).
 * Returns 0 and *out, or:
 *   EINVAL         empty path; for a new store, a base that is not page
 *                  aligned, below 4 GiB or whose reservation passes the end
 *                  of user space, or an initial size above max_size; under
 *                  the preload, a store whose reservation [base, base +
 *                  max_size) is not inside [0x200000000000, 0x400000000000)
 *                  (said on stderr)
 *   ENOENT         no store at path, with no_create or read_only
 *   EEXIST         the store file is missing but its log is there (never
 *                  overwritten: it may hold a lost store's commits)
 *   EBUSY          the store is already open in this process
 *   EMFILE         this process has 16 stores open
 *   TM_ENOTSTORE, TM_EVERSION, TM_ECORRUPT, TM_ETRUNCATED   the files
 *   TM_EADDR       the base address is taken in this process
 *   TM_EPAGESIZE   the system's page size is not 4096 bytes
 *   TM_ELAYOUT     the live data point into the code or static data of a
 *                  program or library that this process does not have
 *                  where it was when they were committed (stderr names it)
 *   TM_ECORRUPT    also: the code layout record is damaged
 *   system errors  EACCES, ENOSPC, EIO, ENOMEM, ... from opening,
 *                  creating, locking, reading or recovering the files */
int tm_open(const char *path, const tm_options *opts, tm_store **out);
/* Closes a store; an open write transaction of the calling thread is
 * aborted.  The last handle of all processes checkpoints.  Returns 0,
 * EINVAL for NULL, or the I/O error of that checkpoint (or of rewriting a
 * commit whose first write into the store file failed): the handle is
 * closed anyway and the commits stay in the log, replayed by the next
 * open. */
int tm_close(tm_store *st);
const char *tm_store_path(const tm_store *st);
void *tm_store_base(const tm_store *st);

/* Write transactions.  begin waits for the single-writer lock; nested begins
 * are counted and only the outermost commit commits.
 * begin returns 0 or:
 *   TM_EPOISONED   an earlier I/O error (or failed abort); close and
 *                  reopen the store
 *   TM_EREADTX     this thread has a read transaction open on the store
 *   EROFS          the store was opened read_only
 *   TM_ECORRUPT    a damaged header or log met while healing a dead
 *                  writer's commit
 *   system errors  EIO, ENOLCK, EDEADLK, ... from locking and healing
 * commit returns 0 once the transaction is durable (per the sync mode) and
 * visible, or:
 *   TM_ENOTX       no write transaction of this thread is open
 *   TM_EFULL, ENOMEM  the first commit that stores a pointer into code or
 *                  static data has no room for the code layout record:
 *                  the transaction is rolled back, the handle stays usable
 *   I/O errors     EIO, ENOSPC, EDQUOT, ... before the commit point: the
 *                  transaction is rolled back and the handle poisoned
 *                  (TM_EPOISONED) until reopened.  An error after the
 *                  commit point returns 0 (the commit is durable) and
 *                  poisons the handle.
 * abort undoes every byte, allocation and growth since the outermost
 * begin; without an open transaction it does nothing.  Should the system
 * refuse it memory to protect the pages again (mprotect: ENOMEM), it
 * poisons the handle too. */
int tm_store_begin(tm_store *st);
int tm_store_commit(tm_store *st);
void tm_store_abort(tm_store *st);

/* Read transactions: no writer of this or any other process changes the
 * arena meanwhile.  They nest, and may be begun inside the thread's own
 * write transaction (they then see its changes).
 * read_begin returns 0 or:
 *   TM_EPOISONED   this handle's last commit is not fully in the store file
 *   EROFS          a read_only handle, and a dead writer left a durable
 *                  commit unapplied: a read-write open must recover it
 *   TM_ECORRUPT, system errors   as for begin
 * read_end returns 0, or TM_ENOTX when this thread has none open. */
int tm_store_read_begin(tm_store *st);
int tm_store_read_end(tm_store *st);

/* The root object: zero-filled on first use, at least size bytes; a larger
 * size grows it keeping its contents.  Opens its own write transaction when
 * it must change the store and none is open.  NULL with errno: ENOMEM (the
 * arena cannot grow), or an error of begin or commit. */
void *tm_store_root(tm_store *st, size_t size);

/* Makes [p, p+len) of the arena writable in the current write transaction,
 * for system calls that write into it and that tmfalloc does not wrap.
 * Returns 0, TM_ENOTX (no write transaction of this thread), or EFAULT
 * (the range leaves the arena or touches its header page). */
int tm_store_touch(tm_store *st, void *p, size_t len);

/* Fills *out.  Returns 0, or TM_ECORRUPT when the heap's own state is
 * damaged: the heap fields may then be incomplete (tm_store_check says
 * what is wrong). */
int tm_store_stats(tm_store *st, tm_stats_t *out);

/* Allocation in the arena.  Inside a write transaction of the calling thread
 * these behave as malloc and friends (16-byte alignment at least).  On
 * failure they return NULL with errno: ENOMEM (the arena cannot grow, or a
 * size too large), EINVAL (an alignment that is not a power of two;
 * posix_memalign returns it), TM_ENOTX (outside a write transaction of
 * this thread), TM_ECORRUPT (the heap's state is damaged).  Freeing an
 * arena block outside a write transaction, a double free or a pointer the
 * arena never returned is reported on stderr and stops the process, as
 * glibc does. */
void *tm_store_malloc(tm_store *st, size_t size);
void tm_store_free(tm_store *st, void *p);
void *tm_store_calloc(tm_store *st, size_t n, size_t size);
void *tm_store_realloc(tm_store *st, void *p, size_t size);
void *tm_store_aligned_alloc(tm_store *st, size_t align, size_t size);
int tm_store_posix_memalign(tm_store *st, void **out, size_t align, size_t size);
size_t tm_store_usable_size(tm_store *st, const void *p);
/* Walks the whole heap and checks its invariants: every byte in exactly one
 * block, free structures agree with the blocks, no overlap.  Returns 0,
 * TM_ECORRUPT with a one-line description in msg (if msg is not NULL), or
 * ENOMEM. */
int tm_store_check(tm_store *st, char *msg, size_t len);
/* The open store whose reservation contains p, or NULL. */
tm_store *tm_store_of(const void *p);

/* The default store: the calls above on tm_default(), with the same
 * errors, and those of opening it (tm_open's, and EINVAL for a malformed
 * TMF_* variable).  tm_commit, tm_read_end and tm_touch return TM_ENOTX
 * when the default store was never opened. */
int tm_begin(void);
int tm_commit(void);
void tm_abort(void);
int tm_read_begin(void);
int tm_read_end(void);
void *tm_root(size_t size);
int tm_touch(void *p, size_t len);
int tm_stats(tm_stats_t *out);
void *tm_malloc(size_t size);
void tm_free(void *p);
void *tm_calloc(size_t n, size_t size);
void *tm_realloc(void *p, size_t size);
void *tm_aligned_alloc(size_t align, size_t size);
int tm_posix_memalign(void **out, size_t align, size_t size);
size_t tm_usable_size(const void *p);
int tm_check(char *msg, size_t len);
/* The default store, opened if needed; NULL with errno set on failure. */
tm_store *tm_default(void);

/* Nonzero when the calling thread is inside a write transaction. */
int tm_in_tx(void);

/* The escape hatch of the LD_PRELOAD interposer.  Inside a write transaction
 * the program's malloc-family calls go into the arena (libc's own go to
 * glibc already); between tm_transient_begin() and tm_transient_end() they
 * go to glibc again, for code that keeps memory outside the store.  Nests;
 * harmless without the preload. */
void tm_transient_begin(void);
void tm_transient_end(void);

const char *tm_strerror(int code);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif /* TMFALLOC_H */
