/*
 * fault.c — the SIGSEGV/SIGBUS handler: a write transaction's first write
 * to a page (handed to the tracker), and the misuse it turns into a
 * diagnostic naming the address; and tm_touch, for system calls that write
 * into the arena.
 *
 * Faults outside every store's reservation go to the handler that was
 * installed before ours.  A misuse is reported with os_say (no allocation),
 * the default action is restored and the fault, repeating on return, ends
 * the process with the signal's usual status.
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>

#include "internal.h"

static struct sigaction old_segv, old_bus;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_err;

/* Reports a misuse; the fault repeats on return and ends the process. */
static void report(int sig, const char *what, const char *why, uintptr_t addr)
{
    os_say(what, why, addr);
    signal(sig, SIG_DFL);
}

static void chain(struct sigaction *old, int sig, siginfo_t *si, void *uc)
{
    if (old->sa_flags & SA_SIGINFO) {
        if (old->sa_sigaction) {
            old->sa_sigaction(sig, si, uc);
            return;
        }
    } else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
        return;
    }
    signal(sig, SIG_DFL);
}

/* Another process may have grown the arena: map what it committed.  Only
 * ever grows the mapping. */
static int grown_elsewhere(tm_store *st, uint64_t off)
{
    uint64_t size = st->lk.sh->size;
    return !tx_owned(st) && off < size && size <= st->max && size % PAGE == 0 &&
           (size <= st->mapped || store_map_size(st, size) == 0);
}

/* A SIGSEGV at addr inside st's reservation. */
static void fault(tm_store *st, uintptr_t addr)
{
    uint64_t off = addr - (uintptr_t)st->base, page = off / PAGE;

    if (off >= st->mapped) {
        if (!grown_elsewhere(st, off))
            report(SIGSEGV, "access beyond the end of the arena at", NULL, addr);
    } else if (!tx_owned(st) || st->state == ST_FORKED) {
        report(SIGSEGV, "write to persistent address", "outside a write transaction", addr);
    } else if (page == 0) {
        report(SIGSEGV, "write to the store header at", NULL, addr);
    } else if (track_fault(st, page) < 0) {
        report(SIGSEGV, "cannot unprotect page at", "(vm.max_map_count?)", addr);
    }
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    uintptr_t addr = (uintptr_t)si->si_addr;
    int saved = errno;
    tm_store *st;
    if (sig == SIGBUS)
        os_mapped_fault(); /* a commit's apply through the view: it falls back on pwrite */
    st = registry_find(addr);
    if (!st)
        chain(sig == SIGSEGV ? &old_segv : &old_bus, sig, si, uc);
    else if (sig == SIGBUS)
        report(SIGBUS, "I/O error or truncated store file at", NULL, addr);
    else
        fault(st, addr);
    errno = saved;
}

static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &old_segv) < 0 || sigaction(SIGBUS, &sa, &old_bus) < 0)
        install_err = -errno;
    else
        install_err = -pthread_atfork(registry_fork_prepare, registry_fork_parent, registry_fork_child);
}

/* The handler and the fork hooks, once per process. */
int fault_install(void)
{
    pthread_once(&install_once, install);
    return install_err;
}

/* ---- touching (for system calls that write into the arena) ---- */

int fault_touch(tm_store *st, void *p, size_t len)
{
    uintptr_t a = (uintptr_t)p, end = a + len, base = (uintptr_t)st->base;
    if (!tx_owned(st))
        return -TM_ENOTX;
    if (len == 0)
        return 0;
    if (a < base + PAGE || end < a || end > base + st->mapped)
        return -EFAULT;
    /* A same-value write per page: the fault handler does the rest. */
    for (a &= ~(uintptr_t)(PAGE - 1); a < end; a += PAGE) {
        volatile char *c = (volatile char *)(a < (uintptr_t)p ? (uintptr_t)p : a);
        *c = *c;
    }
    return 0;
}

int tm_store_touch(tm_store *st, void *p, size_t len)
{
    return tm__err(fault_touch(st, p, len));
}
