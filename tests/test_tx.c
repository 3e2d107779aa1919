/* test_tx.c — transactions: straddling writes, system calls into the arena,
 * huge transactions, read transactions, other processes, fork, misuse. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <pthread.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "os.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* tm_store_root(st, bytes) from its first page boundary: whole pages to
 * write one by one (NULL stays NULL; no assertion, for forked children). */
static char *page_root(tm_store *st, size_t bytes)
{
    uintptr_t r = (uintptr_t)tm_store_root(st, bytes);
    return (char *)((r + PAGE - 1) & ~(uintptr_t)(PAGE - 1));
}

Test(tx, write_straddling_two_pages)
{
    const char *path = tu_path("s.tmf");
    tm_store *st = tu_open(path);
    char *root = tm_store_root(st, 3 * PAGE);
    char *edge = root + (PAGE - ((uintptr_t)root % PAGE)) - 5; /* 5 bytes before a page end */
    uint64_t v = 0x1122334455667788ull, back;
    TU_OK(tm_store_begin(st));
    memcpy(edge, &v, sizeof v);
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
    st = tu_open(path);
    memcpy(&back, edge, sizeof back);
    cr_assert_eq(back, v);
    TU_OK(tm_close(st));
}

Test(tx, read_syscalls_into_the_arena)
{
    const char *path = tu_path("s.tmf");
    tm_store *st = tu_open(path);
    char *root = tm_store_root(st, 64 * 1024);
    char data[3 * PAGE + 100];
    int fds[2], sv[2];
    FILE *f;
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)('a' + i % 26);
    cr_assert_eq(pipe(fds), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cr_assert_eq(write(fds[1], data, sizeof data), (ssize_t)sizeof data);
    cr_assert_eq(send(sv[1], data, 1000, 0), 1000);
    f = fopen(path, "r"); /* the store's own header bytes, for fread */
    cr_assert_not_null(f);

    TU_OK(tm_store_begin(st));
    size_t got = 0;
    while (got < sizeof data) { /* pages not yet dirty: read(2) must not EFAULT */
        ssize_t n = read(fds[0], root + 10 + got, sizeof data - got);
        cr_assert_gt(n, 0, "read: %s", strerror(errno));
        got += (size_t)n;
    }
    cr_assert_eq(recv(sv[0], root + 20000, 1000, 0), 1000, "recv: %s", strerror(errno));
    cr_assert_eq(fread(root + 30000, 1, 8, f), 8, "fread");
    cr_assert_eq(pread(fileno(f), root + 40000, 8, 0), 8, "pread: %s", strerror(errno));
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
    fclose(f);

    st = tu_open(path);
    root = tm_store_root(st, 64 * 1024);
    cr_assert_arr_eq(root + 10, data, sizeof data);
    cr_assert_arr_eq(root + 20000, data, 1000);
    cr_assert_arr_eq(root + 30000, "TMFSTORE", 8);
    cr_assert_arr_eq(root + 40000, "TMFSTORE", 8);
    TU_OK(tm_close(st));
}

/* glibc's fortified entry points (declared by its fortifying headers only). */
ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
size_t __fread_chk(void *buf, size_t buflen, size_t size, size_t n, FILE *f);

/* A datagram's source address and control data in the arena: the kernel
 * takes the datagram off the socket before it copies them, so a buffer it
 * could not write would lose it.  And the calls _FORTIFY_SOURCE compiles
 * read and fread to. */
Test(tx, datagram_addresses_and_fortified_reads_into_the_arena)
{
    const char *path = tu_path("dgram.tmf");
    tm_store *st = tu_open(path);
    char *root = page_root(st, 16 * PAGE);
    int rx = socket(AF_INET, SOCK_DGRAM, 0), tx = socket(AF_INET, SOCK_DGRAM, 0), fds[2];
    struct sockaddr_in at = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof at;
    cr_assert(rx >= 0 && tx >= 0);
    cr_assert_eq(bind(rx, (struct sockaddr *)&at, sizeof at), 0);
    cr_assert_eq(getsockname(rx, (struct sockaddr *)&at, &len), 0);
    cr_assert_eq(sendto(tx, "one", 3, 0, (struct sockaddr *)&at, sizeof at), 3);
    cr_assert_eq(sendto(tx, "two", 3, 0, (struct sockaddr *)&at, sizeof at), 3);
    cr_assert_eq(pipe(fds), 0);
    cr_assert_eq(write(fds[1], "fortified", 9), 9);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);

    TU_OK(tm_store_begin(st)); /* every buffer on a page of its own, not yet written */
    socklen_t *alen = (socklen_t *)(root + 1 * PAGE);
    *alen = sizeof(struct sockaddr_in);
    ssize_t n = recvfrom(rx, root + 2 * PAGE, 16, 0, (struct sockaddr *)(root + 3 * PAGE), alen);
    cr_assert_eq(n, 3, "recvfrom: %s", strerror(errno));
    struct msghdr *m = (struct msghdr *)(root + 4 * PAGE);
    struct iovec *iov = (struct iovec *)(root + 5 * PAGE);
    iov->iov_base = root + 6 * PAGE, iov->iov_len = 16;
    m->msg_iov = iov, m->msg_iovlen = 1;
    m->msg_name = root + 7 * PAGE, m->msg_namelen = sizeof(struct sockaddr_in);
    m->msg_control = root + 8 * PAGE, m->msg_controllen = 64;
    n = recvmsg(rx, m, 0);
    cr_assert_eq(n, 3, "recvmsg: %s", strerror(errno));
    cr_assert_eq(__read_chk(fds[0], root + 9 * PAGE, 9, PAGE), 9, "__read_chk: %s", strerror(errno));
    cr_assert_eq(__fread_chk(root + 10 * PAGE, PAGE, 1, 8, f), 8, "__fread_chk");
    TU_OK(tm_store_commit(st));
    fclose(f);
    close(rx), close(tx), close(fds[0]), close(fds[1]);
    TU_OK(tm_close(st));

    st = tu_open(path);
    root = page_root(st, 16 * PAGE);
    const struct sockaddr_in *from = (const struct sockaddr_in *)(root + 3 * PAGE);
    cr_assert_arr_eq(root + 2 * PAGE, "one", 3);
    cr_assert_eq(from->sin_family, AF_INET);
    cr_assert_eq(from->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    cr_assert_arr_eq(root + 6 * PAGE, "two", 3);
    cr_assert_eq(((const struct sockaddr_in *)(root + 7 * PAGE))->sin_family, AF_INET);
    cr_assert_arr_eq(root + 9 * PAGE, "fortified", 9);
    cr_assert_arr_eq(root + 10 * PAGE, "TMFSTORE", 8);
    TU_OK(tm_close(st));
}

Test(tx, touch_makes_a_buffer_writable_for_other_calls)
{
    tm_store *st = tu_open(tu_path("s.tmf"));
    char *root = tm_store_root(st, 4 * PAGE);
    cr_assert_eq(tm_store_touch(st, root, 10), TM_ENOTX);
    TU_OK(tm_store_begin(st));
    TU_OK(tm_store_touch(st, root, 4 * PAGE));
    cr_assert_eq(tm_store_touch(st, (char *)tm_store_base(st), 8), EFAULT, "header must stay protected");
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
}

Test(tx, one_gib_in_one_transaction, .timeout = 300)
{
    const char *path = tu_path("big.tmf");
    tm_options o = tu_opts(TM_SYNC_FULL);
    size_t len = (size_t)1 << 30;
    tm_store *st;
    tm_stats_t s;
    o.max_size = (size_t)3 << 30;
    TU_OK(tm_open(path, &o, &st));
    uint64_t *p = tm_store_root(st, len);
    cr_assert_not_null(p, "%s", tm_strerror(errno));
    TU_OK(tm_store_begin(st));
    size_t npages = len / PAGE;
    for (size_t i = 0; i < npages; i++) { /* every page, in scattered order */
        size_t pg = (i * 7919) % npages;
        p[pg * 512] = pg ^ 0xabcdef;
    }
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_stats(st, &s));
    cr_assert_geq(s.log_bytes + (s.checkpoints ? len : 0), len, "the whole gibibyte was logged");
    TU_OK(tm_close(st));
    TU_OK(tm_open(path, &o, &st));
    p = tm_store_root(st, len);
    for (size_t pg = 0; pg < len / PAGE; pg++)
        if (p[pg * 512] != (pg ^ 0xabcdef))
            cr_assert_fail("page %zu: %#lx", pg, (unsigned long)p[pg * 512]);
    TU_OK(tm_close(st));
}

Test(tx, many_scattered_pages_beyond_map_count, .timeout = 300)
{
    /* 70,000 scattered pages, one transaction: more than vm.max_map_count
     * mappings would need if each page were protected on its own. */
    const char *path = tu_path("scatter.tmf");
    tm_options o = tu_opts(TM_SYNC_NONE);
    size_t pages = 140000;
    tm_store *st;
    TU_OK(tm_open(path, &o, &st));
    char *p = tm_store_root(st, pages * PAGE);
    cr_assert_not_null(p);
    TU_OK(tm_store_begin(st));
    for (size_t i = 0; i < pages; i += 2)
        p[i * PAGE + 7] = (char)(i | 1);
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
    TU_OK(tm_open(path, &o, &st));
    p = tm_store_root(st, pages * PAGE);
    for (size_t i = 0; i < pages; i++)
        cr_assert_eq(p[i * PAGE + 7], i % 2 ? 0 : (char)(i | 1), "page %zu", i);
    TU_OK(tm_close(st));
}

Test(tx, abort_after_growth_and_bulk_restores_everything)
{
    tm_store *st = tu_open(tu_path("s.tmf"));
    uint64_t *root = tm_store_root(st, 16 * PAGE);
    tm_stats_t a, b;
    TU_OK(tm_store_begin(st));
    for (int i = 0; i < 16 * 512; i++)
        root[i] = (uint64_t)i;
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_stats(st, &a));
    TU_OK(tm_store_begin(st));
    char *big = tm_store_root(st, (size_t)(BULK_PAGES + 100) * PAGE); /* grows, goes bulk */
    cr_assert_not_null(big);
    memset(big, 0x5a, (size_t)(BULK_PAGES + 100) * PAGE);
    tm_store_abort(st);
    TU_OK(tm_store_stats(st, &b));
    cr_assert_eq(b.arena_size, a.arena_size);
    cr_assert_eq(b.commits, a.commits);
    root = tm_store_root(st, 16 * PAGE);
    for (int i = 0; i < 16 * 512; i++)
        cr_assert_eq(root[i], (uint64_t)i);
    TU_OK(tm_close(st));
}

/* Bulk mode in a small arena: past BULK_MIN first writes the whole arena
 * turns writable and commit finds the private copies by scanning the page
 * tables.  Every other page is written, so the scan returns more runs than
 * one PAGEMAP_SCAN call holds; the same again through /proc/self/pagemap. */
static int no_scan_ioctl(int fd, unsigned long req, void *arg)
{
    (void)fd, (void)req, (void)arg;
    return -ENOTTY;
}

static void bulk_scattered(void)
{
    const char *path = tu_path("s.tmf");
    const size_t pages = 700;
    tm_store *st = tu_open(path);
    char *root = page_root(st, pages * PAGE);
    cr_assert_not_null(root);
    for (int round = 1; round <= 2; round++) {
        TU_OK(tm_store_begin(st));
        for (size_t i = 0; i < pages - 1; i += 2)
            root[i * PAGE + 9] = (char)(round * 7 + i);
        /* With the hot set, pages whose copies were kept (the root's, the
         * first round's) go hot instead, and the scan of the hot pages
         * returns the runs. */
        cr_assert(st->trk.mode == TRACK_BULK || st->trk.hot.npages >= pages / 2,
                  "%zu first writes left per-page mode", (size_t)st->trk.ndirty);
        TU_OK(tm_store_commit(st));
    }
    TU_OK(tm_store_begin(st)); /* an aborted bulk transaction leaves nothing */
    for (size_t i = 0; i < pages - 1; i++)
        root[i * PAGE + 9] = 'x';
    cr_assert(st->trk.mode == TRACK_BULK || st->trk.hot.npages >= pages - 1);
    tm_store_abort(st);
    for (size_t i = 0; i < pages - 1; i++)
        cr_assert_eq(root[i * PAGE + 9], i % 2 ? 0 : (char)(14 + i), "page %zu after abort", i);
    TU_OK(tm_close(st));
    st = tu_open(path);
    root = page_root(st, pages * PAGE);
    for (size_t i = 0; i < pages - 1; i++)
        cr_assert_eq(root[i * PAGE + 9], i % 2 ? 0 : (char)(14 + i), "page %zu after reopen", i);
    TU_OK(tm_close(st));
}

Test(tx, bulk_mode_in_a_small_arena_finds_scattered_pages)
{
    bulk_scattered();
}

/* A bulk transaction keeps the hot set: its hot pages are logged with the
 * other copies, written or not only if changed, and stay hot (writable,
 * tracked without a fault) after it, committed or aborted. */
Test(tx, bulk_transaction_keeps_the_hot_set)
{
    const char *path = tu_path("bh.tmf");
    tm_store *st = tu_open(path);
    uint64_t *root = (uint64_t *)page_root(st, 400 * PAGE);
    const size_t w = PAGE / 8; /* words per page */
    size_t hot;
    TU_OK(tm_close(st)); /* no copy kept from the root's making */
    st = tu_open(path);
    root = (uint64_t *)page_root(st, 400 * PAGE);
    for (int round = 0; round < 3; round++) { /* pages 0..7 written three times: hot */
        TU_OK(tm_store_begin(st));
        for (size_t p = 0; p < 8; p++)
            root[p * w] = (uint64_t)round;
        TU_OK(tm_store_commit(st));
    }
    hot = st->trk.hot.npages;
    cr_assert(!track_uses_uffd(st) || hot >= 8, "%zu hot pages", hot);
    for (int round = 1; round <= 2; round++) {
        TU_OK(tm_store_begin(st));
        root[0] = 100 + (uint64_t)round;                       /* a hot page */
        for (size_t p = 100 + (size_t)round * 100; p < 180 + (size_t)round * 100; p++)
            root[p * w + 1] = p; /* 80 cold pages: bulk */
        cr_assert(st->trk.mode == TRACK_BULK);
        root[3 * w] = 200 + (uint64_t)round;                   /* a hot page, in bulk mode */
        if (round == 1)
            TU_OK(tm_store_commit(st));
        else
            tm_store_abort(st);
        cr_assert_eq(st->trk.hot.npages, hot, "the hot set changed");
    }
    TU_OK(tm_store_begin(st)); /* hot pages take no fault: nothing listed before the scan */
    root[5 * w] = 7;
    cr_assert(!track_uses_uffd(st) || st->trk.ndirty == 0, "%zu pages faulted", (size_t)st->trk.ndirty);
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
    st = tu_open(path);
    root = (uint64_t *)page_root(st, 400 * PAGE);
    cr_assert_eq(root[0], 101);
    cr_assert_eq(root[3 * w], 201);
    cr_assert_eq(root[5 * w], 7);
    cr_assert_eq(root[1 * w], 2);
    for (size_t p = 200; p < 280; p++)
        cr_assert_eq(root[p * w + 1], p, "page %zu", p);
    for (size_t p = 300; p < 380; p++)
        cr_assert_eq(root[p * w + 1], 0, "page %zu (aborted)", p);
    TU_OK(tm_close(st));
}

/* A kernel before 6.7: TMF_TRACK=auto tracks by faults alone (and bulk
 * mode reads /proc/self/pagemap); TMF_TRACK=uffd refuses to open. */
Test(tx, bulk_mode_without_pagemap_scan_reads_the_page_map)
{
    const char *was = getenv("TMF_TRACK");
    char saved[16] = "";
    tm_options o = tu_opts(TM_SYNC_NONE);
    tm_store *st;
    if (was)
        snprintf(saved, sizeof saved, "%s", was);
    os_calls.ioctl = no_scan_ioctl;
    setenv("TMF_TRACK", "uffd", 1);
    cr_assert_eq(tm_open(tu_path("k.tmf"), &o, &st), ENOSYS);
    setenv("TMF_TRACK", "auto", 1);
    bulk_scattered();
    os_calls = os_real;
    if (was)
        setenv("TMF_TRACK", saved, 1);
    else
        unsetenv("TMF_TRACK");
}

/* Commit drops the private copies of the pages it wrote, in one
 * process_madvise or, where the kernel refuses that, one madvise a run:
 * another process's later commit to those pages then shows through. */
static tm_store *drop_st;
static char *drop_root;

static void commit_pages_in_child(void *arg)
{
    (void)arg;
    if (tm_store_begin(drop_st) != 0)
        _exit(1);
    for (int i = 1; i <= 20; i += 9)
        drop_root[i * PAGE] = 'c';
    _exit(tm_store_commit(drop_st) == 0 ? 0 : 2);
}

static ssize_t no_madvise_self(const struct iovec *iov, size_t n, int advice)
{
    (void)iov, (void)n, (void)advice;
    return -EINVAL;
}

static void copies_dropped(void)
{
    char err[256];
    drop_st = tu_open(tu_path("d.tmf"));
    drop_root = page_root(drop_st, 30 * PAGE);
    TU_OK(tm_store_begin(drop_st));
    for (int i = 1; i <= 20; i += 9) /* three runs */
        drop_root[i * PAGE] = 'p';
    TU_OK(tm_store_commit(drop_st));
    int status = tu_run_child(commit_pages_in_child, NULL, err, sizeof err);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status %#x: %s", status, err);
    TU_OK(tm_store_read_begin(drop_st));
    for (int i = 1; i <= 20; i += 9)
        cr_assert_eq(drop_root[i * PAGE], 'c', "page %d still shows this process's copy", i);
    TU_OK(tm_store_read_end(drop_st));
    TU_OK(tm_close(drop_st));
}

Test(tx, commit_drops_private_copies)
{
    copies_dropped();
}

Test(tx, commit_drops_private_copies_without_process_madvise)
{
    os_calls.madvise_self = no_madvise_self;
    copies_dropped();
    os_calls = os_real;
}

Test(tx, empty_commit_writes_nothing)
{
    tm_store *st = tu_open(tu_path("s.tmf"));
    tm_stats_t a, b;
    cr_assert_not_null(tm_store_root(st, 8));
    TU_OK(tm_store_stats(st, &a));
    TU_OK(tm_store_begin(st));
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_stats(st, &b));
    cr_assert_eq(a.commits, b.commits);
    cr_assert_eq(a.syncs, b.syncs);
    TU_OK(tm_close(st));
}

Test(tx, one_fdatasync_per_small_commit)
{
    tm_store *st = tu_open(tu_path("s.tmf"));
    long *root = tm_store_root(st, 8);
    tm_stats_t a, b;
    TU_OK(tm_store_stats(st, &a));
    for (int i = 0; i < 500; i++) {
        TU_OK(tm_store_begin(st));
        root[0] = i + 1;
        TU_OK(tm_store_commit(st));
    }
    TU_OK(tm_store_stats(st, &b));
    cr_assert_eq(b.tx_commits - a.tx_commits, 500);
    /* one per commit, and two per checkpoint of the log ring: at most 1.05 */
    cr_assert_leq(b.syncs - a.syncs, 525, "%lu fdatasync calls for 500 commits",
                  (unsigned long)(b.syncs - a.syncs));
    cr_assert_geq(b.syncs - a.syncs, 500, "a durable commit without its fdatasync");
    TU_OK(tm_close(st));
}

Test(tx, read_transaction_inside_own_write)
{
    tm_store *st = tu_open(tu_path("s.tmf"));
    cr_assert_not_null(tm_store_root(st, 8));
    TU_OK(tm_store_begin(st));
    TU_OK(tm_store_read_begin(st));
    TU_OK(tm_store_read_end(st));
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_read_begin(st));
    cr_assert_eq(tm_store_begin(st), TM_EREADTX);
    TU_OK(tm_store_read_end(st));
    cr_assert_eq(tm_store_read_end(st), TM_ENOTX);
    TU_OK(tm_close(st));
}

/* ---- threads of one process ---- */

struct shared {
    tm_store *st;
    uint64_t *arr; /* 8 pages */
    volatile int stop;
    long reads, violations;
};

static void *thread_reader(void *arg)
{
    struct shared *s = arg;
    while (!s->stop) {
        if (tm_store_read_begin(s->st))
            abort();
        uint64_t v = s->arr[0];
        for (int i = 1; i < 8; i++)
            if (s->arr[i * 512] != v)
                s->violations++;
        tm_store_read_end(s->st);
        s->reads++;
    }
    return NULL;
}

Test(tx, readers_in_the_process_never_see_a_write_in_progress)
{
    struct shared s = {0};
    pthread_t t;
    s.st = tu_open(tu_path("s.tmf"));
    s.arr = tm_store_root(s.st, 8 * PAGE);
    cr_assert_eq(pthread_create(&t, NULL, thread_reader, &s), 0);
    for (uint64_t g = 1; g <= 300; g++) {
        TU_OK(tm_store_begin(s.st));
        for (int i = 0; i < 8; i++) {
            s.arr[i * 512] = g;
            if (i == 3)
                sched_yield();
        }
        if (g % 3 == 0)
            tm_store_abort(s.st);
        else
            TU_OK(tm_store_commit(s.st));
    }
    s.stop = 1;
    pthread_join(t, NULL);
    cr_assert_eq(s.violations, 0, "%ld torn reads", s.violations);
    cr_assert_gt(s.reads, 0);
    TU_OK(tm_close(s.st));
}

/* ---- processes ---- */

/* In a forked child: drop the inherited handle, open the store afresh. */
static tm_store *reopen_in_child(tm_store *inherited, const char *path)
{
    char p[512];
    snprintf(p, sizeof p, "%s", path);
    tm_close(inherited);
    return tu_open_or_exit(p);
}

static void reader_process(tm_store *st)
{
    uint64_t *arr = tm_store_root(st, 64 * PAGE), first = 0, last = 0;
    long violations = 0, reads = 0;
    double end = now() + 3;
    while (now() < end) {
        if (tm_store_read_begin(st))
            _exit(10);
        uint64_t v = arr[0];
        for (int i = 1; i < 64; i++)
            if (arr[i * 512] != v)
                violations++;
        tm_store_read_end(st);
        if (!reads++)
            first = v;
        last = v;
    }
    if (violations)
        _exit(11);
    if (last == first) /* the writer made progress that this reader saw */
        _exit(12);
    _exit(0);
}

/* The kernel releases a robust mutex whose holder dies, unless it cannot
 * (the dying process faults on the mutex's page with SIGKILL pending, or,
 * as here, it has no robust list): the next writer still gets in, within
 * moments, and heals the dead writer's transaction away. */
Test(tx, a_writer_whose_death_the_kernel_missed_does_not_wedge_the_store, .timeout = 30)
{
    const char *path = tu_path("missed.tmf");
    tm_store *st = tu_open(path);
    uint64_t *root = tm_store_root(st, 64);
    TU_OK(tm_store_begin(st));
    root[0] = 1;
    TU_OK(tm_store_commit(st));
    pid_t pid = fork(); /* the handle stays open here: the lock file is not started afresh */
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        tm_options o = tu_opts(TM_SYNC_FULL);
        tm_close(st); /* the inherited handle */
        if (tm_open(path, &o, &st) != 0 || !(root = tm_store_root(st, 64)) || tm_store_begin(st) != 0)
            _exit(90);
        root[0] = 2; /* never committed */
        if (syscall(SYS_set_robust_list, NULL, sizeof(struct robust_list_head)) != 0)
            _exit(91);
        _exit(0); /* holding the writer's mutex, which the kernel now leaves held */
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    double t0 = now();
    TU_OK(tm_store_begin(st));
    cr_assert_lt(now() - t0, 5.0);
    cr_assert_eq(root[0], 1);
    root[0] = 3;
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
    st = tu_open(path);
    cr_assert_eq(((uint64_t *)tm_store_root(st, 64))[0], 3);
    TU_OK(tm_close(st));
}

/* ---- processes in other PID namespaces, where pids repeat ---- */

static tm_store *ns_inherited; /* the test's handle, which a child closes */

/* Runs fn(path, arg) as pid 1 of a new PID namespace (in a new user
 * namespace, which an ordinary user may make), where fn opens the store
 * afresh (reopen_in_child); returns the pid to wait for, whose exit status
 * is fn's: 0 when it passed, 95 when no namespace could be made. */

static pid_t as_pid_1(int (*fn)(const char *, int), const char *path, int arg)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    if (unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0)
        _exit(95);
    pid_t init = fork();
    if (init == 0)
        _exit(getpid() == 1 ? fn(path, arg) : 96);
    int status;
    _exit(init > 0 && waitpid(init, &status, 0) == init && WIFEXITED(status) ? WEXITSTATUS(status) : 97);
}

static void expect_exit_0(pid_t pid, const char *who)
{
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: status %#x", who, status);
}

static int ns_go[2], ns_done[2]; /* pipes: the first namespace's process is in; the second's is through */

static void *slow_increment(void *st) /* not its process's first thread */
{
    uint64_t *counter = tm_store_root(st, 64);
    if (tm_store_begin(st) != 0)
        return (void *)1;
    uint64_t v = *counter;
    if (write(ns_go[1], "x", 1) != 1)
        return (void *)2;
    usleep(400 * 1000); /* many STUCK_NS: waiters look at the holder all along */
    *counter = v + 1;
    return (void *)(intptr_t)(tm_store_commit(st) != 0 ? 3 : 0);
}

/* Whether a byte came down the pipe within 10 s. */
static int heard(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    char c;
    return poll(&p, 1, 10000) == 1 && read(fd, &c, 1) == 1;
}

/* Increments the counter: slowly, in a second thread (slow), or once the
 * other namespace's writer is in, timing its wait for the writer's lock. */
static int ns_writer(const char *path, int slow)
{
    tm_store *st = reopen_in_child(ns_inherited, path);
    void *res = (void *)4;
    if (slow) {
        pthread_t t;
        if (pthread_create(&t, NULL, slow_increment, st) == 0)
            pthread_join(t, &res);
        return tm_close(st) == 0 ? (int)(intptr_t)res : 11;
    }
    if (!heard(ns_go[0]))
        return 12;
    uint64_t *counter = tm_store_root(st, 64);
    double t0 = now();
    if (tm_store_begin(st) != 0)
        return 13;
    if (now() - t0 < 0.2)
        return 14; /* in while the other held the lock */
    ++*counter;
    return tm_store_commit(st) == 0 && tm_close(st) == 0 ? 0 : 15;
}

Test(tx, writers_in_two_pid_namespaces_with_the_same_pid_take_turns, .timeout = 30)
{
    const char *path = tu_path("pidns.tmf");
    tm_store *st = tu_open(path);
    uint64_t *counter = tm_store_root(st, 64);
    TU_OK(tm_store_begin(st));
    *counter = 0;
    TU_OK(tm_store_commit(st));
    cr_assert_eq(pipe(ns_go), 0);
    /* Both writers are pid 1; the slow one holds the lock from a thread
     * the other process does not have. */
    ns_inherited = st;
    pid_t slow = as_pid_1(ns_writer, path, 1), quick = as_pid_1(ns_writer, path, 0);
    expect_exit_0(slow, "the writer holding the lock");
    expect_exit_0(quick, "the writer waiting for it");
    TU_OK(tm_store_read_begin(st));
    cr_assert_eq(*counter, 2, "increments lost: %lu", (unsigned long)*counter);
    tm_store_read_end(st);
    TU_OK(tm_close(st));
}

/* Reads the first word twice in one read transaction, 600 ms apart, while
 * the test commits a change; exits 0 when both reads saw the old value. */
static int ns_reader(const char *path, int unused)
{
    tm_store *st = reopen_in_child(ns_inherited, path);
    (void)unused;
    uint64_t *word = tm_store_root(st, 64);
    if (tm_store_read_begin(st) != 0)
        return 21;
    uint64_t first = *word;
    if (write(ns_go[1], "x", 1) != 1)
        return 22;
    usleep(600 * 1000);
    uint64_t second = *word;
    tm_store_read_end(st);
    return first == 1 && second == 1 ? 0 : 23;
}

/* Once the reader is in, opens and closes the store, then says so. */
static int ns_visitor(const char *path, int unused)
{
    (void)unused;
    if (!heard(ns_go[0]) || tm_close(reopen_in_child(ns_inherited, path)) != 0)
        return 30;
    return write(ns_done[1], "x", 1) == 1 ? 0 : 31;
}

Test(tx, a_reader_keeps_its_slot_when_a_process_with_its_pid_comes_and_goes, .timeout = 30)
{
    const char *path = tu_path("pidns_read.tmf");
    tm_store *st = tu_open(path);
    uint64_t *word = tm_store_root(st, 64);
    TU_OK(tm_store_begin(st));
    *word = 1;
    TU_OK(tm_store_commit(st));
    cr_assert_eq(pipe(ns_go), 0);
    cr_assert_eq(pipe(ns_done), 0);
    ns_inherited = st;
    pid_t reader = as_pid_1(ns_reader, path, 0), visitor = as_pid_1(ns_visitor, path, 0);
    cr_assert(heard(ns_done[0]), "the visitor did not get through");
    double t0 = now();
    TU_OK(tm_store_begin(st));
    *word = 2;
    TU_OK(tm_store_commit(st)); /* its apply waits for the reader to leave */
    cr_assert_gt(now() - t0, 0.1, "applied while the reader was inside");
    expect_exit_0(visitor, "the visitor");
    expect_exit_0(reader, "the reader");
    TU_OK(tm_close(st));
}

Test(tx, reader_process_never_sees_a_half_applied_commit, .timeout = 60)
{
    const char *path = tu_path("s.tmf");
    tm_store *st = tu_open(path);
    uint64_t *arr = tm_store_root(st, 64 * PAGE);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0)
            reader_process(k ? reopen_in_child(st, path) : st); /* inherited, or reopened */
    }
    double end = now() + 3.5;
    for (uint64_t g = 1; now() < end; g++) {
        TU_OK(tm_store_begin(st));
        for (int i = 0; i < 64; i++)
            arr[i * 512] = g;
        TU_OK(tm_store_commit(st));
    }
    for (int k = 0; k < 2; k++) {
        int status;
        waitpid(kids[k], &status, 0);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "reader %d: status %#x", k, status);
    }
    TU_OK(tm_close(st));
}

static tm_store *grow_st;

static void grow_in_child(void *arg)
{
    tm_store *st = reopen_in_child(grow_st, arg);
    char *p = tm_store_root(st, (size_t)8 << 20); /* grows the arena to > 8 MiB */
    if (!p || tm_store_begin(st))
        _exit(2);
    p[((size_t)8 << 20) - 1] = 'z';
    _exit(tm_store_commit(st) ? 3 : 0);
}

static void grow_in_child_more(void *arg)
{
    tm_store *st = reopen_in_child(grow_st, arg);
    char *p = tm_store_root(st, (size_t)8 << 20);
    if (!p || !tm_store_root(st, (size_t)32 << 20)) /* a new, larger root */
        _exit(2);
    p = tm_store_root(st, (size_t)32 << 20);
    if (tm_store_begin(st))
        _exit(3);
    p[(size_t)24 << 20] = 'y';
    _exit(tm_store_commit(st) ? 4 : 0);
}

Test(tx, growth_by_another_process_is_seen)
{
    const char *path = tu_path("s.tmf");
    char arg[512];
    tm_store *st = grow_st = tu_open(path);
    tm_stats_t s;
    cr_assert_not_null(tm_store_root(st, 8));
    snprintf(arg, sizeof arg, "%s", path);
    cr_assert_eq(tu_run_child(grow_in_child, arg, NULL, 0), 0);
    TU_OK(tm_store_read_begin(st));
    char *p = tm_store_root(st, (size_t)8 << 20);
    cr_assert_eq(p[((size_t)8 << 20) - 1], 'z');
    TU_OK(tm_store_stats(st, &s));
    cr_assert_gt(s.arena_size, (uint64_t)8 << 20);
    TU_OK(tm_store_read_end(st));
    /* outside a read transaction, the fault handler maps new size on demand */
    cr_assert_eq(tu_run_child(grow_in_child_more, arg, NULL, 0), 0);
    p = tm_store_root(st, (size_t)8 << 20);
    cr_assert_eq(*(volatile char *)(p + ((size_t)24 << 20)), 'y');
    TU_OK(tm_close(st));
}

/* ---- fork ---- */

Test(tx, fork_child_reads_then_reopens_without_the_parents_lock, .timeout = 30)
{
    const char *path = tu_path("f.tmf");
    tm_store *st = tu_open(path);
    long *root = tm_store_root(st, 2 * sizeof(long));
    int status;
    TU_OK(tm_store_begin(st));
    root[0] = 1;
    pid_t pid = fork();
    if (pid == 0) {
        if (root[0] != 1) /* the child can read what it had mapped */
            _exit(2);
        double t0 = now();
        if (tm_store_begin(st)) /* waits: the parent still holds the writer lock */
            _exit(3);
        if (now() - t0 < 0.15)
            _exit(4);
        if (root[0] != 11) /* the parent's commit, not its uncommitted copy */
            _exit(5);
        root[1] = 22;
        _exit(tm_store_commit(st) ? 6 : 0);
    }
    usleep(300 * 1000);
    root[0] = 11;
    TU_OK(tm_store_commit(st));
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    TU_OK(tm_store_read_begin(st));
    cr_assert_eq(root[0], 11);
    cr_assert_eq(root[1], 22);
    TU_OK(tm_store_read_end(st));
    TU_OK(tm_close(st));
}

Test(tx, fork_child_does_not_commit_the_parents_transaction)
{
    const char *path = tu_path("f.tmf");
    tm_store *st = tu_open(path);
    long *root = tm_store_root(st, sizeof(long));
    int status;
    TU_OK(tm_store_begin(st));
    root[0] = 5;
    pid_t pid = fork();
    if (pid == 0)
        _exit(tm_store_commit(st) == TM_ENOTX ? 0 : 1);
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    tm_store_abort(st);
    cr_assert_eq(root[0], 0);
    TU_OK(tm_close(st));
}

/* Threads of a child all using the inherited handle at once: one of them
 * revives it (a fresh mapping and locks), the others wait for that. */
static tm_store *revive_st;
static pthread_barrier_t revive_go;

static void *child_reader(void *arg)
{
    long *root = arg;
    pthread_barrier_wait(&revive_go);
    for (int i = 0; i < 200; i++) {
        if (tm_store_read_begin(revive_st) != 0 || root[0] != 9 || tm_store_read_end(revive_st) != 0)
            return (void *)1;
    }
    return NULL;
}

Test(tx, fork_child_threads_revive_the_handle_once, .timeout = 60)
{
    revive_st = tu_open(tu_path("rv.tmf"));
    long *root = tm_store_root(revive_st, sizeof(long));
    TU_OK(tm_store_begin(revive_st));
    *root = 9;
    TU_OK(tm_store_commit(revive_st));
    for (int round = 0; round < 30; round++) {
        int status;
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            pthread_t t[8];
            void *bad = NULL, *b;
            alarm(20);
            pthread_barrier_init(&revive_go, NULL, 8);
            for (int i = 0; i < 8; i++)
                if (pthread_create(&t[i], NULL, child_reader, root))
                    _exit(2);
            for (int i = 0; i < 8; i++)
                if (pthread_join(t[i], &b) == 0 && b)
                    bad = b;
            /* every read ended: no reader left on the handle's locks */
            if (bad || revive_st->state == ST_FORKED || lock_readers_inside(&revive_st->lk) != 0)
                _exit(1);
            if (lock_writer_try(&revive_st->lk) < 0)
                _exit(3);
            lock_writer_release(&revive_st->lk);
            _exit(0);
        }
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "round %d: child status %#x", round, status);
    }
    TU_OK(tm_close(revive_st));
}

/* A read transaction begun inside the thread's own write transaction goes
 * on after the commit under read locks of its own, and its end releases
 * exactly those. */
Test(tx, read_begun_inside_a_write_outlives_it)
{
    tm_store *st = tu_open(tu_path("rw.tmf"));
    long *root = tm_store_root(st, sizeof(long));
    TU_OK(tm_store_begin(st));
    TU_OK(tm_store_read_begin(st));
    *root = 7;
    TU_OK(tm_store_commit(st));
    cr_assert_eq(lock_readers_inside(&st->lk), 1, "the read holds no slot after the commit");
    cr_assert_eq(*root, 7);
    TU_OK(tm_store_read_end(st));
    cr_assert_eq(lock_readers_inside(&st->lk), 0, "the read left its slot behind");
    TU_OK(tm_store_read_begin(st)); /* and the next read enters again */
    cr_assert_eq(lock_readers_inside(&st->lk), 1);
    TU_OK(tm_store_read_end(st));
    TU_OK(tm_store_begin(st));
    *root = 8;
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
}

/* Kept copies and reads outside a transaction: tm_store_root and
 * tm_store_check see another process's commit to a page this process kept. */
static void bump_root_in_child(void *arg)
{
    (void)arg;
    long *root = tm_store_root(drop_st, 64 * PAGE);
    if (!root || tm_store_begin(drop_st) != 0)
        _exit(1);
    root[0] = 42;
    _exit(tm_store_commit(drop_st) == 0 ? 0 : 2);
}

Test(tx, reads_outside_a_transaction_see_other_commits)
{
    char err[256], msg[128];
    drop_st = tu_open(tu_path("k.tmf"));
    long *root = tm_store_root(drop_st, 64 * PAGE);
    TU_OK(tm_store_begin(drop_st));
    root[0] = 1; /* its page is kept */
    TU_OK(tm_store_commit(drop_st));
    int status = tu_run_child(bump_root_in_child, NULL, err, sizeof err);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status %#x: %s", status, err);
    TU_OK(tm_store_check(drop_st, msg, sizeof msg));
    root = tm_store_root(drop_st, 64 * PAGE);
    cr_assert_eq(root[0], 42, "a read outside a transaction saw this process's kept copy");
    TU_OK(tm_close(drop_st));
}

/* Kept copies do not inflate a bulk transaction's record. */
Test(tx, bulk_transaction_does_not_log_kept_copies)
{
    tm_stats_t a, b;
    tm_store *st = tu_open(tu_path("kb.tmf"));
    char *root = page_root(st, 200 * PAGE);
    for (int i = 0; i < 60; i++) { /* 60 kept pages */
        TU_OK(tm_store_begin(st));
        root[(100 + i) * PAGE] = 1;
        TU_OK(tm_store_commit(st));
    }
    cr_assert_geq(st->trk.nkept, 60);
    TU_OK(tm_store_stats(st, &a));
    TU_OK(tm_store_begin(st));
    for (int i = 0; i < 20; i++)
        root[i * PAGE] = 2;
    /* With the hot set the kept pages among them go hot instead: the record
     * must stay as small either way. */
    cr_assert(st->trk.mode == TRACK_BULK || st->trk.hot.npages >= 20, "%zu cold, %zu hot pages", st->trk.ncold,
              st->trk.hot.npages);
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_stats(st, &b));
    cr_assert_eq(b.checkpoints, a.checkpoints);
    cr_assert_leq(b.log_bytes - a.log_bytes, log_pages_bound(22), "%llu bytes logged for 21 pages",
                  (unsigned long long)(b.log_bytes - a.log_bytes));
    for (int i = 0; i < 60; i++)
        cr_assert_eq(root[(100 + i) * PAGE], 1);
    TU_OK(tm_close(st));
}

/* A second tm_open of a store this process has open is refused without
 * releasing the process's file locks (closing any descriptor of the file
 * would release them all). */
Test(tx, second_open_in_a_process_keeps_the_locks)
{
    char path[512];
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st, *again = NULL;
    snprintf(path, sizeof path, "%s", tu_path("two.tmf"));
    st = tu_open(path);
    long *root = tm_store_root(st, sizeof(long));
    TU_OK(tm_store_begin(st));
    *root = 5;
    cr_assert_eq(tm_open(path, &o, &again), EBUSY);
    cr_assert_null(again);
    cr_assert(tu_writer_lock_held(path), "the writer lock was released");
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
}

/* ---- misuse ---- */

static tm_store *misuse_st;

static void write_outside(void *arg)
{
    (void)arg;
    long *root = tm_store_root(misuse_st, 8);
    root[0] = 1;
}

Test(tx, write_outside_a_transaction_names_the_address)
{
    char err[512], addr[64];
    misuse_st = tu_open(tu_path("m.tmf"));
    long *root = tm_store_root(misuse_st, 8);
    int status = tu_run_child(write_outside, NULL, err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "status %#x", status);
    snprintf(addr, sizeof addr, "0x%016lx", (unsigned long)(uintptr_t)root);
    cr_assert(strstr(err, addr) && strstr(err, "outside a write transaction"), "stderr: %s", err);
    TU_OK(tm_close(misuse_st));
}

static void write_at(void *arg)
{
    *(volatile char *)arg = 1;
}

/* Every page a transaction wrote is read-only again once it ends: after a
 * commit that write-protects a span in one call, after aborts, and after a
 * bulk commit; the clean pages between stay read-only too.  Probed after
 * each step, since a bulk transaction protects the whole arena again.  (A
 * hot page stays writable; a forked child, which cannot see its writes,
 * finds the whole arena read-only.) */
static void expect_read_only(char *root, size_t page)
{
    char err[512], addr[64];
    int status = tu_run_child(write_at, root + page * PAGE, err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "page %zu: status %#x", page, status);
    cr_assert(strstr(err, "outside a write transaction"), "page %zu: stderr: %s", page, err);
    snprintf(addr, sizeof addr, "0x%016lx", (unsigned long)(uintptr_t)(root + page * PAGE));
    cr_assert(strstr(err, addr), "page %zu: the address %s is not named: %s", page, addr, err);
}

Test(tx, pages_are_read_only_again_after_commit_and_abort)
{
    misuse_st = tu_open(tu_path("m.tmf"));
    char *root = page_root(misuse_st, 201 * PAGE);
    TU_OK(tm_store_begin(misuse_st));
    root[3 * PAGE] = root[150 * PAGE] = 1;
    TU_OK(tm_store_commit(misuse_st));
    expect_read_only(root, 3);
    expect_read_only(root, 77);
    expect_read_only(root, 150);
    TU_OK(tm_store_begin(misuse_st));
    root[7 * PAGE] = root[120 * PAGE] = 3;
    tm_store_abort(misuse_st);
    expect_read_only(root, 7);
    expect_read_only(root, 120);
    TU_OK(tm_store_begin(misuse_st));
    for (size_t i = 0; i < 40; i++)
        root[(4 * i + 1) * PAGE] = 2;
    cr_assert(misuse_st->trk.mode == TRACK_BULK);
    TU_OK(tm_store_commit(misuse_st));
    expect_read_only(root, 41);
    TU_OK(tm_store_begin(misuse_st));
    for (size_t i = 0; i < 40; i++)
        root[(4 * i + 2) * PAGE] = 4;
    cr_assert(misuse_st->trk.mode == TRACK_BULK);
    tm_store_abort(misuse_st);
    expect_read_only(root, 42);
    cr_assert_eq(root[3 * PAGE] + root[150 * PAGE] + root[41 * PAGE] + root[7 * PAGE] + root[42 * PAGE], 1 + 1 + 2);
    TU_OK(tm_close(misuse_st));
}

/* A write by another thread while a bulk commit writes its log record (the
 * arena is protected before the copies are listed): reported, not lost in
 * a private copy that nobody logs or drops. */
static char *stray_at;

static void *stray_thread(void *arg)
{
    (void)arg;
    *(volatile char *)stray_at = 'S';
    return NULL;
}

static ssize_t stray_pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    pthread_t t;
    if (stray_at && pthread_create(&t, NULL, stray_thread, NULL) == 0)
        pthread_join(t, NULL);
    return os_real.writev_at(fd, iov, n, off);
}

static void bulk_commit_with_stray_write(void *arg)
{
    char *root = page_root(misuse_st, 101 * PAGE);
    (void)arg;
    if (tm_store_begin(misuse_st))
        _exit(1);
    for (size_t i = 0; i < 40; i++)
        root[i * PAGE] = 1;
    if (misuse_st->trk.mode != TRACK_BULK)
        _exit(2);
    stray_at = root + 60 * PAGE;
    os_calls.writev_at = stray_pwritev;
    tm_store_commit(misuse_st);
    _exit(0);
}

Test(tx, stray_write_by_another_thread_during_a_bulk_commit_is_reported)
{
    char err[512];
    misuse_st = tu_open(tu_path("m.tmf"));
    cr_assert_not_null(tm_store_root(misuse_st, 101 * PAGE));
    int status = tu_run_child(bulk_commit_with_stray_write, NULL, err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "status %#x, stderr: %s", status, err);
    cr_assert(strstr(err, "outside a write transaction"), "stderr: %s", err);
    TU_OK(tm_close(misuse_st));
}

/* A child forked during a transaction (per-page or bulk) does not inherit
 * writable pages: its stray writes are reported too. */
Test(tx, child_forked_inside_a_transaction_cannot_write)
{
    char err[512];
    misuse_st = tu_open(tu_path("m.tmf"));
    char *root = page_root(misuse_st, 101 * PAGE);
    for (int bulk = 0; bulk <= 1; bulk++) {
        TU_OK(tm_store_begin(misuse_st));
        for (size_t i = 0; i < (bulk ? 40 : 2); i++)
            root[i * PAGE] = 1;
        cr_assert_eq(misuse_st->trk.mode == TRACK_BULK, bulk);
        int status = tu_run_child(write_at, root, err, sizeof err);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "bulk %d: status %#x", bulk, status);
        cr_assert(strstr(err, "outside a write transaction"), "bulk %d: stderr: %s", bulk, err);
        tm_store_abort(misuse_st);
    }
    TU_OK(tm_close(misuse_st));
}

static void write_header(void *arg)
{
    (void)arg;
    if (tm_store_begin(misuse_st))
        _exit(1);
    *(char *)tm_store_base(misuse_st) = 1;
}

Test(tx, write_to_the_header_is_refused)
{
    char err[512];
    misuse_st = tu_open(tu_path("m.tmf"));
    int status = tu_run_child(write_header, NULL, err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "status %#x", status);
    cr_assert(strstr(err, "store header"), "stderr: %s", err);
    TU_OK(tm_close(misuse_st));
}

static void ordinary_segfault(void *arg)
{
    (void)arg;
    int *volatile bad = (int *)16;
    *bad = 1;
}

Test(tx, faults_elsewhere_keep_their_default_action)
{
    char err[512];
    misuse_st = tu_open(tu_path("m.tmf"));
    int status = tu_run_child(ordinary_segfault, NULL, err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "status %#x", status);
    cr_assert_null(strstr(err, "tmfalloc"), "stderr: %s", err);
    TU_OK(tm_close(misuse_st));
}

/* ---- retained private copies ---- */

static tm_store *retain_st;

static void commit_in_child(void *arg)
{
    tm_store *st = reopen_in_child(retain_st, arg);
    long *root = tm_store_root(st, 2 * sizeof(long));
    /* a big commit first: the log passes CKPT_BYTES and is checkpointed, so
     * the parent cannot learn of these commits by finding their records */
    if (tm_store_begin(st))
        _exit(2);
    char *big = tm_store_malloc(st, CKPT_BYTES + PAGE);
    if (!big)
        _exit(4);
    memset(big, 1, CKPT_BYTES + PAGE);
    tm_store_free(st, big);
    if (tm_store_commit(st) || tm_store_begin(st))
        _exit(2);
    root[0] = 200;
    root[1] += 1;
    _exit(tm_store_commit(st) ? 3 : 0);
}

Test(tx, retained_copies_never_hide_another_process_commit, .timeout = 120)
{
    const char *path = tu_path("r.tmf");
    char arg[512];
    tm_store *st = retain_st = tu_open(path);
    long *root = tm_store_root(st, 2 * sizeof(long));
    snprintf(arg, sizeof arg, "%s", path);
    TU_OK(tm_store_begin(st)); /* a small commit: its pages are kept */
    root[0] = 100;
    TU_OK(tm_store_commit(st));
    cr_assert_eq(tu_run_child(commit_in_child, arg, NULL, 0), 0);
    TU_OK(tm_store_read_begin(st));
    cr_assert_eq(root[0], 200, "a read transaction saw our own older copy");
    TU_OK(tm_store_read_end(st));
    TU_OK(tm_store_begin(st)); /* and again, through a write transaction */
    root[0] = 101;
    TU_OK(tm_store_commit(st));
    cr_assert_eq(tu_run_child(commit_in_child, arg, NULL, 0), 0);
    TU_OK(tm_store_begin(st));
    cr_assert_eq(root[0], 200);
    cr_assert_eq(root[1], 2);
    root[0] = 300;
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
    st = tu_open(path);
    root = tm_store_root(st, 2 * sizeof(long));
    cr_assert_eq(root[0], 300);
    cr_assert_eq(root[1], 2);
    TU_OK(tm_close(st));
}

/* ---- the hot set (TMF_TRACK=uffd, or auto where the kernel has it) ---- */

/* A page written by two transactions is hot: later writes take no fault,
 * and a commit still finds them. */
Test(tx, pages_written_again_become_hot)
{
    const char *path = tu_path("hot.tmf");
    tm_store *st = tu_open(path);
    char *root = page_root(st, 4 * PAGE);
    uint64_t pg = (uint64_t)(root - (char *)tm_store_base(st)) / PAGE;
    for (int i = 1; i <= 5; i++) {
        TU_OK(tm_store_begin(st));
        root[0] = (char)i;
        root[PAGE + 7] = (char)(10 + i);
        TU_OK(tm_store_commit(st));
    }
    cr_assert_eq(hot_has(st, pg) && hot_has(st, pg + 1), track_uses_uffd(st), "hot: %d, uffd: %d",
                 hot_has(st, pg), track_uses_uffd(st));
    if (getenv("TMF_TRACK") && strcmp(getenv("TMF_TRACK"), "uffd") == 0)
        cr_assert(track_uses_uffd(st), "TMF_TRACK=uffd without userfaultfd");
    TU_OK(tm_close(st));
    st = tu_open(path);
    root = page_root(st, 4 * PAGE);
    cr_assert_eq(root[0], 5);
    cr_assert_eq(root[PAGE + 7], 15);
    TU_OK(tm_close(st));
}

/* Writes pages [from, to) of root in transactions of 8 (never bulk mode),
 * twice: kept, then hot. */
static void make_hot(tm_store *st, char *root, int from, int to)
{
    for (int round = 0; round < 2; round++)
        for (int k = from; k < to; k += 8) {
            TU_OK(tm_store_begin(st));
            for (int j = k; j < k + 8 && j < to; j++)
                root[(size_t)j * PAGE] = (char)(round + 1);
            TU_OK(tm_store_commit(st));
        }
}

/* Each mapping of the hot set costs every scan that write-protects pages
 * in it a TLB flush: a page within its range's length joins the range,
 * gap and all, while a page far from every range starts its own. */
Test(tx, a_working_set_with_gaps_grows_into_one_range)
{
    tm_store *st = tu_open(tu_path("gaps.tmf"));
    char *root = page_root(st, 257 * PAGE);
    uint64_t pg = (uint64_t)(root - (char *)tm_store_base(st)) / PAGE;
    make_hot(st, root, 0, 32);
    make_hot(st, root, 60, 61); /* 28 pages past the range: more than HOT_BRIDGE, less than its length */
    if (!track_uses_uffd(st)) {
        cr_assert_not(hot_has(st, pg) || hot_has(st, pg + 60));
        TU_OK(tm_close(st));
        return;
    }
    cr_assert(hot_has(st, pg) && hot_has(st, pg + 45) && hot_has(st, pg + 60));
    cr_assert_eq(st->trk.hot.nranges, 1, "%zu ranges", st->trk.hot.nranges);
    make_hot(st, root, 250, 251); /* far from it */
    cr_assert(hot_has(st, pg + 250) && !hot_has(st, pg + 200));
    cr_assert_eq(st->trk.hot.nranges, 2, "%zu ranges", st->trk.hot.nranges);
    TU_OK(tm_close(st));
}

/* Two ranges join, gap and all, once the hot pages outnumber four times
 * the gap between them: a working set that grew in pieces ends in one
 * mapping. */
Test(tx, ranges_close_enough_join_into_one)
{
    tm_store *st = tu_open(tu_path("join.tmf"));
    char *root = page_root(st, 261 * PAGE);
    uint64_t pg = (uint64_t)(root - (char *)tm_store_base(st)) / PAGE;
    make_hot(st, root, 0, 16);
    make_hot(st, root, 60, 61); /* 44 pages away: a range of its own */
    cr_assert_eq(st->trk.hot.nranges, track_uses_uffd(st) ? 2 : 0, "%zu ranges", st->trk.hot.nranges);
    make_hot(st, root, 61, 260); /* 216 hot pages: the gap of 44 joins */
    cr_assert_eq(st->trk.hot.nranges, track_uses_uffd(st) ? 1 : 0, "%zu ranges", st->trk.hot.nranges);
    cr_assert_eq(hot_has(st, pg + 30), track_uses_uffd(st));
    TU_OK(tm_store_begin(st)); /* a write into the joined gap is tracked and committed */
    root[30 * PAGE + 5] = 42;
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
    st = tu_open(tu_path("join.tmf"));
    root = page_root(st, 261 * PAGE);
    cr_assert_eq(root[30 * PAGE + 5], 42);
    cr_assert_eq(root[259 * PAGE], 2);
    TU_OK(tm_close(st));
}

/* A working set larger than the page cap fills the hot set, which resets
 * so that a new working set can get in; but one that fills it again soon
 * after is kept ever longer (HOT_HOLD, doubled each reset), not reset
 * over and over. */
Test(tx, a_set_that_fills_again_resets_ever_later, .timeout = 120)
{
    tm_store *st = tu_open(tu_path("full.tmf"));
    size_t npages = HOT_PAGES + HOT_PAGES / 2;
    char *root = page_root(st, (npages + 1) * PAGE);
    uint64_t x = 88172645463325252ull, last = 0, gap_min = UINT64_MAX;
    int resets = 0;
    for (uint64_t c = 1; c <= 3000; c++) {
        size_t before = st->trk.hot.npages;
        TU_OK(tm_store_begin(st));
        for (int j = 0; j < 8; j++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            root[(x % npages) * PAGE] = (char)c;
        }
        TU_OK(tm_store_commit(st));
        if (before >= HOT_PAGES / 2 && st->trk.hot.npages == 0) { /* a reset */
            if (resets++)
                gap_min = c - last < gap_min ? c - last : gap_min;
            last = c;
        }
    }
    if (!track_uses_uffd(st)) {
        cr_assert_eq(resets, 0);
        TU_OK(tm_close(st));
        return;
    }
    cr_assert_geq(resets, 2, "%d resets", resets);
    cr_assert_leq(resets, 6, "%d resets in 3000 commits", resets);
    cr_assert_geq(gap_min, HOT_HOLD, "resets %llu commits apart", (unsigned long long)gap_min);
    TU_OK(tm_close(st));
}

/* ---- a hot set whose mprotect fails ----
 * A writable page that is neither hot (registered, scanned) nor cold
 * (read-only, faulting) takes writes no commit lists: they would be lost. */

/* mprotect of at least fail_len bytes to fail_prot fails; with half, after
 * changing the first half of the range, as the kernel's mapping-by-mapping
 * work can. */
static int fail_prot, fail_half, failed;
static size_t fail_len;

static int mprotect_fails_for(void *addr, size_t len, int prot)
{
    if (prot != fail_prot || len < fail_len)
        return os_real.mprotect(addr, len, prot);
    if (fail_half)
        (void)os_real.mprotect(addr, len / 2 / PAGE * PAGE, prot);
    failed++;
    return -ENOMEM;
}

/* Commits one byte at page k of root, then reopens the store and checks
 * that it kept the byte; returns the store reopened. */
static tm_store *write_and_reopen(tm_store *st, const char *path, size_t k, char v)
{
    char *root = page_root(st, 200 * PAGE);
    TU_OK(tm_store_begin(st));
    root[k * PAGE] = v;
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
    st = tu_open(path);
    cr_assert_eq(page_root(st, 200 * PAGE)[k * PAGE], v, "the write to page %zu was lost", k);
    return st;
}

Test(tx, a_hot_set_that_cannot_go_cold_keeps_tracking_its_writes)
{
    const char *path = tu_path("nodemote.tmf");
    tm_store *st = tu_open(path);
    char *root = page_root(st, 200 * PAGE);
    uint64_t pg = (uint64_t)(root - (char *)tm_store_base(st)) / PAGE;
    make_hot(st, root, 0, 16);
    int hot = track_uses_uffd(st);
    cr_assert_eq(hot_has(st, pg + 3), hot);
    fail_prot = PROT_READ, fail_len = 8 * PAGE, fail_half = 0;
    os_calls.mprotect = mprotect_fails_for;
    for (int c = 0; c < HOT_IDLE + 2; c++) { /* writes that change nothing: the set is idle, demoted, which fails */
        TU_OK(tm_store_begin(st));
        *(volatile char *)&root[40 * PAGE] = root[40 * PAGE];
        TU_OK(tm_store_commit(st));
    }
    os_calls.mprotect = os_real.mprotect;
    cr_assert_eq(failed > 0, hot, "%d failed", failed);
    cr_assert_eq(hot_has(st, pg + 3), hot, "the set went cold, but its pages stayed writable");
    TU_OK(tm_close(write_and_reopen(st, path, 3, 77)));
}

Test(tx, a_promotion_that_fails_midway_leaves_its_pages_cold)
{
    const char *path = tu_path("nopromote.tmf");
    tm_store *st = tu_open(path);
    char *root = page_root(st, 200 * PAGE);
    uint64_t pg = (uint64_t)(root - (char *)tm_store_base(st)) / PAGE;
    make_hot(st, root, 0, 8);
    fail_prot = PROT_READ | PROT_WRITE, fail_len = 2 * PAGE, fail_half = 1;
    os_calls.mprotect = mprotect_fails_for;
    make_hot(st, root, 12, 13); /* would bridge pages 8-11 into the range */
    os_calls.mprotect = os_real.mprotect;
    cr_assert_eq(failed > 0, track_uses_uffd(st), "%d failed", failed);
    cr_assert_not(hot_has(st, pg + 9));
    TU_OK(tm_close(write_and_reopen(st, path, 9, 55)));
}

/* An abort whose mprotect back to read-only fails leaves a page writable
 * that no fault or scan lists: the handle is poisoned, or the next
 * transaction's write to it would never be logged. */
Test(tx, an_abort_that_cannot_protect_its_pages_again_poisons_the_handle)
{
    const char *path = tu_path("noprotect.tmf");
    tm_store *st = tu_open(path);
    char *root = page_root(st, 200 * PAGE);
    TU_OK(tm_store_begin(st));
    root[5 * PAGE] = 1;
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_begin(st));
    root[5 * PAGE] = 2;
    fail_prot = PROT_READ, fail_len = PAGE, fail_half = 0, failed = 0;
    os_calls.mprotect = mprotect_fails_for;
    tm_store_abort(st);
    os_calls.mprotect = os_real.mprotect;
    cr_assert(failed > 0 || track_uses_uffd(st), "nothing failed"); /* a hot page needs no mprotect */
    int r = tm_store_begin(st);
    if (failed) {
        cr_assert_eq(r, TM_EPOISONED, "begin after a failed abort: %d", r);
        TU_OK(tm_close(st));
        st = tu_open(path);
        root = page_root(st, 200 * PAGE);
        TU_OK(tm_store_begin(st));
    } else {
        TU_OK(r);
    }
    root[5 * PAGE] = 3;
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(write_and_reopen(st, path, 6, 4)));
    st = tu_open(path);
    cr_assert_eq(page_root(st, 200 * PAGE)[5 * PAGE], 3, "a committed write was lost");
    TU_OK(tm_close(st));
}

/* A large hot set that fewer than half the commits change (a working set
 * four times the cap, written at random) goes back to cold, and no page
 * is promoted for HOT_HOLD commits, then twice as many, and so on: its
 * scans would cost the transactions more than its hits save.  (Without
 * the rests: the longest run without a hot set after one was dropped was
 * 195 commits, and 228 of the last 4000 commits had none.) */
Test(tx, a_large_set_of_little_use_rests, .timeout = 120)
{
    tm_store *st = tu_open(tu_path("rest.tmf"));
    size_t npages = 4 * HOT_PAGES, most = 0, rest = 0, run = 0, empty = 0;
    char *root = page_root(st, (npages + 1) * PAGE);
    uint64_t x = 88172645463325252ull;
    for (uint64_t c = 1; c <= 8000; c++) {
        size_t before = st->trk.hot.npages;
        TU_OK(tm_store_begin(st));
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        root[(x % npages) * PAGE] = (char)c;
        TU_OK(tm_store_commit(st));
        most = before > most ? before : most;
        empty += c > 4000 && st->trk.hot.npages == 0;
        if (before >= HOT_PAGES / 2 && st->trk.hot.npages == 0)
            run = 1; /* retired: count the commits without a hot page */
        else if (run && st->trk.hot.npages == 0)
            run++;
        else if (run) {
            rest = run > rest ? run : rest;
            run = 0;
        }
    }
    rest = run > rest ? run : rest;
    if (!track_uses_uffd(st)) {
        cr_assert_eq(most, 0);
        TU_OK(tm_close(st));
        return;
    }
    cr_assert_geq(most, HOT_PAGES / 2, "the set grew to %zu pages only", most);
    cr_assert_geq(rest, 4 * HOT_HOLD, "the longest rest after a retirement: %zu commits", rest);
    cr_assert_geq(empty, 2000, "a hot set in %zu of the last 4000 commits", 4000 - empty);
    cr_assert_geq(st->trk.hot.quiet, HOT_HOLD);
    TU_OK(tm_close(st));
}

/* A hot set that commits stop changing goes back to cold after HOT_IDLE
 * of them (scattered writes would otherwise pay its scans forever), and
 * its pages keep their last committed bytes.  Without the hot set
 * nothing is hot at all. */
Test(tx, a_hot_set_left_unchanged_goes_back_to_cold)
{
    const char *path = tu_path("idle.tmf");
    size_t npages = KEEP_MAX / 2 + 2 * HOT_IDLE + 200; /* made with too many pages to keep their copies */
    tm_store *st = tu_open(path);
    char *root = page_root(st, npages * PAGE), *far = root + 200 * PAGE; /* beyond any bridge */
    uint64_t pg = (uint64_t)(root - (char *)tm_store_base(st)) / PAGE;
    for (int i = 1; i <= 3; i++) { /* the first page hot */
        TU_OK(tm_store_begin(st));
        root[0] = (char)i;
        TU_OK(tm_store_commit(st));
    }
    cr_assert_eq(hot_has(st, pg), track_uses_uffd(st));
    for (int i = 0; i < HOT_IDLE; i++) { /* then other pages, each once */
        cr_assert_eq(hot_has(st, pg), track_uses_uffd(st), "cold again after %d commits", i);
        TU_OK(tm_store_begin(st));
        far[(size_t)i * 2 * PAGE] = (char)(i + 1);
        TU_OK(tm_store_commit(st));
    }
    cr_assert_not(hot_has(st, pg), "still hot after %d commits that did not change it", HOT_IDLE);
    cr_assert_eq(st->trk.hot.nranges, 0);
    cr_assert_eq(root[0], 3);
    TU_OK(tm_store_begin(st));
    root[0] = 4;
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
    st = tu_open(path);
    root = page_root(st, npages * PAGE);
    cr_assert_eq(root[0], 4);
    for (int i = 0; i < HOT_IDLE; i++)
        cr_assert_eq(root[200 * PAGE + (size_t)i * 2 * PAGE], (char)(i + 1));
    TU_OK(tm_close(st));
}

/* The minor faults this thread has taken so far. */
static long minor_faults(void)
{
    struct rusage ru;
    cr_assert_eq(getrusage(RUSAGE_THREAD, &ru), 0);
    return ru.ru_minflt;
}

/* With the hot set: transactions write one page every time and another
 * page each, a different one every time, so that open pages pile up and
 * commits write-protect them again now and then.  The page written every
 * time stays open through those: its write never faults (the others' do). */
#define OPEN_SPREAD (3 * HOT_OPEN)
Test(tx, a_page_written_by_every_transaction_stays_open)
{
    tm_store *st = tu_open(tu_path("open.tmf"));
    char *root = page_root(st, (OPEN_SPREAD + 2) * PAGE), *every = root, *other = root + PAGE;
    uint64_t pg = (uint64_t)(root - (char *)tm_store_base(st)) / PAGE;
    long faults = 0, rearmed = 0;
    for (int i = 0; i < 2; i++) { /* every page hot, and open */
        TU_OK(tm_store_begin(st));
        for (int k = 0; k <= OPEN_SPREAD; k++)
            root[k * PAGE] = (char)i;
        TU_OK(tm_store_commit(st));
    }
    if (!track_uses_uffd(st)) { /* tracked by faults alone: nothing is hot */
        cr_assert_not(hot_has(st, pg));
        TU_OK(tm_close(st));
        return;
    }
    cr_assert(hot_has(st, pg) && hot_has(st, pg + OPEN_SPREAD));
    for (int i = 0; i < 4 * OPEN_SPREAD; i++) {
        TU_OK(tm_store_begin(st));
        long before = minor_faults();
        every[8] = (char)i;
        faults += minor_faults() - before;
        other[(size_t)(i % OPEN_SPREAD) * PAGE + 8] = (char)i;
        TU_OK(tm_store_commit(st));
        rearmed += st->trk.hot.open == 0 || st->trk.hot.stay > 0;
    }
    cr_assert_gt(rearmed, 0, "the open pages were never write-protected again");
    cr_assert_eq(faults, 0, "%ld faults writing the page every transaction writes", faults);
    TU_OK(tm_close(st));
    st = tu_open(tu_path("open.tmf"));
    root = page_root(st, (OPEN_SPREAD + 2) * PAGE);
    cr_assert_eq(root[8], (char)(4 * OPEN_SPREAD - 1));
    TU_OK(tm_close(st));
}

/* A commit that changes more hot pages than the diff compares (DIFF_PAGES)
 * logs them whole; it must not leave them open, or every later commit
 * would list them, and log them whole, too: a small transaction after it
 * finds few pages open and logs a few bytes.  Yet a commit that compared
 * its pages opens again those it changed, many or few. */
#define WIDE (DIFF_PAGES + 64)
#define SET (3 * HOT_OPEN)
Test(tx, open_pages_stay_few_after_a_wide_commit)
{
    tm_store *st = tu_open(tu_path("wide.tmf"));
    char *root = page_root(st, (WIDE + 1) * PAGE);
    tm_stats_t s0, s1;
    make_hot(st, root, 0, WIDE);
    cr_assert_eq(st->trk.mode, TRACK_PAGES);
    cr_assert(!track_uses_uffd(st) || st->trk.hot.npages >= WIDE, "%zu hot pages", st->trk.hot.npages);
    TU_OK(tm_store_begin(st)); /* the wide commit: every hot page, whole */
    for (int j = 0; j < WIDE; j++)
        memset(root + (size_t)j * PAGE, 7, PAGE);
    TU_OK(tm_store_commit(st));
    for (int i = 0; i < 3; i++) {
        TU_OK(tm_store_stats(st, &s0));
        TU_OK(tm_store_begin(st));
        root[(size_t)i * PAGE + 8] = 9;
        TU_OK(tm_store_commit(st));
        TU_OK(tm_store_stats(st, &s1));
        cr_assert_leq(st->trk.hot.open, HOT_OPEN, "%zu pages open after commit %d", st->trk.hot.open, i);
        cr_assert(s1.checkpoints != s0.checkpoints || s1.log_bytes - s0.log_bytes < 4 * PAGE,
                  "a one-byte commit logged %llu bytes", (unsigned long long)(s1.log_bytes - s0.log_bytes));
    }
    /* A working set of SET pages that every transaction writes, more than
     * 2 HOT_OPEN, stays open through the write-protections that the other
     * pages, one a transaction, bring: its writes never fault. */
    long faults = 0;
    for (int i = 0; i < 4 * HOT_OPEN && track_uses_uffd(st); i++) {
        TU_OK(tm_store_begin(st));
        long before = minor_faults();
        for (int j = 0; j < SET; j++)
            root[(size_t)j * PAGE + 16] = (char)i;
        faults += i >= 2 ? minor_faults() - before : 0;
        root[(size_t)(SET + i % (WIDE - SET)) * PAGE + 16] = (char)i;
        TU_OK(tm_store_commit(st));
    }
    cr_assert_eq(faults, 0, "%ld faults writing the pages every transaction writes", faults);
    TU_OK(tm_close(st));
    st = tu_open(tu_path("wide.tmf"));
    root = page_root(st, (WIDE + 1) * PAGE);
    cr_assert_eq(root[8], 9);
    cr_assert_eq(root[2 * PAGE + 8], 9);
    cr_assert_eq(root[(WIDE - 1) * PAGE + 100], 7);
    TU_OK(tm_close(st));
}

/* §2.6: a stray write to a hot page lands in a private copy, is reported at
 * the next write transaction's begin, naming the page, and never reaches
 * the file: after a stray write and an exit without any tm_* call, the
 * store is unchanged.  The page is open (left writable by its commit, the
 * stray write found as a difference from the file) or armed (write-
 * protected again, the stray write found by the scan).  Each child opens the store itself (a forked handle
 * starts with no hot page).  Under TMF_TRACK=protect the write faults at
 * once instead. */
struct stray {
    const char *path;
    int then_begin;
    int armed; /* the page write-protected again, not left open by its commit */
};

static void stray_child(void *arg)
{
    struct stray *a = arg;
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st;
    tm_close(misuse_st); /* the inherited handle */
    if (tm_open(a->path, &o, &st) != 0)
        _exit(90);
    char *root = page_root(st, 2 * PAGE);
    for (int i = 1; i <= 3; i++) { /* hot, where there is a hot set */
        if (tm_store_begin(st) != 0)
            _exit(91);
        root[0] = (char)(10 + i);
        if (tm_store_commit(st) != 0)
            _exit(92);
    }
    if (a->armed && st->trk.hot.nranges) { /* as a commit past HOT_OPEN open pages does */
        uint64_t pages[HOT_PAGES];
        size_t n = 0;
        if (hot_scan(st, pages, &n) != 0 || st->trk.hot.open != 0)
            _exit(93);
    }
    fprintf(stderr, "hot %d at %p, %zu open\n", hot_has(st, (uint64_t)(root - (char *)tm_store_base(st)) / PAGE),
            (void *)root, st->trk.hot.open);
    *(volatile char *)root = 99;
    if (a->then_begin)
        (void)tm_store_begin(st);
    _exit(0);
}

Test(tx, stray_write_to_a_hot_page_never_reaches_the_file)
{
    const char *path = tu_path("stray.tmf");
    char err[512], addr[64];
    misuse_st = tu_open(path);
    char *root = page_root(misuse_st, 2 * PAGE);
    TU_OK(tm_close(misuse_st));
    snprintf(addr, sizeof addr, "0x%016lx", (unsigned long)(uintptr_t)root);
    for (int k = 0; k < 4; k++) {
        int then_begin = k < 2;
        struct stray a = {path, then_begin, k % 2};
        misuse_st = NULL;
        int status = tu_run_child(stray_child, &a, err, sizeof err);
        int hot = strstr(err, "hot 1") != NULL;
        if (!hot)
            cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "cold: status %#x: %s", status, err);
        else if (then_begin)
            cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "hot, begin: status %#x: %s", status, err);
        else
            cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "hot, exit: status %#x: %s", status, err);
        if (then_begin || !hot)
            cr_assert(strstr(err, "outside a write transaction") && strstr(err, addr), "stderr: %s", err);
        if (getenv("TMF_TRACK") && strcmp(getenv("TMF_TRACK"), "uffd") == 0)
            cr_assert(hot, "TMF_TRACK=uffd, but the page never became hot: %s", err);
        misuse_st = tu_open(path);
        root = page_root(misuse_st, 2 * PAGE);
        cr_assert_eq(root[0], 13, "a stray write reached the file");
        TU_OK(tm_store_check(misuse_st, NULL, 0));
        TU_OK(tm_close(misuse_st));
    }
}

/* ---- private copies kept across commits, and other processes ---- */

/* Two processes take turns, each writing a few pages of a shared set in a
 * transaction: its own copies of those pages (kept after its commit, or
 * hot) go stale when the other commits.  Every page records the turn that
 * last wrote it, and the root the last turn: at each turn's start, inside
 * the write transaction and inside a read transaction, every page must
 * show what the last commit left, never an older copy.  Turns of both
 * kinds: one that commits and one that aborts (its copies dropped, the
 * kept ones untouched). */
#define KC_PAGES 48
#define KC_TURNS 60

struct kc_root {
    uint64_t turn;                 /* the last committed turn */
    uint64_t last[KC_PAGES];       /* the turn that last wrote each page */
};

static int kc_check(const struct kc_root *r, const char *pages)
{
    for (int p = 0; p < KC_PAGES; p++) {
        uint64_t v;
        memcpy(&v, pages + p * PAGE + 8, sizeof v);
        if (v != r->last[p])
            return p + 1;
    }
    return 0;
}

static void kc_turns(tm_store *st, int me, int fd_in, int fd_out)
{
    struct kc_root *r = tm_store_root(st, sizeof *r + (KC_PAGES + 1) * PAGE);
    char *pages = (char *)(((uintptr_t)(r + 1) + PAGE - 1) & ~(uintptr_t)(PAGE - 1));
    uint64_t rng = 0x51ed + (uint64_t)me;
    char tok;
    for (int t = me; t < KC_TURNS; t += 2) {
        if (read(fd_in, &tok, 1) != 1)
            _exit(20);
        if (tm_store_read_begin(st) != 0 || kc_check(r, pages))
            _exit(21);
        tm_store_read_end(st);
        if (tm_store_begin(st) != 0 || kc_check(r, pages))
            _exit(22);
        for (int k = 0; k < 6; k++) { /* the same few pages, often: kept, then hot */
            int p = (int)(tu_rand(&rng) % (k < 4 ? 8 : KC_PAGES));
            uint64_t v = (uint64_t)t + 1;
            memcpy(pages + p * PAGE + 8, &v, sizeof v);
            r->last[p] = v;
        }
        if (t % 5 == 4) {
            tm_store_abort(st);
        } else {
            r->turn = (uint64_t)t + 1;
            if (tm_store_commit(st) != 0)
                _exit(23);
        }
        if (kc_check(r, pages)) /* read outside a transaction: our own last commit */
            _exit(24);
        if (write(fd_out, "t", 1) != 1)
            _exit(25);
    }
}

Test(tx, kept_and_hot_copies_never_outlive_another_process_commit, .timeout = 120)
{
    const char *path = tu_path("kc.tmf");
    tm_store *st = tu_open(path);
    int a[2], b[2], status;
    cr_assert_not_null(tm_store_root(st, sizeof(struct kc_root) + (KC_PAGES + 1) * PAGE));
    cr_assert_eq(pipe(a), 0);
    cr_assert_eq(pipe(b), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(a[1]), close(b[0]); /* a peer that dies ends the other's wait */
        tm_store *mine = reopen_in_child(st, path);
        kc_turns(mine, 1, a[0], b[1]);
        _exit(tm_close(mine) ? 26 : 0);
    }
    close(a[0]);
    cr_assert_eq(write(b[1], "t", 1), 1); /* turn 0 is ours */
    close(b[1]);
    kc_turns(st, 0, b[0], a[1]);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the other process: status %#x", status);
    TU_OK(tm_store_read_begin(st));
    struct kc_root *r = tm_store_root(st, 1);
    char *pages = (char *)(((uintptr_t)(r + 1) + PAGE - 1) & ~(uintptr_t)(PAGE - 1));
    cr_assert_eq(kc_check(r, pages), 0);
    uint64_t want = 0;
    for (int t = 0; t < KC_TURNS; t++)
        if (t % 5 != 4)
            want = (uint64_t)t + 1;
    cr_assert_eq(r->turn, want, "last turn %llu", (unsigned long long)r->turn);
    TU_OK(tm_store_read_end(st));
    TU_OK(tm_close(st));
}
