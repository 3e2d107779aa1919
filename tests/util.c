/* util.c — helpers shared by the test suites. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

static char dir[256];
static pid_t dir_owner;

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void cleanup(void)
{
    if (dir[0] && getpid() == dir_owner)
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *tu_dir(void)
{
    if (!dir[0] || dir_owner != getpid()) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/tmftest.XXXXXX", t && *t ? t : "/tmp");
        cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
        dir_owner = getpid();
        atexit(cleanup);
    }
    return dir;
}

const char *tu_path(const char *name)
{
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ & 3];
    snprintf(b, sizeof bufs[0], "%s/%s", tu_dir(), name);
    return b;
}

tm_options tu_opts(tm_sync sync)
{
    tm_options o;
    const char *a = getenv("TMF_ADDR");
    tm_options_init(&o);
    /* The sanitizer builds move the base where they allow application
     * memory (scripts/test.sh). */
    if (a && *a)
        o.base = (uintptr_t)strtoull(a, NULL, 16);
    o.max_size = (size_t)1 << 30;
    o.sync = sync;
    return o;
}

tm_store *tu_open(const char *path)
{
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st = NULL;
    int r = tm_open(path, &o, &st);
    cr_assert_eq(r, 0, "tm_open(%s): %s", path, tm_strerror(r));
    return st;
}

tm_store *tu_open_or_exit(const char *path)
{
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st = NULL;
    if (tm_open(path, &o, &st) != 0)
        _exit(99);
    return st;
}

int tu_run_child(void (*fn)(void *), void *arg, char *errbuf, size_t len)
{
    int pipefd[2], status = 0;
    pid_t pid;
    size_t got = 0;
    cr_assert_eq(pipe(pipefd), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(pipefd[0]);
        dup2(pipefd[1], STDERR_FILENO);
        fn(arg);
        _exit(0);
    }
    close(pipefd[1]);
    for (;;) {
        char tmp[256];
        ssize_t n = read(pipefd[0], tmp, sizeof tmp);
        if (n <= 0)
            break;
        if (errbuf && got + 1 < len) {
            size_t k = (size_t)n < len - 1 - got ? (size_t)n : len - 1 - got;
            memcpy(errbuf + got, tmp, k);
            got += k;
        }
    }
    if (errbuf && len)
        errbuf[got] = 0;
    close(pipefd[0]);
    waitpid(pid, &status, 0);
    return status;
}

/* In a child: exits 0 when a writer holds the store's mutex (the lock
 * file's header, struct tm_shared), 1 when none does, 2 on error. */
static void probe_writer_lock(void *arg)
{
    char lock[4096];
    struct tm_shared *sh;
    int fd, r;
    snprintf(lock, sizeof lock, "%s.lock", (const char *)arg);
    if ((fd = open(lock, O_RDWR)) < 0)
        _exit(2);
    sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (sh == MAP_FAILED)
        _exit(2);
    r = pthread_mutex_trylock(&sh->writer);
    if (r == EOWNERDEAD)
        pthread_mutex_consistent(&sh->writer);
    if (r == 0 || r == EOWNERDEAD)
        pthread_mutex_unlock(&sh->writer);
    _exit(r == EBUSY ? 0 : 1);
}

int tu_writer_lock_held(const char *path)
{
    int status = tu_run_child(probe_writer_lock, (void *)path, NULL, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) <= 1, "lock probe: status %#x", status);
    return WEXITSTATUS(status) == 0;
}

void tu_header(const char *path, struct hdr_slot *out)
{
    struct hdr_slot s, best;
    int fd = open(path, O_RDONLY), found = 0;
    cr_assert_geq(fd, 0, "open %s", path);
    uint8_t page[PAGE];
    cr_assert_eq(pread(fd, page, PAGE, 0), (ssize_t)PAGE);
    for (int i = 0; i < 2; i++)
        if (hdr_slot_ok(page, i, &s) && (!found || s.gen > best.gen))
            best = s, found = 1;
    close(fd);
    cr_assert(found, "%s: no valid header slot", path);
    *out = best;
}

void tu_set_version(const char *path, uint32_t version)
{
    struct hdr_slot h;
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0, "open %s", path);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(pread(fd, &h, sizeof h, i * HDR_SLOT_SIZE), (ssize_t)sizeof h);
        h.version = version;
        h.checksum = hdr_checksum(&h);
        cr_assert_eq(pwrite(fd, &h, sizeof h, i * HDR_SLOT_SIZE), (ssize_t)sizeof h);
    }
    close(fd);
}

int tu_checkpoint(tm_store *st)
{
    int died = lock_writer(&st->lk), r;
    if (died < 0)
        return died;
    if ((r = store_heal(st, died)) == 0)
        r = store_checkpoint(st);
    lock_writer_release(&st->lk);
    return r;
}

static int failing_fd = -1;

static int fail_once(int fd)
{
    if (fd != failing_fd)
        return os_real.fdatasync(fd);
    failing_fd = -1;
    return -EIO;
}

int tu_checkpoint_failing_sync(tm_store *st)
{
    failing_fd = st->fd;
    os_calls.fdatasync = fail_once;
    int r = tu_checkpoint(st);
    os_calls.fdatasync = os_real.fdatasync;
    failing_fd = -1;
    return r;
}

long tu_store_writes;
static int counted_fd = -1;

static ssize_t count_write(int fd, const void *buf, size_t len, off_t off)
{
    if (fd == counted_fd && off >= 2 * PAGE)
        tu_store_writes++;
    return os_real.write_at(fd, buf, len, off);
}

void tu_count_store_writes(int fd)
{
    counted_fd = fd;
    tu_store_writes = 0;
    os_calls.write_at = count_write;
}
