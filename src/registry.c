/*
 * registry.c — the stores this process has open, looked up by address, and
 * what fork() does to them.
 *
 * Three mutexes, always taken in this order: the default store's
 * (default.c), open_mu, registry_mu.  open_mu is held by tm_open from the
 * duplicate check until the handle is registered and LOCK_OPEN downgraded,
 * by tm_close from its checkpoint until the descriptor is closed, and by a
 * forked child's revival: the process's file locks never conflict with each
 * other, so without it two threads opening one store could both pass the
 * check and both recover it, and an open racing a close would take locks
 * that closing the old descriptor then drops.  registry_mu guards the table
 * itself; the fault handler reads the table without it (atomic slots).
 *
 * fork() must not copy a mutex another thread holds: the prepare handler
 * takes them all (default.c adds its own handler, which runs first), and
 * the child's handler marks every handle FORKED, to be revived at its first
 * use, and forgets this thread's transactions.
 */
#include <errno.h>
#include <sys/stat.h>

#include "internal.h"

tm_store *_Atomic store_registry[MAX_STORES];
_Atomic unsigned registry_fork_gen;
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t open_mu = PTHREAD_MUTEX_INITIALIZER;

void registry_open_lock(void)
{
    pthread_mutex_lock(&open_mu);
}

void registry_open_unlock(void)
{
    pthread_mutex_unlock(&open_mu);
}

/* The one range holding every reservation: the preload's ownership test. */
static void update_bounds(void)
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
    route_set_bounds(hi ? lo : 0, hi); /* no store: an empty range */
}

/* Adds st to the registry (under open_mu: no other open can race it). */
int registry_add(tm_store *st)
{
    int i, r = -EMFILE;
    pthread_mutex_lock(&registry_mu);
    for (i = 0; r == -EMFILE && i < MAX_STORES; i++) {
        if (!store_registry[i]) {
            st->slot = i;
            store_registry[i] = st;
            update_bounds();
            r = 0;
        }
    }
    pthread_mutex_unlock(&registry_mu);
    return r;
}

void registry_remove(tm_store *st)
{
    pthread_mutex_lock(&registry_mu);
    if (st->slot >= 0 && store_registry[st->slot] == st) {
        store_registry[st->slot] = NULL;
        update_bounds();
    }
    pthread_mutex_unlock(&registry_mu);
}

/* Whether fd is a store this process has open already; then the descriptor
 * is parked with that handle, and closed with it.  A refused second open
 * must not close its descriptor: closing any descriptor of the file would
 * release every POSIX lock the process holds on it.  Checked before any
 * lock is taken: the process's own locks never conflict with each other. */
int registry_park(int fd)
{
    struct stat sb;
    int found = 0, i;
    if (os_fstat(fd, &sb) < 0)
        return 0;
    pthread_mutex_lock(&registry_mu);
    for (i = 0; i < MAX_STORES && !found; i++) {
        tm_store *o = store_registry[i];
        if (o && o->dev == sb.st_dev && o->ino == sb.st_ino) {
            if (o->nparked < (int)(sizeof o->parked / sizeof *o->parked))
                o->parked[o->nparked++] = fd; /* else leaked: four refused opens already */
            found = 1;
        }
    }
    pthread_mutex_unlock(&registry_mu);
    return found;
}

/* The store whose reservation holds addr, or NULL.  Safe in a signal
 * handler: no lock, atomic loads. */
tm_store *registry_find(uintptr_t addr)
{
    int i;
    if (addr - tm_arena_lo >= tm_arena_hi - tm_arena_lo)
        return NULL;
    for (i = 0; i < MAX_STORES; i++) {
        tm_store *st = store_registry[i];
        if (st && addr - (uintptr_t)st->base < st->max)
            return st;
    }
    return NULL;
}

/* ---- fork ---- */

void registry_fork_prepare(void)
{
    pthread_mutex_lock(&open_mu);
    pthread_mutex_lock(&registry_mu);
}

void registry_fork_parent(void)
{
    pthread_mutex_unlock(&registry_mu);
    pthread_mutex_unlock(&open_mu);
}

void registry_fork_child(void)
{
    int i;
    registry_fork_parent();
    route_forget();
    os_tid_forget();
    registry_fork_gen++;
    for (i = 0; i < MAX_STORES; i++) {
        tm_store *st = store_registry[i];
        if (st) {
            st->state = ST_FORKED;
            lock_fork_child(&st->lk);
            track_fork_child(st);
        }
    }
}
