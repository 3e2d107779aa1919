/* test_store.c — opening stores: bad files, addresses, environment, files. */
#include "util.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "os.h"

static int open_err(const char *path)
{
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st = NULL;
    int r = tm_open(path, &o, &st);
    if (r == 0)
        tm_close(st);
    else
        cr_assert_null(st);
    return r;
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void patch(const char *path, off_t off, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, data, len, off), (ssize_t)len);
    close(fd);
}

static void flip(const char *path, off_t off)
{
    unsigned char c;
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pread(fd, &c, 1, off), 1);
    c ^= 0x40;
    cr_assert_eq(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

/* A store holding the value v in its root, closed cleanly. */
static void make_store(const char *path, long v)
{
    tm_store *st = tu_open(path);
    long *root = tm_store_root(st, 3 * PAGE); /* as large as commit_n_and_die needs */
    cr_assert_not_null(root);
    TU_OK(tm_store_begin(st));
    *root = v;
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
}

static long read_root(const char *path)
{
    tm_store *st = tu_open(path);
    long v = *(long *)tm_store_root(st, sizeof(long));
    TU_OK(tm_close(st));
    return v;
}

Test(store, not_a_store_is_refused_untouched)
{
    const char *path = tu_path("text.tmf");
    static const char text[] = "hello, I am a text file and not a store\n";
    char back[sizeof text];
    struct stat sb;
    write_file(path, text, sizeof text);
    cr_assert_eq(open_err(path), TM_ENOTSTORE);
    int fd = open(path, O_RDONLY);
    cr_assert_eq(read(fd, back, sizeof back), (ssize_t)sizeof text);
    close(fd);
    cr_assert_arr_eq(back, text, sizeof text, "the file was modified");
    cr_assert_neq(stat(tu_path("text.tmf.log"), &sb), 0, "a log was created beside a foreign file");
}

Test(store, empty_file_is_not_a_store)
{
    const char *path = tu_path("empty.tmf");
    write_file(path, "", 0);
    cr_assert_eq(open_err(path), TM_ENOTSTORE);
}

Test(store, directory_is_refused)
{
    cr_assert_neq(open_err(tu_dir()), 0);
}

Test(store, newer_version_is_refused)
{
    const char *path = tu_path("v.tmf");
    struct hdr_slot h;
    int fd, i;
    make_store(path, 1);
    fd = open(path, O_RDWR);
    for (i = 0; i < 2; i++) {
        cr_assert_eq(pread(fd, &h, sizeof h, i * HDR_SLOT_SIZE), (ssize_t)sizeof h);
        h.version = FORMAT_VERSION + 1;
        h.checksum = hdr_checksum(&h);
        cr_assert_eq(pwrite(fd, &h, sizeof h, i * HDR_SLOT_SIZE), (ssize_t)sizeof h);
    }
    close(fd);
    cr_assert_eq(open_err(path), TM_EVERSION);
}

Test(store, older_version_is_upgraded)
{
    const char *path = tu_path("v1.tmf");
    tm_store *st;
    make_store(path, 41);
    tu_set_version(path, 1);
    st = tu_open(path);
    cr_assert_eq(st->hdr.version, FORMAT_VERSION);
    cr_assert_eq(*(long *)tm_store_root(st, 1), 41);
    TU_OK(tm_store_check(st, NULL, 0));
    TU_OK(tm_close(st));
}

Test(store, truncated_files_are_refused)
{
    const char *path = tu_path("t.tmf");
    tm_store *st = tu_open(path);
    TU_OK(tm_store_begin(st));
    cr_assert_not_null(tm_store_root(st, (size_t)4 << 20)); /* arena > 4 MiB */
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
    cr_assert_eq(truncate(path, 3 << 20), 0);
    cr_assert_eq(open_err(path), TM_ETRUNCATED);
    cr_assert_eq(truncate(path, PAGE), 0);
    cr_assert_eq(open_err(path), TM_ETRUNCATED);
    cr_assert_eq(truncate(path, 200), 0);
    cr_assert_eq(open_err(path), TM_ETRUNCATED);
    cr_assert_eq(truncate(path, 5), 0);
    cr_assert_eq(open_err(path), TM_ENOTSTORE);
}

Test(store, one_damaged_header_slot_is_survived)
{
    const char *path = tu_path("h.tmf");
    make_store(path, 77);
    flip(path, offsetof(struct hdr_slot, base) + 2);
    cr_assert_eq(read_root(path), 77);
}

Test(store, corrupt_header_is_refused)
{
    const char *path = tu_path("h.tmf");
    make_store(path, 77);
    flip(path, offsetof(struct hdr_slot, store_id));
    flip(path, HDR_SLOT_SIZE + offsetof(struct hdr_slot, store_id));
    cr_assert_eq(open_err(path), TM_ECORRUPT);
}

/* Only a first opener upgrades an older store.  A later one would share it
 * with a process of an older library, whose locks and log records differ
 * from this one's: it is refused (EBUSY), and the store is left as the
 * older library has it. */
Test(store, only_a_first_opener_upgrades_the_format)
{
    const char *path = tu_path("v2.tmf");
    struct hdr_slot hdr;
    int go[2], ready[2];
    tm_store *st;
    char c;
    make_store(path, 5);
    cr_assert_eq(pipe(go), 0);
    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) { /* the first opener, standing in for an older library */
        close(go[1]), close(ready[0]); /* a parent that dies ends the wait */
        st = tu_open_or_exit(path);
        if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
            _exit(2);
        _exit(tm_close(st) ? 3 : 0);
    }
    close(go[0]), close(ready[1]);
    cr_assert_eq(read(ready[0], &c, 1), 1);
    tu_set_version(path, 2); /* as the older library's store would say */
    tm_options o = tu_opts(TM_SYNC_FULL);
    cr_assert_eq(tm_open(path, &o, &st), EBUSY, "joined a store an older library has open");
    o.read_only = 1;
    cr_assert_eq(tm_open(path, &o, &st), EBUSY, "a read-only handle joined it too");
    tu_header(path, &hdr);
    cr_assert_eq(hdr.version, 2);
    cr_assert_eq(write(go[1], "g", 1), 1);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
    st = tu_open(path); /* the first opener now: upgrades */
    cr_assert_eq(*(long *)tm_store_root(st, sizeof(long)), 5);
    tu_header(path, &hdr);
    cr_assert_eq(hdr.version, FORMAT_VERSION);
    TU_OK(tm_close(st));
}

Test(store, insane_header_fields_are_refused)
{
    const char *path = tu_path("h.tmf");
    struct hdr_slot h;
    int fd, i;
    make_store(path, 1);
    fd = open(path, O_RDWR);
    for (i = 0; i < 2; i++) { /* checksummed, but the size exceeds the reservation */
        cr_assert_eq(pread(fd, &h, sizeof h, i * HDR_SLOT_SIZE), (ssize_t)sizeof h);
        h.ckpt_size = h.max_size + PAGE;
        h.checksum = hdr_checksum(&h);
        cr_assert_eq(pwrite(fd, &h, sizeof h, i * HDR_SLOT_SIZE), (ssize_t)sizeof h);
    }
    close(fd);
    cr_assert_eq(open_err(path), TM_ECORRUPT);
}

Test(store, corrupt_superblock_is_refused)
{
    const char *path = tu_path("s.tmf");
    make_store(path, 1);
    flip(path, PAGE + offsetof(struct tm_super, size) + 1);
    cr_assert_eq(open_err(path), TM_ECORRUPT);
}

/* A superblock with a valid checksum but impossible fields is refused. */
static void patch_super(const char *path, void (*edit)(struct tm_super *))
{
    struct tm_super sb;
    int fd = open(path, O_RDWR);
    cr_assert_eq(pread(fd, &sb, sizeof sb, PAGE), (ssize_t)sizeof sb);
    edit(&sb);
    sb.checksum = super_checksum(&sb);
    cr_assert_eq(pwrite(fd, &sb, sizeof sb, PAGE), (ssize_t)sizeof sb);
    close(fd);
}

static void root_wraps(struct tm_super *sb)
{
    sb->root = 0xfffffffffffff000ull; /* root + root_size wraps past zero */
    sb->root_size = 0x2000;
}

static void size_beyond_max(struct tm_super *sb)
{
    sb->size = (uint64_t)1 << 40;
}

Test(store, insane_superblock_fields_are_refused)
{
    void (*edits[])(struct tm_super *) = {root_wraps, size_beyond_max};
    for (size_t i = 0; i < sizeof edits / sizeof *edits; i++) {
        const char *path = tu_path("sb.tmf");
        make_store(path, 1);
        patch_super(path, edits[i]);
        cr_assert_eq(open_err(path), TM_ECORRUPT, "edit %zu", i);
        unlink(path);
        unlink(tu_path("sb.tmf.log"));
    }
}

/* max_size is the store's own from its creation: a reopen asking for more
 * does not let it grow past what every later opener can map. */
Test(store, reopen_with_a_larger_max_size_keeps_the_store_limit)
{
    const char *path = tu_path("mx.tmf");
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st;
    tm_stats_t s;
    o.max_size = (size_t)4 << 20;
    TU_OK(tm_open(path, &o, &st));
    TU_OK(tm_close(st));
    o.max_size = (size_t)64 << 20;
    TU_OK(tm_open(path, &o, &st));
    TU_OK(tm_store_stats(st, &s));
    cr_assert_eq(s.max_size, (uint64_t)4 << 20);
    TU_OK(tm_store_begin(st));
    errno = 0;
    cr_assert_null(tm_store_malloc(st, (size_t)8 << 20));
    cr_assert_eq(errno, ENOMEM);
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
    o.max_size = (size_t)4 << 20;
    TU_OK(tm_open(path, &o, &st));
    TU_OK(tm_close(st));
}

Test(store, foreign_log_is_refused)
{
    const char *a = tu_path("a.tmf"), *b = tu_path("b.tmf");
    char cmd[1200];
    make_store(a, 1);
    make_store(b, 2);
    snprintf(cmd, sizeof cmd, "cp '%s.log' '%s.log'", a, b);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(open_err(b), TM_ECORRUPT);
}

/* ---- log records left by a process that died without closing ---- */

struct commits {
    const char *path;
    int n;
};

static void commit_n_and_die(void *arg)
{
    struct commits *c = arg;
    tm_store *st = tu_open(c->path);
    long *root = tm_store_root(st, 3 * PAGE);
    for (int i = 1; i <= c->n; i++) {
        if (tm_store_begin(st))
            _exit(2);
        root[0] = i;
        root[PAGE / sizeof(long)] = i; /* a second page */
        if (tm_store_commit(st))
            _exit(3);
    }
    _exit(0); /* no tm_close: the log keeps its records */
}

/* Offset of record number k (1-based) in the log. */
static off_t record_offset(const char *log, int k)
{
    struct log_rec rec;
    off_t off = LOG_START;
    int fd = open(log, O_RDONLY);
    for (int i = 1; i < k; i++) {
        cr_assert_eq(pread(fd, &rec, sizeof rec, off), (ssize_t)sizeof rec);
        off += (off_t)rec.len;
    }
    close(fd);
    return off;
}

Test(store, log_records_of_a_dead_process_are_replayed)
{
    struct commits c = {tu_path("l.tmf"), 5};
    make_store(c.path, 0);
    cr_assert_eq(tu_run_child(commit_n_and_die, &c, NULL, 0), 0);
    cr_assert_eq(read_root(c.path), 5);
}

/* save_store copies the store file aside; lose_page_cache puts that copy
 * back, as if the page cache holding later commits had been lost. */
static void save_store(const char *path)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s.ckpt'", path, path);
    cr_assert_eq(system(cmd), 0);
}

static void lose_page_cache(const char *path)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s.ckpt' '%s'", path, path);
    cr_assert_eq(system(cmd), 0);
}

/* A record larger than replay's 4 MiB buffer is verified and applied a
 * piece at a time, and damage in its last page discards it.  The record is
 * the first after a checkpoint (so none comes between it and the saved
 * store file), and the store file is then put back as it was before it. */
enum { BIG_PAGES = 1500 };

static long *big_root(tm_store *st)
{
    return tm_store_root(st, (size_t)BIG_PAGES * PAGE);
}

static void big_commit_and_die(void *arg)
{
    tm_store *st = tu_open_or_exit(arg);
    long *root = big_root(st);
    if (!root || tm_store_begin(st))
        _exit(2);
    for (int i = 0; i < BIG_PAGES; i++)
        root[(size_t)i * PAGE / sizeof(long)] = 1000 + i;
    _exit(tm_store_commit(st) ? 3 : 0);
}

static long big_root_sum(const char *path)
{
    tm_store *st = tu_open(path);
    long *root = big_root(st), sum = 0;
    for (int i = 0; i < BIG_PAGES; i++)
        sum += root[(size_t)i * PAGE / sizeof(long)];
    TU_OK(tm_close(st));
    return sum;
}

static void big_record_after_power_loss(const char *path)
{
    char log[520];
    snprintf(log, sizeof log, "%s.log", path);
    unlink(path);
    unlink(log);
    cr_assert_eq(big_root_sum(path), 0); /* creates the root; closing checkpoints */
    save_store(path);
    cr_assert_eq(tu_run_child(big_commit_and_die, (void *)path, NULL, 0), 0);
    lose_page_cache(path);
}

Test(store, record_larger_than_the_replay_buffer)
{
    char path[512], log[520];
    struct log_rec rec;
    long want = 0;
    snprintf(path, sizeof path, "%s", tu_path("big.tmf"));
    snprintf(log, sizeof log, "%s.log", path);
    for (int i = 0; i < BIG_PAGES; i++)
        want += 1000 + i;
    big_record_after_power_loss(path);
    cr_assert_eq(big_root_sum(path), want);

    big_record_after_power_loss(path);
    int fd = open(log, O_RDONLY);
    cr_assert_eq(pread(fd, &rec, sizeof rec, LOG_START), (ssize_t)sizeof rec);
    close(fd);
    cr_assert_gt(rec.len, (uint64_t)4 << 20, "the record is %llu bytes", (unsigned long long)rec.len);
    flip(log, LOG_START + (off_t)rec.len - 100);
    cr_assert_eq(big_root_sum(path), 0, "the damaged record was replayed");
}

/* A fresh store, then c->n commits by a process that dies without closing;
 * the store file is then put back as it was before them, as if the page
 * cache had been lost: only the log holds the commits. */
static void commits_after_power_loss(struct commits *c)
{
    make_store(c->path, 0);
    save_store(c->path);
    cr_assert_eq(tu_run_child(commit_n_and_die, c, NULL, 0), 0);
    lose_page_cache(c->path);
}

Test(store, the_log_alone_restores_every_commit_after_power_loss)
{
    /* the store file as of the last checkpoint, as if the page cache were lost */
    struct commits c = {tu_path("l.tmf"), 5};
    commits_after_power_loss(&c);
    cr_assert_eq(read_root(c.path), 5);
}

Test(store, corrupt_last_record_is_discarded)
{
    struct commits c = {tu_path("l.tmf"), 5};
    const char *log = tu_path("l.tmf.log");
    make_store(c.path, 0);
    cr_assert_eq(tu_run_child(commit_n_and_die, &c, NULL, 0), 0);
    /* damage one byte of the last record's page images: replay stops before
     * it and keeps records 1 to 4, which rewrite the root page */
    flip(log, record_offset(log, 5) + (off_t)sizeof(struct log_rec) + 3 * 8 + 100);
    cr_assert_eq(read_root(c.path), 4);
}

Test(store, corrupt_record_stops_replay_after_power_loss)
{
    /* Simulate lost page cache: the store file as of the checkpoint, the log
     * with five records, the third damaged.  Recovery keeps 1 and 2. */
    struct commits c = {tu_path("l.tmf"), 5};
    const char *log = tu_path("l.tmf.log");
    commits_after_power_loss(&c);
    flip(log, record_offset(log, 3) + (off_t)sizeof(struct log_rec) + 3 * 8 + 5);
    cr_assert_eq(read_root(c.path), 2);
}

Test(store, torn_record_header_stops_replay)
{
    struct commits c = {tu_path("l.tmf"), 4};
    const char *log = tu_path("l.tmf.log");
    static const char junk[40] = "torn torn torn torn torn torn torn torn";
    commits_after_power_loss(&c);
    patch(log, record_offset(log, 4) + 8, junk, sizeof junk);
    cr_assert_eq(read_root(c.path), 3);
}

/* ---- addresses ---- */

Test(store, store_opened_twice_in_a_process_is_busy)
{
    const char *path = tu_path("b.tmf");
    tm_store *st = tu_open(path);
    cr_assert_eq(open_err(path), EBUSY);
    TU_OK(tm_close(st));
}

/* Two threads open the same store at once, a store whose log a dead
 * process left for recovery: one open wins and recovers, the other is
 * refused with EBUSY before it reads a byte of the files (the process's own
 * file locks do not keep it out of a recovery in progress), and the
 * winner's commit is kept. */
struct racer {
    const char *path;
    pthread_barrier_t *go;
    tm_store *st;
    int r;
    long reads;
};

static _Thread_local long thread_reads;

static ssize_t counted_pread(int fd, void *buf, size_t len, off_t off)
{
    thread_reads++;
    return os_real.read_at(fd, buf, len, off);
}

static void *race_open(void *arg)
{
    struct racer *x = arg;
    tm_options o = tu_opts(TM_SYNC_FULL);
    pthread_barrier_wait(x->go);
    x->r = tm_open(x->path, &o, &x->st);
    x->reads = thread_reads;
    if (x->r == 0) {
        long *root = tm_store_root(x->st, sizeof(long));
        if (tm_store_begin(x->st) == 0) {
            *root = 100;
            x->r = tm_store_commit(x->st);
        }
    }
    return NULL;
}

Test(store, racing_opens_in_a_process_recover_once)
{
    char path[512], log[520];
    struct commits c = {path, 5};
    pthread_barrier_t go;
    snprintf(path, sizeof path, "%s", tu_path("r.tmf"));
    snprintf(log, sizeof log, "%s.log", path);
    pthread_barrier_init(&go, NULL, 2);
    os_calls.read_at = counted_pread;
    for (int round = 0; round < 40; round++) {
        struct racer x[2] = {{c.path, &go, NULL, -1, 0}, {c.path, &go, NULL, -1, 0}};
        pthread_t t[2];
        unlink(c.path);
        unlink(log);
        commits_after_power_loss(&c);
        for (int i = 0; i < 2; i++)
            cr_assert_eq(pthread_create(&t[i], NULL, race_open, &x[i]), 0);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        int w = x[0].st ? 0 : 1;
        cr_assert(x[w].st && !x[1 - w].st, "round %d: opens returned %d and %d", round, x[0].r, x[1].r);
        cr_assert_eq(x[w].r, 0, "round %d: %s", round, tm_strerror(x[w].r));
        cr_assert_eq(x[1 - w].r, EBUSY, "round %d: the loser got %s", round, tm_strerror(x[1 - w].r));
        cr_assert_eq(x[1 - w].reads, 0, "round %d: the refused open read the store %ld times", round, x[1 - w].reads);
        cr_assert_gt(x[w].reads, 0);
        TU_OK(tm_store_check(x[w].st, NULL, 0));
        TU_OK(tm_close(x[w].st));
        cr_assert_eq(read_root(c.path), 100, "round %d", round);
    }
    os_calls.read_at = os_real.read_at;
    pthread_barrier_destroy(&go);
}

/* Two threads creating the same new store at once: each builds it in a
 * file of its own before linking it into place, so one open wins and the
 * other is refused with EBUSY, never handed a half-built file. */
Test(store, racing_creates_in_a_process)
{
    char path[512], log[520];
    pthread_barrier_t go;
    snprintf(path, sizeof path, "%s", tu_path("rc.tmf"));
    snprintf(log, sizeof log, "%s.log", path);
    pthread_barrier_init(&go, NULL, 2);
    for (int round = 0; round < 40; round++) {
        struct racer x[2] = {{path, &go, NULL, -1, 0}, {path, &go, NULL, -1, 0}};
        pthread_t t[2];
        unlink(path);
        unlink(log);
        for (int i = 0; i < 2; i++)
            cr_assert_eq(pthread_create(&t[i], NULL, race_open, &x[i]), 0);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        int w = x[0].st ? 0 : 1;
        cr_assert(x[w].st && !x[1 - w].st, "round %d: opens returned %s and %s", round, tm_strerror(x[0].r),
                  tm_strerror(x[1].r));
        cr_assert_eq(x[1 - w].r, EBUSY, "round %d: the loser got %s", round, tm_strerror(x[1 - w].r));
        TU_OK(tm_close(x[w].st));
        cr_assert_eq(read_root(path), 100, "round %d", round);
    }
    pthread_barrier_destroy(&go);
}

/* A close (or a failed open) and an open of the same store racing in one
 * process: the open waits until the other descriptor is closed, since
 * closing it drops every lock the process holds on the file, the new
 * handle's too.  The next close of a descriptor of the file is slowed down
 * (a wrapper of close(2) in this executable) to hold the window open. */
static volatile ino_t slow_close_ino;
static volatile int in_slow_close;

int close(int fd)
{
    struct stat sb;
    if (slow_close_ino && fstat(fd, &sb) == 0 && sb.st_ino == slow_close_ino) {
        slow_close_ino = 0;
        in_slow_close = 1;
        usleep(100 * 1000);
    }
    return (int)syscall(SYS_close, fd);
}

static void slow_next_close_of(const char *path)
{
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    slow_close_ino = sb.st_ino;
}

static void *close_it(void *arg)
{
    tm_close(arg);
    return NULL;
}

Test(store, open_racing_a_close_keeps_its_locks)
{
    char path[512];
    pthread_t t;
    tm_store *st, *again;
    tm_options o = tu_opts(TM_SYNC_FULL);
    snprintf(path, sizeof path, "%s", tu_path("oc.tmf"));
    st = tu_open(path);
    slow_next_close_of(path);
    in_slow_close = 0;
    cr_assert_eq(pthread_create(&t, NULL, close_it, st), 0);
    while (!in_slow_close) /* until the close is asleep in close(2) */
        usleep(1000);
    TU_OK(tm_open(path, &o, &again));
    TU_OK(tm_store_begin(again));
    pthread_join(t, NULL);
    cr_assert(tu_writer_lock_held(path), "the writer lock was lost");
    TU_OK(tm_store_commit(again));
    TU_OK(tm_close(again));
}

static void *open_read_only(void *arg)
{
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st = NULL;
    o.read_only = 1;
    return (void *)(intptr_t)tm_open(arg, &o, &st);
}

Test(store, open_racing_a_failed_open_keeps_its_locks)
{
    char path[512], log[520];
    pthread_t t;
    void *r;
    tm_store *st;
    tm_options o = tu_opts(TM_SYNC_FULL);
    snprintf(path, sizeof path, "%s", tu_path("of.tmf"));
    snprintf(log, sizeof log, "%s.log", path);
    make_store(path, 1);
    unlink(log); /* a read-only open cannot create it: fails */
    slow_next_close_of(path);
    in_slow_close = 0;
    cr_assert_eq(pthread_create(&t, NULL, open_read_only, path), 0);
    while (!in_slow_close) /* until the failed open is asleep closing its descriptor */
        usleep(1000);
    TU_OK(tm_open(path, &o, &st));
    TU_OK(tm_store_begin(st));
    pthread_join(t, &r);
    cr_assert_neq((intptr_t)r, 0, "the read-only open succeeded");
    cr_assert(tu_writer_lock_held(path), "the writer lock was lost");
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
}

/* fork() while another thread opens the default store (tm_default holds
 * its own mutex across tm_open, whose first fdatasync is slowed down here):
 * the child is not left with that mutex locked. */
static int slow_fdatasync(int fd)
{
    usleep(50 * 1000);
    return os_real.fdatasync(fd);
}

static void *first_root(void *arg)
{
    (void)arg;
    return tm_root(8);
}

Test(store, fork_during_the_default_open_leaves_the_child_able_to_use_it)
{
    pthread_t t;
    int status;
    setenv("TMF_PATH", tu_path("dflt.tmf"), 1);
    os_calls.fdatasync = slow_fdatasync;
    cr_assert_eq(pthread_create(&t, NULL, first_root, NULL), 0);
    usleep(20 * 1000); /* the open is now asleep in its first fdatasync */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(10); /* a child stuck on the mutex dies of SIGALRM */
        _exit(tm_root(8) ? 0 : 1);
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    pthread_join(t, NULL);
    os_calls.fdatasync = os_real.fdatasync;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status %#x", status);
}

/* fork() while another thread is inside tm_open: the child is not left
 * with the open mutex locked, so it can open a store of its own. */
static volatile int opener_stop;

static void *open_close_loop(void *arg)
{
    tm_options o = tu_opts(TM_SYNC_FULL);
    while (!opener_stop) {
        tm_store *st;
        if (tm_open(arg, &o, &st) == 0)
            tm_close(st);
    }
    return NULL;
}

Test(store, fork_during_an_open_leaves_the_child_able_to_open)
{
    char a[512], b[512];
    pthread_t t;
    snprintf(a, sizeof a, "%s", tu_path("fa.tmf"));
    snprintf(b, sizeof b, "%s", tu_path("fb.tmf"));
    make_store(a, 1);
    cr_assert_eq(pthread_create(&t, NULL, open_close_loop, a), 0);
    for (int i = 0; i < 40; i++) {
        int status;
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            tm_options o = tu_opts(TM_SYNC_NONE);
            tm_store *st;
            alarm(10); /* a child stuck on the mutex dies of SIGALRM */
            o.base = (o.base ? o.base : DEFAULT_BASE) + ((uintptr_t)4 << 30);
            _exit(tm_open(b, &o, &st) == 0 && tm_close(st) == 0 ? 0 : 1);
        }
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d: status %#x", i, status);
    }
    opener_stop = 1;
    pthread_join(t, NULL);
}

Test(store, taken_base_address_is_refused)
{
    tm_store *a = tu_open(tu_path("a.tmf"));
    /* a second store at the same default base cannot be mapped */
    cr_assert_eq(open_err(tu_path("b.tmf")), TM_EADDR);
    TU_OK(tm_close(a));
    /* nor over memory the process maps itself */
    void *p = mmap((void *)DEFAULT_BASE, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    cr_assert_eq(p, (void *)DEFAULT_BASE);
    cr_assert_eq(open_err(tu_path("a.tmf")), TM_EADDR);
    cr_assert_eq(*(volatile char *)p, 0, "the library touched our mapping");
    munmap(p, PAGE);
    cr_assert_eq(open_err(tu_path("a.tmf")), 0);
}

Test(store, two_stores_at_two_bases)
{
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *a = tu_open(tu_path("a.tmf")), *b = NULL;
    o.base = DEFAULT_BASE + ((uintptr_t)4 << 30);
    TU_OK(tm_open(tu_path("b.tmf"), &o, &b));
    cr_assert_eq(tm_store_base(b), (void *)o.base);
    long *ra = tm_store_root(a, 8), *rb = tm_store_root(b, 8);
    TU_OK(tm_store_begin(a));
    TU_OK(tm_store_begin(b));
    *ra = 1, *rb = 2;
    TU_OK(tm_store_commit(b));
    TU_OK(tm_store_commit(a));
    cr_assert_eq(*ra + *rb, 3);
    TU_OK(tm_close(a));
    TU_OK(tm_close(b));
}

/* Above the window, and free under ASan too (its allocator lies at
 * 0x600000000000). */
#define OUTSIDE_BASE 0x480000000000ull

/* Under the preload, tm_open refuses a store outside the window (route.h),
 * with a line on stderr: exits with the number of the failed check. */
static void open_as_preloaded(void *arg)
{
    tm_options o = tu_opts(TM_SYNC_NONE);
    tm_store *st = NULL;
    (void)arg;
    tm_route_preloaded = 1;
    o.base = OUTSIDE_BASE;
    if (tm_open(tu_path("high.tmf"), &o, &st) != EINVAL || st)
        _exit(1); /* the store made without the preload */
    if (tm_open(tu_path("new.tmf"), &o, &st) != EINVAL || st || access(tu_path("new.tmf"), F_OK) == 0)
        _exit(2); /* a new one: not even made */
    o.base = ROUTE_WINDOW_HI - o.max_size;
    if (tm_open(tu_path("top.tmf"), &o, &st) != 0)
        _exit(3); /* ending where the window ends */
    tm_close(st);
    o.base = ROUTE_WINDOW_HI - o.max_size / 2;
    if (tm_open(tu_path("across.tmf"), &o, &st) != EINVAL)
        _exit(4); /* across its end */
    _exit(0);
}

Test(store, a_store_outside_the_preload_window_opens_only_without_the_preload)
{
    tm_options o = tu_opts(TM_SYNC_NONE);
    tm_store *st = NULL;
    char err[2048];
    o.base = OUTSIDE_BASE;
    TU_OK(tm_open(tu_path("high.tmf"), &o, &st));
    cr_assert_eq(tm_store_base(st), (void *)o.base);
    TU_OK(tm_close(st));
    int status = tu_run_child(open_as_preloaded, NULL, err, sizeof err);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x\n%s", status, err);
    cr_assert_not_null(strstr(err, "tmfalloc: a store reserved at 0x0000480000000000 lies outside "
                                   "[0x200000000000, 0x400000000000)"), "%s", err);
    cr_assert_not_null(strstr(err, "TMF_ADDR"), "%s", err);
    TU_OK(tm_open(tu_path("high.tmf"), &o, &st)); /* and still without it */
    TU_OK(tm_close(st));
}

/* ---- files ---- */

/* The malloc family (the preload) goes to the store whose transaction the
 * thread began first, and to the other one once that ends. */
Test(store, routing_follows_the_transactions_still_open)
{
    tm_options o = tu_opts(TM_SYNC_NONE);
    tm_store *a = tu_open(tu_path("ra.tmf")), *b = NULL;
    o.base = (o.base ? o.base : DEFAULT_BASE) + ((uintptr_t)4 << 30);
    TU_OK(tm_open(tu_path("rb.tmf"), &o, &b));
    TU_OK(tm_store_begin(a));
    TU_OK(tm_store_begin(b));
    cr_assert_eq(tm_route_store, a);
    TU_OK(tm_store_commit(a));
    cr_assert_eq(tm_route_store, b, "no route while b's transaction is open");
    tm_transient_begin();
    cr_assert_null(tm_route_store);
    TU_OK(tm_store_begin(a));
    tm_store_abort(b);
    tm_transient_end();
    cr_assert_eq(tm_route_store, a);
    TU_OK(tm_store_commit(a));
    cr_assert_null(tm_route_store);
    TU_OK(tm_close(a));
    TU_OK(tm_close(b));
}

Test(store, files_are_private_by_default_and_mode_is_honoured)
{
    struct stat sb;
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st;
    mode_t old = umask(0);
    make_store(tu_path("p.tmf"), 1);
    cr_assert_eq(stat(tu_path("p.tmf"), &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0600);
    cr_assert_eq(stat(tu_path("p.tmf.log"), &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0600);
    o.mode = 0640;
    TU_OK(tm_open(tu_path("q.tmf"), &o, &st));
    TU_OK(tm_close(st));
    cr_assert_eq(stat(tu_path("q.tmf"), &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0640);
    umask(old);
}

Test(store, no_create_option)
{
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st = NULL;
    o.no_create = 1;
    cr_assert_eq(tm_open(tu_path("missing.tmf"), &o, &st), ENOENT);
}

/* A log whose store file is gone is not overwritten by a new store. */
Test(store, log_without_its_store_is_kept)
{
    const char *path = tu_path("lost.tmf"), *log = tu_path("lost.tmf.log");
    struct stat before, after;
    make_store(path, 7);
    unlink(path);
    cr_assert_eq(stat(log, &before), 0);
    cr_assert_eq(open_err(path), EEXIST);
    cr_assert_neq(access(path, F_OK), 0, "a store was created");
    cr_assert_eq(stat(log, &after), 0);
    cr_assert(after.st_size == before.st_size && after.st_mtime == before.st_mtime);
    unlink(log); /* once it is gone, the store is created */
    cr_assert_eq(open_err(path), 0);
}

Test(store, strerror_covers_every_code)
{
    for (int c = TM_EFIRST; c < TM_ELAST; c++)
        cr_assert_str_neq(tm_strerror(c), "unknown error", "code %d", c);
    cr_assert_str_eq(tm_strerror(ENOENT), strerror(ENOENT));
    cr_assert_str_eq(tm_strerror(0), "success");
}

/* ---- the default store and its environment ---- */

Test(env, default_path_is_program_name_in_cwd)
{
    char path[600];
    struct stat sb;
    cr_assert_eq(chdir(tu_dir()), 0);
    unsetenv("TMF_PATH");
    cr_assert_not_null(tm_root(16));
    snprintf(path, sizeof path, "%s/%s.tmf", tu_dir(), program_invocation_short_name);
    cr_assert_eq(stat(path, &sb), 0, "no %s", path);
}

Test(env, variables_are_honoured)
{
    tm_stats_t s;
    struct stat sb;
    setenv("TMF_PATH", tu_path("env.tmf"), 1);
    setenv("TMF_ADDR", "0x300000000000", 1);
    setenv("TMF_MAX_SIZE", "256m", 1);
    setenv("TMF_SYNC", "none", 1);
    long *r = tm_root(8);
    cr_assert_not_null(r, "%s", tm_strerror(errno));
    cr_assert_eq((uintptr_t)r >> 40, 0x30, "root at %p", (void *)r);
    TU_OK(tm_stats(&s));
    cr_assert_eq(s.max_size, (uint64_t)256 << 20);
    TU_OK(tm_begin());
    *r = 5;
    TU_OK(tm_commit());
    TU_OK(tm_stats(&s));
    cr_assert_eq(s.syncs, 0, "TMF_SYNC=none made %lu fdatasync calls", (unsigned long)s.syncs);
    cr_assert_eq(stat(tu_path("env.tmf"), &sb), 0);
}

Test(env, bad_values_are_clear_errors)
{
    setenv("TMF_PATH", tu_path("env.tmf"), 1);
    setenv("TMF_SYNC", "sometimes", 1);
    cr_assert_eq(tm_begin(), EINVAL);
    cr_assert_null(tm_root(8));
    cr_assert_eq(errno, EINVAL);
}

Test(env, bad_max_size)
{
    setenv("TMF_PATH", tu_path("env.tmf"), 1);
    setenv("TMF_MAX_SIZE", "lots", 1);
    cr_assert_eq(tm_begin(), EINVAL);
}

/* A store whose log's header page never reached the disk (made in place by
 * an older library, then a crash): if nothing was ever committed, the
 * first opener makes the log anew; if a record follows, it refuses. */
static void zero_log_header(const char *path)
{
    char log[520];
    uint8_t page[PAGE];
    snprintf(log, sizeof log, "%s.log", path);
    int fd = open(log, O_WRONLY);
    cr_assert_geq(fd, 0);
    memset(page, 0, sizeof page);
    cr_assert_eq(pwrite(fd, page, 100, 0), 100); /* torn: a few zeros over the header */
    close(fd);
}

static void commit_and_exit(void *arg)
{
    tm_store *st = tu_open_or_exit(arg);
    long *root = tm_store_root(st, sizeof(long));
    if (!root || tm_store_begin(st) != 0)
        _exit(1);
    *root = 7;
    _exit(tm_store_commit(st) == 0 ? 0 : 2); /* no close: no checkpoint */
}

Test(store, a_log_that_never_held_a_record_is_made_anew)
{
    char path[512];
    tm_store *st;
    tm_options o = tu_opts(TM_SYNC_FULL);
    snprintf(path, sizeof path, "%s", tu_path("nl.tmf"));
    st = tu_open(path);
    TU_OK(tm_close(st)); /* nothing committed: generation 1, no checkpoint */
    zero_log_header(path);
    TU_OK(tm_open(path, &o, &st));
    cr_assert_not_null(tm_store_root(st, 8));
    TU_OK(tm_close(st));

    snprintf(path, sizeof path, "%s", tu_path("rl.tmf"));
    int status = tu_run_child(commit_and_exit, path, NULL, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    zero_log_header(path);
    cr_assert_eq(tm_open(path, &o, &st), TM_ECORRUPT, "a log with a record was made anew");
}

/* A crash between writing a new store and naming it leaves nothing beside
 * it: the file has no name until it is whole (O_TMPFILE). */
static int link_and_die(int fd, const char *to)
{
    (void)fd, (void)to;
    _exit(0); /* the crash: the file is whole and synced, but has no name */
}

static void die_at_link(void *arg)
{
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st;
    os_calls.link_fd = link_and_die;
    tm_open(arg, &o, &st);
    _exit(3);
}

Test(store, a_crash_while_creating_leaves_no_file_behind)
{
    char path[512];
    snprintf(path, sizeof path, "%s", tu_path("cr.tmf"));
    int status = tu_run_child(die_at_link, path, NULL, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    DIR *d = opendir(tu_dir());
    struct dirent *e;
    cr_assert_not_null(d);
    while ((e = readdir(d)))
        cr_assert(e->d_name[0] == '.' , "left behind: %s", e->d_name);
    closedir(d);
}

/* The kernel takes every thread of a process for one lock owner: an open
 * waiting for LOCK_OPEN, held by a process that waits for a lock another
 * thread of ours holds, looks like a deadlock (EDEADLK).  It is not: that
 * thread lets go, and the open goes on. */
static int unrelated_fd;
static pthread_barrier_t dl_go;

static void *hold_then_release(void *arg)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    (void)arg;
    cr_assert_eq(fcntl(unrelated_fd, F_SETLK, &fl), 0);
    pthread_barrier_wait(&dl_go); /* held: the child may block on it */
    usleep(300 * 1000);
    fl.l_type = F_UNLCK;
    fcntl(unrelated_fd, F_SETLK, &fl);
    return NULL;
}

Test(store, an_open_is_not_refused_for_a_deadlock_of_another_thread)
{
    char path[512], other[512];
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st;
    pthread_t t;
    int ready[2];
    snprintf(path, sizeof path, "%s", tu_path("dl.tmf"));
    snprintf(other, sizeof other, "%s", tu_path("unrelated"));
    make_store(path, 1);
    cr_assert_geq(unrelated_fd = open(other, O_RDWR | O_CREAT, 0600), 0);
    cr_assert_eq(pipe(ready), 0);
    pthread_barrier_init(&dl_go, NULL, 2);
    cr_assert_eq(pthread_create(&t, NULL, hold_then_release, NULL), 0);
    pthread_barrier_wait(&dl_go);
    pid_t pid = fork();
    if (pid == 0) { /* holds LOCK_OPEN as a first opener would, then waits for our thread's lock */
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
        int fd = open(path, O_RDWR), ufd = open(other, O_RDWR);
        if (fd < 0 || ufd < 0 || fcntl(fd, F_SETLK, &fl) != 0)
            _exit(2);
        if (write(ready[1], "r", 1) != 1 || fcntl(ufd, F_SETLKW, &fl) != 0)
            _exit(3);
        _exit(0); /* both locks go with the process */
    }
    char c;
    cr_assert_eq(read(ready[0], &c, 1), 1);
    usleep(50 * 1000); /* the child now waits for our thread's lock */
    TU_OK(tm_open(path, &o, &st));
    TU_OK(tm_close(st));
    pthread_join(t, NULL);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    close(unrelated_fd);
}
