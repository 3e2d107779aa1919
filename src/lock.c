/*
 * lock.c — the lock protocol of a store, in one place.
 *
 * The processes that have a store open share a small lock file,
 * "<path>.lock", mapped MAP_SHARED (struct tm_shared): the committed state
 * (sequence numbers, log position, arena size), a robust process-shared
 * mutex for the one writer, and a table of reader slots, one per reading
 * thread, each on a cache line of its own.  A transaction makes no system
 * call to lock when nobody is in its way:
 *
 *   writer  pthread_mutex_lock on the robust mutex: EOWNERDEAD says its
 *           last holder died, and the caller heals (checkpoint.c).  While a
 *           writer of this process is in its transaction, this process's
 *           readers stay out (local_writer): its uncommitted pages are
 *           visible to every thread of the process.
 *   apply   while a commit writes its pages into the store file, readers of
 *           every process stay out (applying); the writer first waits for
 *           those already in to leave.
 *   reader  marks its slot active, then looks at local_writer and
 *           applying (a Dekker handshake: both sides store, fence, load);
 *           when either is set it steps back and sleeps on a futex.
 *
 * Locks only the kernel can give stay POSIX record locks (per process,
 * dropped when it dies, not inherited across fork):
 *   store file, LOCK_OPEN     shared by every open handle; the opener that
 *                             gets it exclusively is alone and runs full
 *                             recovery, the closer that gets it
 *                             exclusively checkpoints.
 *   store file, LOCK_DETACHED shared by read-only handles that cannot write
 *                             the lock file; they and read-write handles
 *                             refuse each other (EBUSY).
 *   lock file, LF_INIT        exclusive while a handle attaches: the first
 *                             to find no other user (LF_USERS) resets the
 *                             file, so a crashed process's state or held
 *                             mutex never outlives it.
 *   lock file, LF_USERS       shared by every attached handle.
 *   lock file, LF_PID + pid   shared by every process attached: a writer
 *                             waiting on a reader slot of a dead process
 *                             finds it unlocked and frees the slot.
 *
 * Processes in different PID namespaces may share a store, and two of
 * them may have the same pid.  So a reader slot and the writer's record
 * name their handle by a random mark as well (tm_locks.mark): only the
 * mark says that a slot or the mutex is this process's, and LF_PID + pid
 * only that some process with that pid is alive.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

enum { LOCK_OPEN = 0, LOCK_DETACHED = 3 };
enum { LF_INIT = 0, LF_USERS = 1 };

#define LOCK_MAGIC 0x4b434f4c464d54ull /* "TMFLOCK" */
#define LOCK_VERSION 2u
#define SHARED_HDR 4096u
#define NREADERS ((unsigned)LOCK_READERS)
#define SHARED_LEN (SHARED_HDR + NREADERS * sizeof(struct reader))

struct reader {
    _Atomic uint32_t active; /* inside a read transaction */
    _Atomic int32_t pid;     /* owning process; 0: free */
    _Atomic int32_t tid;
    _Atomic uint64_t mark;   /* the owning handle's, set before the slot is first active */
    uint8_t pad[40];
};
_Static_assert(sizeof(struct reader) == 64, "a reader slot is one cache line");
_Static_assert(sizeof(struct tm_shared) <= SHARED_HDR, "the shared header fits its page");

static struct reader *readers(const struct tm_locks *lk)
{
    return (struct reader *)((char *)lk->sh + SHARED_HDR);
}

static void free_slot(struct reader *r)
{
    r->active = 0;
    r->pid = 0;
}

/* Each thread's slot per open store, valid while its generation matches. */
static TLS struct reader *tls_reader[MAX_STORES];
static TLS unsigned tls_reader_gen[MAX_STORES];
static _Atomic unsigned next_gen = 1;

/* ---- attaching ---- */

static int init_mutex(pthread_mutex_t *m, int shared)
{
    pthread_mutexattr_t a;
    int r;
    pthread_mutexattr_init(&a);
    if (shared) {
        pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    }
    r = -pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return r;
}

/* A fresh shared state, before anyone else may look: the caller sets the
 * committed state and calls lock_attach_done. */
static int reset(struct tm_locks *lk, uint64_t store_id, int shared)
{
    memset(lk->sh, 0, SHARED_LEN);
    lk->sh->magic = LOCK_MAGIC;
    lk->sh->version = LOCK_VERSION;
    lk->sh->nreaders = NREADERS;
    lk->sh->store_id = store_id;
    return init_mutex(&lk->sh->writer, shared);
}

static void local_init(struct tm_locks *lk, int fd)
{
    memset(lk, 0, sizeof *lk);
    lk->fd = fd;
    lk->lock_fd = -1;
    lk->idx = -1;
    pthread_mutex_init(&lk->mu, NULL);
}

/* The first user since everyone left: a fresh file, which keeps the last
 * run's committed state (*fresh = 2) when that run was of this boot: the
 * page cache it wrote through is still there, so what it said applied is
 * in the store file.  After a crash of the system it is not (*fresh = 1). */
static int start(struct tm_locks *lk, uint64_t store_id, int *fresh)
{
    struct tm_shared old = *lk->sh;
    char boot[sizeof old.boot];
    int r, same = os_boot_id(boot) == 0 && old.magic == LOCK_MAGIC && old.version == LOCK_VERSION &&
                  old.store_id == store_id && memcmp(old.boot, boot, sizeof boot) == 0;
    if ((r = reset(lk, store_id, 1)) < 0)
        return r;
    memcpy(lk->sh->boot, boot, sizeof boot);
    *fresh = 1;
    if (same) {
        lk->sh->seq = old.seq;
        lk->sh->applied = old.applied;
        lk->sh->applied_off = old.applied_off;
        lk->sh->log_off = old.log_off;
        lk->sh->size = old.size;
        lk->sh->gen = old.gen;
        lk->sh->last_off = old.last_off;
        lk->sh->last_sum = old.last_sum;
        lk->sh->resync = old.resync; /* S4: owed by whoever checkpoints next */
        *fresh = 2;
    }
    return 0;
}

/* Read-only without a writable lock file: allowed only while no other
 * process has the store open, and read-write opens are refused meanwhile.
 * Each side takes its lock first and then looks for the other's. */
static int attach_detached(struct tm_locks *lk, uint64_t store_id, int *fresh)
{
    int r;
    if ((r = os_lock(lk->fd, LOCK_DETACHED, 1, F_RDLCK, 0)) < 0)
        return r;
    if ((r = os_lock_held(lk->fd, LOCK_OPEN, F_WRLCK)) != 0)
        return r < 0 ? r : -EBUSY;
    if (!(lk->sh = os_alloc(SHARED_LEN)))
        return -ENOMEM;
    lk->detached = 1;
    lk->lock_fd = -1;
    *fresh = 1;
    return reset(lk, store_id, 0);
}

/* Clears the slots of this handle, or with others, those a process of our
 * pid left behind (pids are reused), unless a process of that pid in
 * another PID namespace is alive: their slots cannot be told apart. */
static void free_slots(struct tm_locks *lk, int own)
{
    struct reader *rd = readers(lk);
    int other = -1; /* another process has our pid: not looked at yet */
    for (unsigned i = 0; i < NREADERS; i++) {
        if (rd[i].pid != lk->pid || (rd[i].mark == lk->mark) != own)
            continue;
        if (!own && other < 0)
            other = os_lock_held(lk->lock_fd, LF_PID + lk->pid, F_WRLCK) != 0;
        if (own || !other)
            free_slot(&rd[i]);
    }
}

int lock_attach(struct tm_locks *lk, const char *path, unsigned mode, int read_only, uint64_t store_id,
                int *fresh)
{
    int users, r;
    void *m;
    *fresh = 0;
    lk->pid = os_pid();
    lk->mark = os_random64();
    lk->gen = next_gen++;
    lk->lock_fd = os_open(path, O_RDWR | O_CREAT, mode);
    if (lk->lock_fd < 0 && read_only && (lk->lock_fd == -EACCES || lk->lock_fd == -EROFS))
        return attach_detached(lk, store_id, fresh);
    if (lk->lock_fd < 0)
        return lk->lock_fd;
    if ((r = os_lock_wait_patiently(lk->lock_fd, LF_INIT, 1, F_WRLCK)) < 0)
        return r;
    if ((users = os_lock_held(lk->lock_fd, LF_USERS, F_WRLCK)) < 0)
        return users;
    if ((r = os_lock(lk->lock_fd, LF_USERS, 1, F_RDLCK, 1)) < 0 ||
        (r = os_lock(lk->lock_fd, LF_PID + lk->pid, 1, F_RDLCK, 1)) < 0)
        return r;
    if ((r = os_lock_held(lk->fd, LOCK_DETACHED, F_WRLCK)) != 0)
        return r < 0 ? r : -EBUSY; /* a read-only handle is alone with the store */
    if ((r = os_extend(lk->lock_fd, 0, SHARED_LEN)) < 0)
        return r;
    m = os_mmap(NULL, SHARED_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, lk->lock_fd, 0);
    if (os_map_failed(m))
        return (int)(intptr_t)m;
    lk->sh = m;
    if (!users)
        return start(lk, store_id, fresh); /* LF_INIT stays held: lock_attach_done */
    if (lk->sh->magic != LOCK_MAGIC || lk->sh->version != LOCK_VERSION || lk->sh->store_id != store_id ||
        lk->sh->nreaders != NREADERS)
        return -EBUSY; /* another library's or another store's processes use it */
    free_slots(lk, 0);
    lock_attach_done(lk);
    return 0;
}

void lock_attach_done(struct tm_locks *lk)
{
    if (lk->lock_fd >= 0)
        (void)os_lock(lk->lock_fd, LF_INIT, 1, F_UNLCK, 0); /* an unlock of ours cannot fail */
}

/* Frees this process's reader slots and unmaps; closing the lock file
 * drops its record locks. */
void lock_detach(struct tm_locks *lk)
{
    if (lk->sh && !lk->detached)
        free_slots(lk, 1);
    if (lk->sh)
        os_munmap(lk->sh, SHARED_LEN);
    if (lk->lock_fd >= 0)
        os_close(lk->lock_fd);
    lk->sh = NULL;
    lk->lock_fd = -1;
}

/* In a forked child: nothing of the parent's locks is ours, and the
 * parent's threads are not here. */
void lock_fork_child(struct tm_locks *lk)
{
    lk->local_writer = 0;
    lk->local_waiters = 0;
    lk->own_waits = 0;
    lk->nowned = 0;
    pthread_mutex_init(&lk->mu, NULL);
}

/* The child's handle joins the openers again (its fcntl locks were not
 * inherited) and gets slots of its own. */
int lock_revive(struct tm_locks *lk)
{
    int r;
    lk->pid = os_pid();
    lk->mark = os_random64();
    lk->gen = next_gen++;
    if ((r = os_lock_wait_patiently(lk->fd, LOCK_OPEN, 1, F_RDLCK)) < 0)
        return r;
    if (lk->detached)
        return os_lock(lk->fd, LOCK_DETACHED, 1, F_RDLCK, 0);
    if ((r = os_lock(lk->lock_fd, LF_USERS, 1, F_RDLCK, 1)) < 0 ||
        (r = os_lock(lk->lock_fd, LF_PID + lk->pid, 1, F_RDLCK, 1)) < 0)
        return r;
    free_slots(lk, 0);
    return 0;
}

/* ---- LOCK_OPEN ---- */

/* LOCK_OPEN: exclusively when no other process has the store open
 * (*first = 1), else shared, after waiting out a first opener's recovery.
 * A read-only opener is never first: it must not recover. */
int lock_open(struct tm_locks *lk, int fd, int read_only, int *first)
{
    int r;
    local_init(lk, fd);
    *first = 0;
    if (read_only)
        return os_lock_wait_patiently(fd, LOCK_OPEN, 1, F_RDLCK);
    r = os_lock(fd, LOCK_OPEN, 1, F_WRLCK, 0);
    *first = r == 0;
    if (r == -EAGAIN)
        r = os_lock_wait_patiently(fd, LOCK_OPEN, 1, F_RDLCK);
    return r;
}

/* The first opener has recovered: others may open now. */
int lock_open_downgrade(struct tm_locks *lk)
{
    return os_lock(lk->fd, LOCK_OPEN, 1, F_RDLCK, 0);
}

/* At close: 0 when this is the last handle of all processes (LOCK_OPEN
 * exclusive), -EAGAIN when others have the store open. */
int lock_open_try_last(struct tm_locks *lk)
{
    return os_lock(lk->fd, LOCK_OPEN, 1, F_WRLCK, 0);
}

/* Whether another process has the file open: a store handle holds
 * LOCK_OPEN.  fd: a descriptor of the store file, with no handle on it. */
int lock_open_held(int fd)
{
    return os_lock_held(fd, LOCK_OPEN, F_WRLCK);
}

/* ---- reader slots ---- */

/* Whether the owner of an active slot may still leave it. */
static int slot_alive(const struct tm_locks *lk, const struct reader *r)
{
    return lock_holder_alive(lk, r->mark, r->pid, r->tid);
}


/* The lowest free slot (the writer looks at slots below nslots only), or
 * a slot of this process whose thread is gone. */
static struct reader *claim(struct tm_locks *lk, pid_t tid)
{
    struct reader *rd = readers(lk);
    for (int pass = 0; pass < 2; pass++)
        for (unsigned i = 0; i < NREADERS; i++) {
            int32_t want = pass == 0 ? 0 : lk->pid;
            uint32_t n = lk->sh->nslots;
            if (pass == 1 && (rd[i].pid != lk->pid || rd[i].mark != lk->mark || rd[i].active ||
                              lock_holder_alive(lk, lk->mark, lk->pid, rd[i].tid)))
                continue;
            if (atomic_compare_exchange_strong(&rd[i].pid, &want, lk->pid)) {
                rd[i].mark = lk->mark;
                rd[i].tid = tid;
                while (n <= i && !atomic_compare_exchange_weak(&lk->sh->nslots, &n, i + 1))
                    ;
                return &rd[i];
            }
        }
    return NULL;
}

static int owns(const struct tm_locks *lk, const struct reader *r)
{
    for (unsigned i = 0; i < lk->nowned; i++)
        if (&readers(lk)[lk->owned[i]] == r)
            return 1;
    return 0;
}

/* This thread's slot, claimed at its first read transaction on the store. */
static struct reader *my_slot(struct tm_locks *lk)
{
    struct reader *r;
    if (likely(tls_reader_gen[lk->idx] == lk->gen))
        return tls_reader[lk->idx];
    pthread_mutex_lock(&lk->mu);
    if ((r = claim(lk, os_tid())) && !owns(lk, r))
        lk->owned[lk->nowned++] = (uint16_t)(r - readers(lk));
    pthread_mutex_unlock(&lk->mu);
    if (!r)
        return NULL;
    tls_reader[lk->idx] = r;
    tls_reader_gen[lk->idx] = lk->gen;
    return r;
}

/* ---- the writer ---- */

/* Waits until none of this process's readers is inside. */
static void wait_own_readers(struct tm_locks *lk)
{
    struct reader *rd = readers(lk);
    for (unsigned i = 0; i < lk->nowned; i++) {
        struct reader *r = &rd[lk->owned[i]];
        while (r->active) {
            uint32_t seen = lk->own_leave;
            lk->own_waits = 1;
            if (r->active && os_futex_wait(&lk->own_leave, seen, STUCK_NS, 0) == -ETIMEDOUT && !slot_alive(lk, r))
                free_slot(r);
        }
    }
    lk->own_waits = 0;
}

static int writer_enter(struct tm_locks *lk, int wait)
{
    int r = robust_take(lk, wait);
    if (r < 0)
        return r;
    atomic_store(&lk->local_writer, 1);
    pthread_mutex_lock(&lk->mu); /* no slot is added meanwhile */
    wait_own_readers(lk);
    pthread_mutex_unlock(&lk->mu);
    return r;
}

int lock_writer(struct tm_locks *lk)
{
    return writer_enter(lk, 1);
}

/* The same without waiting: -EBUSY when another holds it. */
int lock_writer_try(struct tm_locks *lk)
{
    return writer_enter(lk, 0);
}

void lock_writer_release(struct tm_locks *lk)
{
    atomic_store(&lk->local_writer, 0);
    if (atomic_load(&lk->local_waiters))
        os_futex_wake(&lk->local_writer, INT_MAX, 0);
    robust_release(lk);
}

/* ---- applying ---- */

/* Waits until no reader of any process is inside; a slot whose process is
 * gone is freed. */
static void wait_readers(struct tm_locks *lk)
{
    struct reader *rd = readers(lk);
    unsigned n = lk->sh->nslots;
    for (unsigned i = 0; i < n && i < NREADERS; i++) {
        while (rd[i].active && rd[i].pid) {
            uint32_t seen = lk->sh->leave_seq;
            lk->sh->writer_waits = 1;
            if (!rd[i].active)
                break;
            if (os_futex_wait(&lk->sh->leave_seq, seen, STUCK_NS, !lk->detached) == -ETIMEDOUT &&
                !slot_alive(lk, &rd[i]))
                free_slot(&rd[i]);
        }
    }
    lk->sh->writer_waits = 0;
}

void lock_apply_begin(struct tm_locks *lk)
{
    atomic_store(&lk->sh->applying, 1);
    wait_readers(lk);
}

void lock_apply_end(struct tm_locks *lk)
{
    atomic_store(&lk->sh->applying, 0);
    if (atomic_exchange(&lk->sh->apply_waiters, 0))
        os_futex_wake(&lk->sh->applying, INT_MAX, !lk->detached);
}

/* ---- readers ---- */

/* A reader stepped out of a writer's way: let it know. */
static void left(struct tm_locks *lk)
{
    if (lk->own_waits) {
        lk->own_leave++;
        os_futex_wake(&lk->own_leave, INT_MAX, 0);
    }
    if (lk->sh->writer_waits) {
        lk->sh->leave_seq++;
        os_futex_wake(&lk->sh->leave_seq, INT_MAX, !lk->detached);
    }
}

/* Sleeps while a writer of this process is in its transaction or a commit
 * is being applied; -EAGAIN when an apply takes too long (its writer may
 * be dead: the caller takes the writer lock to find out). */
static int wait_writers(struct tm_locks *lk)
{
    if (lk->local_writer) {
        /* A count, not a flag: a release that finds it 0 may skip the
         * wake, and a flag could be consumed by the release of a writer
         * before the one this thread then sleeps on. */
        atomic_fetch_add(&lk->local_waiters, 1);
        (void)os_futex_wait(&lk->local_writer, 1, -1, 0);
        atomic_fetch_sub(&lk->local_waiters, 1);
        return 0;
    }
    if (lk->sh->applying) {
        lk->sh->apply_waiters = 1;
        if (os_futex_wait(&lk->sh->applying, 1, STUCK_NS, !lk->detached) == -ETIMEDOUT)
            return -EAGAIN;
    }
    return 0;
}

int lock_read_enter(struct tm_locks *lk)
{
    struct reader *r = my_slot(lk);
    int e;
    if (unlikely(!r))
        return -EAGAIN; /* NREADERS threads are reading */
    for (;;) {
        atomic_store(&r->active, 1);
        if (likely(!lk->local_writer && !lk->sh->applying))
            return 0;
        atomic_store(&r->active, 0);
        left(lk);
        if ((e = wait_writers(lk)) < 0)
            return e;
    }
}

/* Marks this thread's slot active without waiting: the writer of this
 * process, whose read transaction outlives its write. */
void lock_read_enter_writer(struct tm_locks *lk)
{
    struct reader *r = my_slot(lk);
    if (r)
        atomic_store(&r->active, 1);
}

void lock_read_leave(struct tm_locks *lk)
{
    struct reader *r = tls_reader[lk->idx];
    if (tls_reader_gen[lk->idx] != lk->gen)
        return; /* entered without a slot */
    atomic_store_explicit(&r->active, 0, memory_order_seq_cst);
    if (unlikely(lk->own_waits || lk->sh->writer_waits))
        left(lk);
}

/* How many of this process's readers are inside (tests). */
unsigned lock_readers_inside(struct tm_locks *lk)
{
    unsigned n = 0;
    for (unsigned i = 0; i < lk->nowned; i++)
        n += readers(lk)[lk->owned[i]].active != 0;
    return n;
}
