/*
 * tx.c — write and read transactions: begin, dirty-page tracking, commit,
 * abort, and the fault handler that turns stray writes into diagnostics.
 *
 * Outside a write transaction the arena is mapped read-only.  Inside one,
 * the first write to a page faults; the handler (on the writer thread) makes
 * that page writable and records it, so tracking costs one fault per page
 * dirtied, whatever the arena's size.  Changed pages are private
 * copy-on-write copies of the file's pages (MAP_PRIVATE): nothing reaches the
 * store file before commit, and abort simply drops them.
 *
 * Each such fault costs a signal and an mprotect that splits the mapping.
 * Once a transaction has taken enough of them that one walk over the whole
 * arena is cheaper than what they cost so far, the whole arena is made
 * writable instead (bulk mode: later first writes are plain copy-on-write
 * faults) and commit finds the private copies with one PAGEMAP_SCAN of the
 * page tables.  The switch comes after 1/BULK_RATIO of the arena's pages
 * (at least BULK_MIN, at most BULK_PAGES): a transaction never pays much
 * more than twice what the better of the two ways would have cost, and no
 * transaction runs into vm.max_map_count.  In bulk mode a stray write by
 * another thread is not caught: it joins the transaction.
 *
 * Commit, in order (the commit point is step 3):
 *   1. stamp the superblock: seq + 1, log position (on a copy when the
 *      transaction did not write it, so its page is never copied on write);
 *   2. append the dirty pages to the log as one checksummed record;
 *   3. fdatasync the log (TMF_SYNC=full);
 *   4. take LOCK_DATA exclusively, write the pages into the store file,
 *      superblock last (store.c S2);
 *   5. write-protect again (one call for a span of up to PROTECT_SPAN
 *      pages) and keep the private copies, which now equal the file, up to
 *      KEEP_MAX pages ("kept copies" below), or drop them (MADV_DONTNEED,
 *      one call);
 *   6. release LOCK_DATA and LOCK_WRITER together, and checkpoint when the
 *      log has grown past CKPT_BYTES (after LOCK_DATA, so readers elsewhere
 *      do not wait for it).
 * A failure before 3 rolls the transaction back and returns the error; a
 * failure after it leaves the commit durable (it returns 0) and poisons the
 * handle, which keeps the store locked until closed or healed.  Any I/O
 * error poisons the handle: it refuses further transactions (TM_EPOISONED).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "os.h"

/* Write transactions this thread has open, over all stores (the syscall
 * wrappers' test), and the store its malloc-family calls go to (the
 * preload's test: NULL, the zero of a new thread, means glibc). */
TLS int tm_tls_tx;
TLS tm_store *tm_tls_route;
static TLS tm_store *tls_saved_route; /* tm_tls_route during tm_transient_begin */
static TLS int tls_transient;
TLS pid_t tm_tls_tid;
static TLS uint16_t tls_reads[MAX_STORES];
static TLS uint8_t tls_read_locked[MAX_STORES]; /* the outermost read holds the read locks */

static struct sigaction old_segv, old_bus;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
static int handler_err;

pid_t tx_tid_slow(void)
{
    return tm_tls_tid = os_gettid();
}

int tm_in_tx(void)
{
    return tm_tls_tx > 0;
}

/* ---- the fault handler ---- */

/* Reports a misuse; the fault repeats on return and ends the process. */
static void die(int sig, const char *what, const char *why, uintptr_t addr)
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

/* Dirty pages after which bulk mode is cheaper: see the top of the file. */
static size_t bulk_threshold(const tm_store *st)
{
    size_t n = st->mapped / PAGE / BULK_RATIO;
    return n < BULK_MIN ? BULK_MIN : n > BULK_PAGES ? BULK_PAGES : n;
}

/* From now on the scan, not the faults, lists the dirty pages: it finds
 * every private copy whatever the protection, so even a partly failed
 * mprotect leaves nothing untracked (later faults still unprotect pages). */
static void drop_kept_clean(tm_store *st);

static void enter_bulk(tm_store *st)
{
    drop_kept_clean(st); /* or the scan would log them all */
    mprotect(st->base + PAGE, st->mapped - PAGE, PROT_READ | PROT_WRITE);
    st->tx_bulk = 1;
}

/* A fault at addr inside st's reservation.  Returns 1 when handled. */
static int fault(tm_store *st, uintptr_t addr)
{
    uint64_t off = addr - (uintptr_t)st->base, page = off / PAGE;

    if (off >= st->mapped) {
        /* Another process may have grown the arena: map what it committed
         * (read from the file: no lock is held here). */
        uint64_t size = 0;
        if (!tx_owned(st) &&
            os_pread_all(st->fd, &size, sizeof size, PAGE + offsetof(struct tm_super, size)) == 0 &&
            off < size && size <= st->max && size % PAGE == 0 &&
            (size <= st->mapped || store_map_size(st, size) == 0)) /* only ever grows the mapping */
            return 1;
        die(SIGSEGV, "access beyond the end of the arena at", NULL, addr);
        return 1;
    }
    if (!tx_owned(st) || st->forked) {
        die(SIGSEGV, "write to persistent address", "outside a write transaction", addr);
        return 1;
    }
    if (page == 0) {
        die(SIGSEGV, "write to the store header at", NULL, addr);
        return 1;
    }
    if (mprotect(st->base + page * PAGE, PAGE, PROT_READ | PROT_WRITE) < 0) {
        die(SIGSEGV, "cannot unprotect page at", "(vm.max_map_count?)", addr);
        return 1;
    }
    st->dirty[st->ndirty++] = page;
    st->sb_dirty |= page == 1;
    if (st->ndirty >= bulk_threshold(st) && !st->tx_bulk)
        enter_bulk(st);
    return 1;
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    uintptr_t addr = (uintptr_t)si->si_addr;
    int saved = errno, i;
    for (i = 0; i < MAX_STORES; i++) {
        tm_store *st = store_registry[i];
        if (st && addr >= (uintptr_t)st->base && addr < (uintptr_t)st->base + st->max) {
            if (sig == SIGBUS)
                die(SIGBUS, "I/O error or truncated store file at", NULL, addr);
            else
                fault(st, addr);
            errno = saved;
            return;
        }
    }
    errno = saved;
    chain(sig == SIGSEGV ? &old_segv : &old_bus, sig, si, uc);
}

static void after_fork_child(void)
{
    int i;
    store_fork_done();
    tm_tls_tx = 0;
    tm_tls_route = tls_saved_route = NULL;
    tls_transient = 0;
    memset(tls_reads, 0, sizeof tls_reads);
    memset(tls_read_locked, 0, sizeof tls_read_locked);
    tm_tls_tid = 0;
    for (i = 0; i < MAX_STORES; i++) {
        tm_store *st = store_registry[i];
        if (!st)
            continue;
        st->forked = 1;
        if (st->tx_tid) /* the parent's transaction made pages writable: stray writes must fault here too */
            mprotect(st->base + PAGE, st->mapped - PAGE, PROT_READ);
    }
}

static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &old_segv) < 0 || sigaction(SIGBUS, &sa, &old_bus) < 0)
        handler_err = -errno;
    else if ((handler_err = -pthread_atfork(store_fork_prepare, store_fork_done, after_fork_child)) == 0)
        handler_err = 0;
}

int tx_install_handler(void)
{
    pthread_once(&handler_once, install);
    return handler_err;
}

/* ---- touching (for system calls that write into the arena) ---- */

int tx_touch(tm_store *st, void *p, size_t len)
{
    uintptr_t a = (uintptr_t)p, end = a + len, base = (uintptr_t)st->base;
    if (!tx_owned(st))
        return TM_ENOTX;
    if (len == 0)
        return 0;
    if (a < base + PAGE || end < a || end > base + st->mapped)
        return EFAULT;
    /* A same-value write per page: the fault handler does the rest. */
    for (a &= ~(uintptr_t)(PAGE - 1); a < end; a += PAGE) {
        volatile char *c = (volatile char *)(a < (uintptr_t)p ? (uintptr_t)p : a);
        *c = *c;
    }
    return 0;
}

/* ---- bulk mode: find the private copies ---- */

/* PAGEMAP_SCAN (Linux 6.7), declared here for older headers. */
#define PM_IOC_SCAN _IOWR('f', 16, struct pm_scan)
#define PM_IS_FILE (1u << 2)
#define PM_IS_PRESENT (1u << 3)
#define PM_IS_SWAPPED (1u << 4)
struct pm_region {
    uint64_t start, end, categories;
};
struct pm_scan {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PM_VEC 128

/* One walk of the page tables: appends the runs of private pages (present
 * or swapped, not the file's own) of [from, to) to st->dirty.  Returns
 * -ENOTTY (or -EINVAL) on kernels without the ioctl. */
static int scan_ioctl(tm_store *st, uintptr_t from, uintptr_t to)
{
    struct pm_region vec[PM_VEC];
    struct pm_scan a;
    while (from < to) {
        long n, i;
        memset(&a, 0, sizeof a);
        a.size = sizeof a;
        a.start = from;
        a.end = to;
        a.vec = (uintptr_t)vec;
        a.vec_len = PM_VEC;
        a.category_inverted = PM_IS_FILE;
        a.category_mask = PM_IS_FILE;
        a.category_anyof_mask = PM_IS_PRESENT | PM_IS_SWAPPED;
        a.return_mask = PM_IS_PRESENT | PM_IS_SWAPPED;
        if ((n = os_calls.ioctl(st->pm_fd, PM_IOC_SCAN, &a)) < 0)
            return (int)n;
        for (i = 0; i < n; i++)
            for (uintptr_t p = vec[i].start; p < vec[i].end; p += PAGE)
                st->dirty[st->ndirty++] = (p - (uintptr_t)st->base) / PAGE;
        if (a.walk_end <= from)
            return -EIO;
        from = a.walk_end;
    }
    return 0;
}

/* The same from /proc/self/pagemap's entries, 8 bytes a page, on kernels
 * before 6.7. */
#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)
#define PM_FILE (1ull << 61)
#define PM_BATCH 65536

static int scan_read(tm_store *st, uint64_t first, uint64_t npages)
{
    uint64_t *pm = os_alloc(PM_BATCH * sizeof *pm), p;
    int r = 0;
    if (!pm)
        return -ENOMEM;
    for (p = first; p < npages && r == 0; p += PM_BATCH) {
        uint64_t n = npages - p < PM_BATCH ? npages - p : PM_BATCH, i;
        uint64_t vpn = ((uintptr_t)st->base >> PAGE_SHIFT) + p;
        ssize_t got = pread(st->pm_fd, pm, n * 8, (off_t)(vpn * 8));
        if (got != (ssize_t)(n * 8)) {
            r = got < 0 ? -errno : -EIO;
            break;
        }
        for (i = 0; i < n; i++)
            if ((pm[i] & (PM_PRESENT | PM_SWAPPED)) && !(pm[i] & PM_FILE))
                st->dirty[st->ndirty++] = p + i;
    }
    os_free(pm, PM_BATCH * sizeof *pm);
    return r;
}

/* Replaces st->dirty with every page of the arena that has a private copy,
 * in ascending order. */
int tx_dirty_scan(tm_store *st)
{
    static atomic_int no_ioctl;
    int r;
    if (st->pm_fd < 0 && (st->pm_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0)
        return -errno;
    st->ndirty = 0;
    if (!no_ioctl) {
        r = scan_ioctl(st, (uintptr_t)st->base + PAGE, (uintptr_t)st->base + st->mapped);
        if (r != -ENOTTY && r != -EINVAL)
            return r;
        no_ioctl = 1;
        st->ndirty = 0;
    }
    return scan_read(st, 1, st->mapped / PAGE);
}

/* ---- begin ---- */

static int check_usable(tm_store *st)
{
    if (unlikely(st->forked)) {
        int r = store_revive(st);
        if (r < 0)
            return tm__err(r);
    }
    return st->poisoned ? TM_EPOISONED : 0;
}

static void check_kept(tm_store *st);

int tm_store_begin(tm_store *st)
{
    int r;
    if ((r = check_usable(st)) != 0)
        return r;
    if (st->read_only)
        return EROFS;
    if (tx_owned(st)) {
        st->tx_depth++;
        return 0;
    }
    if (tls_reads[st->slot])
        return TM_EREADTX;
    pthread_rwlock_wrlock(&st->rw);
    if ((r = os_lock(st->fd, LOCK_WRITER, F_WRLCK, 1)) < 0) {
        pthread_rwlock_unlock(&st->rw);
        return tm__err(r);
    }
    if ((r = store_heal(st)) < 0 || (r = store_refresh(st)) < 0) {
        os_lock(st->fd, LOCK_WRITER, F_UNLCK, 0);
        pthread_rwlock_unlock(&st->rw);
        return tm__err(r);
    }
    check_kept(st);
    st->tx_size0 = super_of(st)->size;
    st->ndirty = 0;
    st->sb_dirty = 0;
    st->sb_copy = 0;
    st->tx_bulk = 0;
    st->tx_depth = 1;
    st->tx_tid = tx_my_tid();
    tm_tls_tx++;
    if (tls_transient)
        tls_saved_route = tls_saved_route ? tls_saved_route : st;
    else if (!tm_tls_route)
        tm_tls_route = st;
    return 0;
}

void tm_transient_begin(void)
{
    if (tls_transient++ == 0) {
        tls_saved_route = tm_tls_route;
        tm_tls_route = NULL;
    }
}

void tm_transient_end(void)
{
    if (tls_transient > 0 && --tls_transient == 0) {
        tm_tls_route = tls_saved_route;
        tls_saved_route = NULL;
    }
}

/* ---- end of a transaction ---- */

static int read_lock(tm_store *st);

/* Another store whose write transaction this thread has open, if any: the
 * malloc family goes there once the one it went to ends. */
static tm_store *other_owned(const tm_store *st)
{
    for (int i = 0; tm_tls_tx > 0 && i < MAX_STORES; i++) {
        tm_store *o = store_registry[i];
        if (o && o != st && tx_owned(o))
            return o;
    }
    return NULL;
}

/* Unlocks and forgets the transaction.  A read transaction begun inside it
 * goes on under read locks of its own. */
void tx_release(tm_store *st)
{
    st->tx_tid = 0;
    st->tx_depth = 0;
    st->tx_bulk = 0;
    st->ndirty = 0;
    st->sb_copy = 0;
    tm_tls_tx--;
    if (tm_tls_route == st)
        tm_tls_route = other_owned(st);
    if (tls_saved_route == st)
        tls_saved_route = other_owned(st);
    if (!st->apply_pending) /* a poisoned apply keeps readers out (store.c S2) */
        os_lock_range(st->fd, LOCK_WRITER, 2, F_UNLCK, 0); /* and LOCK_DATA, if apply took it */
    pthread_rwlock_unlock(&st->rw);
    if (tls_reads[st->slot] && !st->apply_pending)
        read_lock(st); /* on failure it reads unlocked, and read_end unlocks nothing */
}

/* Calls fn on each run of consecutive page numbers in pages[0..n). */
static void for_runs(tm_store *st, const uint64_t *pages, size_t n, void (*fn)(char *, size_t))
{
    size_t i = 0, j;
    while (i < n) {
        for (j = i + 1; j < n && pages[j] == pages[j - 1] + 1; j++)
            ;
        fn(st->base + pages[i] * PAGE, (j - i) * PAGE);
        i = j;
    }
}

static void protect(char *p, size_t len)
{
    mprotect(p, len, PROT_READ);
}

/* MADV_DONTNEED on many runs in one process_madvise(2) call on PIDFD_SELF
 * (recent kernels accept any advice for the calling process), else, on
 * older kernels or any error, one madvise each. */
#define IOV_BATCH 64

static void discard(tm_store *st, const uint64_t *pages, size_t n)
{
    static atomic_int no_batch;
    struct iovec iov[IOV_BATCH];
    size_t i = 0, j, k;
    while (i < n) {
        ssize_t want = 0;
        for (k = 0; k < IOV_BATCH && i < n; k++, i = j) {
            for (j = i + 1; j < n && pages[j] == pages[j - 1] + 1; j++)
                ;
            iov[k].iov_base = st->base + pages[i] * PAGE;
            iov[k].iov_len = (j - i) * PAGE;
            want += (ssize_t)iov[k].iov_len;
        }
        if (no_batch || k == 1 || os_calls.madvise_self(iov, k, MADV_DONTNEED) != want) {
            no_batch |= k > 1;
            for (j = 0; j < k; j++)
                madvise(iov[j].iov_base, iov[j].iov_len, MADV_DONTNEED);
        }
    }
}

/* Spans of at most this many pages are write-protected in one call (the
 * clean pages inside are read-only already): one VMA merge, not one a run. */
#define PROTECT_SPAN 4096

/* The dirty pages that have a private copy: all but page 1 when the
 * transaction did not write it (it is first once sorted). */
static const uint64_t *copies(tm_store *st, size_t *n)
{
    *n = st->ndirty;
    if (st->sb_copy && !st->sb_dirty) {
        --*n;
        return st->dirty + 1;
    }
    return st->dirty;
}

/* Write-protects the dirty pages again. */
static void protect_dirty(tm_store *st, const uint64_t *d, size_t n)
{
    size_t i;
    uint64_t lo = UINT64_MAX, hi = 0;
    if (st->tx_bulk) { /* the whole arena, unless settled: protected already */
        if (st->tx_bulk == 1)
            mprotect(st->base + PAGE, st->mapped - PAGE, PROT_READ);
        return;
    }
    for (i = 0; i < n; i++) {
        lo = d[i] < lo ? d[i] : lo;
        hi = d[i] > hi ? d[i] : hi;
    }
    if (n && hi - lo < PROTECT_SPAN)
        protect(st->base + lo * PAGE, (hi - lo + 1) * PAGE);
    else
        for_runs(st, d, n, protect);
}

/* ---- kept copies ----
 * After a commit, the private copies of the pages it wrote hold exactly what
 * the store file holds.  Up to KEEP_MAX of them are kept, read-only, so a
 * later transaction that writes them again takes its fault without copying
 * the page, and its commit has nothing to drop.  They go stale as soon as
 * anyone else commits: every writer (after healing) and every first reader
 * compares the committed sequence number, read through the superblock's
 * page, which is never kept, with kept_seq, and drops them all on a
 * difference.  Aborts, failed applies and bulk transactions drop them too. */

static void drop_kept(tm_store *st)
{
    discard(st, st->kept, st->nkept);
    st->nkept = 0;
}

/* Write-protects the dirty pages again and drops every private copy: the
 * transaction's and the kept ones (none in bulk mode: entering it dropped
 * them, or left them among the dirty pages). */
static void drop_copies(tm_store *st)
{
    size_t n;
    const uint64_t *d = copies(st, &n);
    protect_dirty(st, d, n);
    discard(st, d, n);
    drop_kept(st);
}

static void check_kept(tm_store *st)
{
    if (st->nkept && super_of(st)->seq != st->kept_seq)
        drop_kept(st);
}

/* Commit's step 5 in per-page mode (the pages are read-only already): drop
 * the superblock's copy, keep the others; all of them are dropped instead
 * when the kept set would pass KEEP_MAX. */
static void keep_copies(tm_store *st, uint64_t seq)
{
    size_t n, i = 0, j = 0, k = 0;
    const uint64_t *d = copies(st, &n);
    uint64_t *out = st->kept + KEEP_MAX;
    if (n && d[0] == 1) { /* the superblock, written by the transaction */
        discard(st, d, 1);
        d++, n--;
    }
    while ((i < st->nkept || j < n) && k < KEEP_MAX) { /* merge the sorted lists */
        if (j == n || (i < st->nkept && st->kept[i] < d[j]))
            out[k++] = st->kept[i++];
        else if (i == st->nkept || d[j] < st->kept[i])
            out[k++] = d[j++];
        else
            out[k++] = d[j++], i++;
    }
    if (i < st->nkept || j < n) { /* more than KEEP_MAX */
        discard(st, d, n);
        drop_kept(st);
        return;
    }
    memcpy(st->kept, out, k * sizeof *out);
    st->nkept = k;
    st->kept_seq = seq;
}

static void sort_pages(uint64_t *v, size_t n);

/* Entering bulk mode: drops the kept copies this transaction has not
 * written (those it has are in st->dirty; the scan will list them). */
static void drop_kept_clean(tm_store *st)
{
    size_t i = 0, j = 0, k = 0, n = st->ndirty;
    uint64_t *out = st->kept + KEEP_MAX;
    if (!st->nkept)
        return;
    sort_pages(st->dirty, n); /* the order no longer matters: the scan replaces the list */
    while (i < st->nkept) {
        while (j < n && st->dirty[j] < st->kept[i])
            j++;
        if (j == n || st->dirty[j] != st->kept[i])
            out[k++] = st->kept[i];
        i++;
    }
    discard(st, out, k);
    st->nkept = 0;
}

/* For calls that read outside a transaction (tm_store_root, _stats,
 * _check): drops stale kept copies, unless a transaction of this process
 * is open (then they are checked when it began, or its pages are in use). */
void tx_kept_refresh(tm_store *st)
{
    if (!st->nkept || pthread_rwlock_tryrdlock(&st->rw) != 0)
        return;
    pthread_mutex_lock(&st->mu);
    if (st->readers == 0)
        check_kept(st);
    pthread_mutex_unlock(&st->mu);
    pthread_rwlock_unlock(&st->rw);
}

/* Undoes the size change of the transaction. */
static void restore_size(tm_store *st)
{
    if (st->mapped > st->tx_size0) {
        mprotect(st->base + st->tx_size0, st->mapped - st->tx_size0, PROT_NONE);
        madvise(st->base + st->tx_size0, st->mapped - st->tx_size0, MADV_DONTNEED);
        os_ftruncate(st->fd, (off_t)st->tx_size0);
        st->mapped = st->tx_size0;
    }
}

/* Bulk mode, at the end of a transaction: write-protect the whole arena
 * first, so that from here on a write by another thread faults instead of
 * making a copy that nobody would log or drop, then list the copies. */
static int bulk_settle(tm_store *st)
{
    int r;
    if (mprotect(st->base + PAGE, st->mapped - PAGE, PROT_READ) < 0)
        return -errno;
    if ((r = tx_dirty_scan(st)) < 0)
        return r;
    st->tx_bulk = 2;
    st->sb_dirty = st->ndirty && st->dirty[0] == 1; /* sorted; page 0 is never a copy */
    return 0;
}

void tx_rollback(tm_store *st)
{
    if (st->tx_bulk == 1 && bulk_settle(st) < 0) { /* no list of the copies: drop them all */
        madvise(st->base + PAGE, st->mapped - PAGE, MADV_DONTNEED);
        mprotect(st->base + PAGE, st->mapped - PAGE, PROT_READ);
    } else {
        drop_copies(st);
    }
    restore_size(st);
}

void tm_store_abort(tm_store *st)
{
    if (!tx_owned(st))
        return;
    tx_rollback(st);
    tx_release(st);
}

/* ---- commit ---- */

/* In-place heapsort: the commit path must not allocate (qsort may call
 * malloc, which the preload would route into the arena being committed). */
static void sift(uint64_t *v, size_t i, size_t n)
{
    uint64_t x = v[i];
    for (size_t c; (c = 2 * i + 1) < n; i = c) {
        if (c + 1 < n && v[c + 1] > v[c])
            c++;
        if (v[c] <= x)
            break;
        v[i] = v[c];
    }
    v[i] = x;
}

static void sort_pages(uint64_t *v, size_t n)
{
    size_t i;
    for (i = n / 2; i-- > 0;)
        sift(v, i, n);
    while (n > 1) {
        uint64_t t = v[0];
        v[0] = v[--n];
        v[n] = t;
        sift(v, 0, n);
    }
}

/* The superblock being committed: once write_record has begun, always the
 * stamped copy (st->sb_copy). */
static struct tm_super *commit_super(tm_store *st)
{
    return (struct tm_super *)st->sb_buf;
}

/* Steps 1-3: returns 0 once the record is durable. */
static int write_record(tm_store *st)
{
    struct tm_super *sb;
    uint64_t len;
    int r;

    if (st->tx_bulk && (r = bulk_settle(st)) < 0)
        return r;
    /* The fault handler changed st->ndirty behind the compiler's back. */
    atomic_signal_fence(memory_order_seq_cst);
    /* The superblock is always logged and written, but stamped on a copy:
     * the arena's page keeps only what the transaction wrote into it, and
     * when that is nothing it stays the file's page (no fault, no private
     * copy to drop; the store write shows through). */
    memcpy(st->sb_buf, st->base + PAGE, PAGE);
    st->sb_copy = 1;
    if (st->tx_bulk) {
        if (!st->sb_dirty) { /* the list is sorted: page 1 goes first */
            memmove(st->dirty + 1, st->dirty, st->ndirty * sizeof *st->dirty);
            st->dirty[0] = 1;
            st->ndirty++;
        }
    } else {
        const uint64_t *d;
        size_t n;
        if (!st->sb_dirty)
            st->dirty[st->ndirty++] = 1;
        sort_pages(st->dirty, st->ndirty);
        /* Read-only again before the record is written: from here on a
         * stray write by another thread faults, as in bulk mode. */
        d = copies(st, &n);
        protect_dirty(st, d, n);
    }
    sb = commit_super(st);
    sb->seq += 1;
    len = log_record_len(st->ndirty);
    if (!log_fits(st, len)) { /* the ring is full: restart it (log.c L5) */
        int grow = st->n_commits - st->ckpt_commits < RING_MIN_COMMITS;
        if ((r = store_checkpoint_at(st, sb->seq - 1, st->tx_size0)) < 0)
            return r;
        if (grow && (r = log_grow_ring(st)) < 0)
            return r;
    }
    sb->log_gen = st->gen;
    sb->log_tail = st->log_off + len;
    sb->checksum = super_checksum(sb);
    if ((r = log_append(st, sb->seq, st->dirty, st->ndirty, &len)) < 0)
        return r;
    if (st->sync == TM_SYNC_FULL) {
        if ((r = os_fdatasync(st->log_fd)) < 0)
            return r;
        st->n_syncs++;
    }
    return 0;
}

/* Step 4 (store.c S2). */
static int apply(tm_store *st)
{
    size_t i, j;
    int r;
    if ((r = os_lock(st->fd, LOCK_DATA, F_WRLCK, 1)) < 0)
        return r;
    for (i = 0; i < st->ndirty; i = j) { /* runs of neighbours in one write */
        uint64_t pg = st->dirty[i];
        for (j = i + 1; pg != 1 && j < st->ndirty && st->dirty[j] == st->dirty[j - 1] + 1; j++)
            ;
        if (pg != 1 && (r = os_pwrite_all(st->fd, st->base + pg * PAGE, (j - i) * PAGE, (off_t)(pg * PAGE))) < 0)
            return r;
    }
    return os_pwrite_all(st->fd, tx_page(st, 1), PAGE, PAGE);
}

int tm_store_commit(tm_store *st)
{
    int r;
    if (!tx_owned(st))
        return TM_ENOTX;
    if (--st->tx_depth > 0)
        return 0;
    if (st->ndirty == 0 && !st->tx_bulk) { /* nothing written: nothing to log */
        tx_release(st);
        return 0;
    }
    if ((r = write_record(st)) < 0) {
        log_invalidate(st, st->log_off); /* a record that failed must never be replayed */
        st->poisoned = 1;
        tx_rollback(st);
        tx_release(st);
        return tm__err(r);
    }
    st->apply_off = st->log_off;
    st->apply_seq = commit_super(st)->seq;
    st->log_off = commit_super(st)->log_tail;
    st->n_commits++;
    if ((r = apply(st)) < 0) {
        st->poisoned = 1;
        st->apply_pending = 1; /* keeps LOCK_DATA and LOCK_WRITER: store_reapply */
    }
    if (r == 0 && !st->tx_bulk)
        keep_copies(st, st->apply_seq);
    else
        drop_copies(st);
    if (r == 0 && st->log_off - LOG_START >= CKPT_BYTES) {
        os_lock(st->fd, LOCK_DATA, F_UNLCK, 0); /* readers need not wait for it */
        if (store_checkpoint(st) < 0)
            st->poisoned = 1;
    }
    tx_release(st); /* releases LOCK_DATA with LOCK_WRITER */
    return 0;
}

/* ---- read transactions ---- */

/* A read-only handle never heals, which is what refreshes the log length
 * of a read-write one: it looks at the log's length itself. */
static void ro_log_len(tm_store *st)
{
    struct stat ls;
    if (st->read_only && fstat(st->log_fd, &ls) == 0)
        st->log_len = (uint64_t)ls.st_size;
}

/* A read-only handle cannot heal: it waits for the live writer, if any, to
 * finish (a shared hold of the writer lock), then looks again.  A record
 * still pending then belongs to a dead writer: EROFS, recovery needed. */
static int lock_readers_ro(tm_store *st)
{
    struct tm_super *sb = super_of(st);
    uint64_t off;
    int r;
    if ((r = os_lock(st->fd, LOCK_WRITER, F_RDLCK, 1)) < 0)
        return r;
    if ((r = os_lock(st->fd, LOCK_DATA, F_RDLCK, 1)) == 0 && (r = hdr_current(st)) == 0) {
        ro_log_len(st);
        off = sb->log_gen == st->gen ? sb->log_tail : LOG_START;
        r = log_pending(st, off, sb->seq + 1) ? -EROFS : store_refresh(st);
        if (r < 0)
            os_lock(st->fd, LOCK_DATA, F_UNLCK, 0);
    }
    os_lock(st->fd, LOCK_WRITER, F_UNLCK, 0);
    return r;
}

/* The process's first reader takes the shared data lock, after healing a
 * record that a dead writer left half applied. */
static int lock_readers(tm_store *st)
{
    int r;
    for (;;) {
        struct tm_super *sb = super_of(st);
        uint64_t off;
        if ((r = os_lock(st->fd, LOCK_DATA, F_RDLCK, 1)) < 0)
            return r;
        if ((r = hdr_current(st)) < 0)
            break;
        ro_log_len(st);
        off = sb->log_gen == st->gen ? sb->log_tail : LOG_START;
        if (!log_pending(st, off, sb->seq + 1)) {
            if ((r = store_refresh(st)) == 0)
                check_kept(st);
            return r;
        }
        /* A commit is being applied, or its writer died: wait for the
         * writer lock (never while holding the data lock) and heal. */
        os_lock(st->fd, LOCK_DATA, F_UNLCK, 0);
        if (st->read_only)
            return lock_readers_ro(st);
        if ((r = os_lock(st->fd, LOCK_WRITER, F_WRLCK, 1)) < 0)
            return r;
        r = store_heal(st);
        os_lock(st->fd, LOCK_WRITER, F_UNLCK, 0);
        if (r < 0)
            return r;
    }
    os_lock(st->fd, LOCK_DATA, F_UNLCK, 0);
    return r;
}

int tm_store_read_begin(tm_store *st)
{
    int r = 0;
    if (st->forked && (r = store_revive(st)) < 0)
        return tm__err(r);
    if (st->apply_pending) /* the store file is half written: keep out */
        return TM_EPOISONED;
    if (tls_reads[st->slot] || tx_owned(st)) { /* nested, or inside our own write */
        tls_reads[st->slot]++;
        return 0;
    }
    if ((r = read_lock(st)) < 0)
        return tm__err(r);
    tls_reads[st->slot] = 1;
    return 0;
}

/* This process's readers against its writer, and the first reader's shared
 * data lock against other processes' commits. */
static int read_lock(tm_store *st)
{
    int r = 0;
    pthread_rwlock_rdlock(&st->rw);
    pthread_mutex_lock(&st->mu);
    if (st->readers == 0)
        r = lock_readers(st);
    if (r == 0)
        st->readers++;
    pthread_mutex_unlock(&st->mu);
    if (r < 0) {
        pthread_rwlock_unlock(&st->rw);
        return r;
    }
    tls_read_locked[st->slot] = 1;
    return 0;
}

int tm_store_read_end(tm_store *st)
{
    if (!tls_reads[st->slot])
        return TM_ENOTX;
    if (--tls_reads[st->slot] > 0 || !tls_read_locked[st->slot])
        return 0;
    tls_read_locked[st->slot] = 0;
    pthread_mutex_lock(&st->mu);
    if (--st->readers == 0)
        os_lock(st->fd, LOCK_DATA, F_UNLCK, 0);
    pthread_mutex_unlock(&st->mu);
    pthread_rwlock_unlock(&st->rw);
    return 0;
}
