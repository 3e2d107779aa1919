/*
 * robust.c — the writer's mutex, robust and process-shared, in the lock
 * file (struct tm_shared): taking it, recording its holder, and letting
 * it go from a holder that died where the kernel could not.
 *
 * Its holder records itself (writer_pid, writer_mark, then writer_who)
 * once it holds the mutex, and clears writer_who before it lets go, so a
 * record names the holder of now or none.  Who a holder is takes three
 * words; writer_who's count of holders tells a waiter whether it read
 * them all from one.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static int thread_alive(pid_t pid, pid_t tid)
{
    return syscall(SYS_tgkill, pid, tid, 0) == 0 || errno != ESRCH;
}

/* Whether a thread of the handle marked mark, in process pid, may still
 * be alive: a thread of ours that is gone, or a process that holds no
 * LF_PID lock, is not. */
int lock_holder_alive(const struct tm_locks *lk, uint64_t mark, pid_t pid, pid_t tid)
{
    if (mark == lk->mark)
        return thread_alive(lk->pid, tid);
    return lk->detached || os_lock_held(lk->lock_fd, LF_PID + pid, F_WRLCK) != 0;
}

/* The kernel releases a robust mutex whose holder dies (FUTEX_OWNER_DIED,
 * then EOWNERDEAD to a waiter), but gives up when the dying process must
 * fault the word's page in with SIGKILL pending (a lock file page that
 * write-back made read-only): the mutex stays held by the dead.  So a
 * waiter looks every STUCK_NS: when the word names the holder recorded in
 * the lock file, the record did not change while it was read (no mix of
 * two holders' fields) and that holder is not alive, it does what the
 * kernel would have.  A holder that died before recording itself is not
 * judged: the word's thread id alone cannot say whose it is. */
static void unstick(struct tm_locks *lk)
{
#ifdef __GLIBC__
    struct tm_shared *sh = lk->sh;
    int *word = &sh->writer.__data.__lock, w = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    uint64_t who = sh->writer_who, mark = sh->writer_mark;
    pid_t tid = w & FUTEX_TID_MASK, pid = sh->writer_pid;
    if (!tid || (w & FUTEX_OWNER_DIED) || (pid_t)(uint32_t)who != tid || sh->writer_who != who ||
        lock_holder_alive(lk, mark, pid, tid) || sh->writer_who != who)
        return;
    if (__atomic_compare_exchange_n(word, &w, (w & FUTEX_WAITERS) | FUTEX_OWNER_DIED, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        os_futex_wake((_Atomic uint32_t *)word, INT_MAX, 1);
#else
    (void)lk;
#endif
}

/* pthread_mutex_lock, with a look at the holder every STUCK_NS (of the
 * real-time clock, which every sanitizer knows the timed lock of). */
static int lock_robust(struct tm_locks *lk)
{
    struct timespec t;
    int r;
    do {
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_sec += (t.tv_nsec + STUCK_NS) / 1000000000l;
        t.tv_nsec = (t.tv_nsec + STUCK_NS) % 1000000000l;
        if ((r = pthread_mutex_timedlock(&lk->sh->writer, &t)) == ETIMEDOUT)
            unstick(lk);
    } while (r == ETIMEDOUT);
    return r;
}

/* Takes the robust mutex: 1 when its last holder died (heal), 0, or a
 * negative errno. */
int robust_take(struct tm_locks *lk, int wait)
{
    int r = wait ? lock_robust(lk) : pthread_mutex_trylock(&lk->sh->writer);
    if (r == EBUSY) { /* perhaps held by the dead */
        unstick(lk);
        r = pthread_mutex_trylock(&lk->sh->writer);
    }
    if (r == 0 || r == EOWNERDEAD) { /* recorded: see struct tm_shared */
        lk->sh->writer_pid = lk->pid;
        lk->sh->writer_mark = lk->mark;
        lk->sh->writer_who = ((lk->sh->writer_who >> 32) + 1) << 32 | (uint32_t)os_tid();
    }
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(&lk->sh->writer);
        return 1;
    }
    return -r;
}

void robust_release(struct tm_locks *lk)
{
    lk->sh->writer_who &= ~(uint64_t)UINT32_MAX; /* no holder recorded: the count stays */
    pthread_mutex_unlock(&lk->sh->writer);
}
