/*
 * lock.c — the lock protocol of a store, in one place.
 *
 * Across processes, POSIX record locks on single bytes of the store file
 * (per process, dropped by the kernel when the process dies, so none can go
 * stale; not inherited across fork):
 *   LOCK_OPEN    shared by every open handle; the opener that gets it
 *                exclusively is alone and runs full recovery, and so is the
 *                closer that gets it exclusively (it checkpoints).
 *   LOCK_WRITER  exclusive for a whole write transaction: one writer.
 *   LOCK_DATA    shared by read transactions, exclusive while a commit writes
 *                its pages into the store file (apply) or a record is replayed.
 * Within a process, a writer-preferring rwlock keeps this process's readers
 * out of its write transaction (page protection is per process, so they
 * would see its uncommitted pages), and the first of its readers takes the
 * shared data lock for all of them.
 *
 * Order: the local rwlock before any file lock; LOCK_WRITER before
 * LOCK_DATA; a reader never waits for LOCK_WRITER while it holds LOCK_DATA.
 */
#include <errno.h>
#include <fcntl.h>

#include "internal.h"

enum { LOCK_OPEN = 0, LOCK_WRITER = 1, LOCK_DATA = 2 };

void lock_init(struct tm_locks *lk, int fd)
{
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&lk->rw, &a);
    pthread_rwlockattr_destroy(&a);
    pthread_mutex_init(&lk->mu, NULL);
    lk->fd = fd;
    lk->readers = 0;
}

/* ---- opening and closing ---- */

/* LOCK_OPEN: exclusively when no other process has the store open
 * (*first = 1), else shared, after waiting out a first opener's recovery.
 * A read-only opener is never first: it must not recover. */
int lock_open(struct tm_locks *lk, int read_only, int *first)
{
    int r;
    *first = 0;
    if (read_only)
        return os_lock(lk->fd, LOCK_OPEN, 1, F_RDLCK, 1);
    r = os_lock(lk->fd, LOCK_OPEN, 1, F_WRLCK, 0);
    *first = r == 0;
    if (r == -EAGAIN)
        r = os_lock(lk->fd, LOCK_OPEN, 1, F_RDLCK, 1);
    return r;
}

/* The first opener has recovered: others may open now. */
int lock_open_downgrade(struct tm_locks *lk)
{
    return os_lock(lk->fd, LOCK_OPEN, 1, F_RDLCK, 0);
}

/* A forked child's handle joins the openers again. */
int lock_open_shared(struct tm_locks *lk)
{
    return os_lock(lk->fd, LOCK_OPEN, 1, F_RDLCK, 1);
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

/* ---- the writer ---- */

/* Whether another process holds the writer lock (for tests and tools). */
int lock_writer_held(int fd)
{
    return os_lock_held(fd, LOCK_WRITER, F_WRLCK);
}

int lock_writer(struct tm_locks *lk)
{
    return os_lock(lk->fd, LOCK_WRITER, 1, F_WRLCK, 1);
}

int lock_writer_try(struct tm_locks *lk)
{
    return os_lock(lk->fd, LOCK_WRITER, 1, F_WRLCK, 0);
}

/* Releases LOCK_WRITER and, unless keep_data, LOCK_DATA if the commit took
 * it: one call for the two neighbouring bytes.  An unlock of locks we hold
 * cannot fail but for a bad descriptor, which we own. */
void lock_writer_release(struct tm_locks *lk, int keep_data)
{
    (void)os_lock(lk->fd, LOCK_WRITER, keep_data ? 1 : 2, F_UNLCK, 0);
}

/* A read-only handle cannot heal: it waits for the live writer, if any, to
 * finish, with a shared hold of the writer lock. */
int lock_writer_shared(struct tm_locks *lk)
{
    return os_lock(lk->fd, LOCK_WRITER, 1, F_RDLCK, 1);
}

void lock_writer_shared_release(struct tm_locks *lk)
{
    (void)os_lock(lk->fd, LOCK_WRITER, 1, F_UNLCK, 0);
}

/* ---- the data ---- */

int lock_data(struct tm_locks *lk, int exclusive)
{
    return os_lock(lk->fd, LOCK_DATA, 1, exclusive ? F_WRLCK : F_RDLCK, 1);
}

void lock_data_release(struct tm_locks *lk)
{
    (void)os_lock(lk->fd, LOCK_DATA, 1, F_UNLCK, 0);
}

/* ---- within the process ---- */

void lock_local_write(struct tm_locks *lk)
{
    pthread_rwlock_wrlock(&lk->rw);
}

void lock_local_read(struct tm_locks *lk)
{
    pthread_rwlock_rdlock(&lk->rw);
}

void lock_local_release(struct tm_locks *lk)
{
    pthread_rwlock_unlock(&lk->rw);
}

/* The readers of this process: each holds the local rwlock shared; the
 * first of them runs first(ctx), which takes the shared data lock, and the
 * last releases it. */
int lock_readers_enter(struct tm_locks *lk, int (*first)(void *ctx), void *ctx)
{
    int r = 0;
    pthread_rwlock_rdlock(&lk->rw);
    pthread_mutex_lock(&lk->mu);
    if (lk->readers == 0)
        r = first(ctx);
    if (r == 0)
        lk->readers++;
    pthread_mutex_unlock(&lk->mu);
    if (r < 0)
        pthread_rwlock_unlock(&lk->rw);
    return r;
}

void lock_readers_leave(struct tm_locks *lk)
{
    pthread_mutex_lock(&lk->mu);
    if (--lk->readers == 0)
        lock_data_release(lk);
    pthread_mutex_unlock(&lk->mu);
    pthread_rwlock_unlock(&lk->rw);
}

/* Runs fn(ctx) when this process has no transaction of either kind open on
 * the store, and returns 1; else returns 0 without waiting. */
int lock_if_idle(struct tm_locks *lk, void (*fn)(void *ctx), void *ctx)
{
    int idle;
    if (pthread_rwlock_tryrdlock(&lk->rw) != 0)
        return 0;
    pthread_mutex_lock(&lk->mu);
    if ((idle = lk->readers == 0))
        fn(ctx);
    pthread_mutex_unlock(&lk->mu);
    pthread_rwlock_unlock(&lk->rw);
    return idle;
}
