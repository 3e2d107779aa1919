/*
 * os.c — the system calls behind the swappable table of os.h.
 */
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define IOV_BATCH 1024 /* IOV_MAX on Linux */

static int neg(long r)
{
    return r < 0 ? -errno : (int)r;
}

static int sys_open(const char *path, int flags, unsigned mode)
{
    return neg(open(path, flags, mode));
}

static int sys_close(int fd)
{
    return neg(close(fd));
}

static int sys_fstat(int fd, struct stat *st)
{
    return neg(fstat(fd, st));
}

/* Through /proc/self/fd: linkat's AT_EMPTY_PATH would need a capability. */
static int sys_link_fd(int fd, const char *to)
{
    char from[32];
    snprintf(from, sizeof from, "/proc/self/fd/%d", fd);
    return neg(linkat(AT_FDCWD, from, AT_FDCWD, to, AT_SYMLINK_FOLLOW));
}

static int sys_unlink(const char *path)
{
    return neg(unlink(path));
}

/* A raw system call: the library exports a pread of its own (interpose.c),
 * which the dynamic linker would bind this call to. */
static ssize_t sys_pread(int fd, void *buf, size_t len, off_t off)
{
    ssize_t n = syscall(SYS_pread64, fd, buf, len, off);
    return n < 0 ? -errno : n;
}

static ssize_t sys_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    ssize_t n = pwrite(fd, buf, len, off);
    return n < 0 ? -errno : n;
}

static ssize_t sys_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    ssize_t n = pwritev(fd, iov, cnt, off);
    return n < 0 ? -errno : n;
}

static int sys_fsync(int fd)
{
    return neg(fsync(fd));
}

static int sys_fdatasync(int fd)
{
    return neg(fdatasync(fd));
}

static int sys_sync_range(int fd, off_t off, off_t len)
{
    return neg(sync_file_range(fd, off, len, SYNC_FILE_RANGE_WRITE));
}

static int sys_ftruncate(int fd, off_t len)
{
    return neg(ftruncate(fd, len));
}

static int sys_fallocate(int fd, off_t off, off_t len)
{
    return neg(fallocate(fd, 0, off, len));
}

/* The mapped write under way on this thread (os_mapped_fault). */
static __thread sigjmp_buf *volatile mapped_guard; /* volatile: only the handler reads it */

static ssize_t sys_write_mapped(int fd, char *map, const void *buf, size_t len, off_t off)
{
    sigjmp_buf env;
    if (sigsetjmp(env, 0)) { /* SIGBUS: the pwrite tells why (the handler runs SA_NODEFER: nothing to unblock) */
        mapped_guard = NULL;
        return sys_pwrite(fd, buf, len, off);
    }
    mapped_guard = &env;
    memcpy(map + off, buf, len);
    mapped_guard = NULL;
    return (ssize_t)len;
}

void os_mapped_fault(void)
{
    sigjmp_buf *g = mapped_guard;
    if (g)
        siglongjmp(*g, 1);
}

static int sys_fadvise(int fd, off_t off, off_t len, int advice)
{
    return -posix_fadvise(fd, off, len, advice);
}

static int sys_fcntl_lock(int fd, int cmd, void *fl)
{
    return neg(fcntl(fd, cmd, fl));
}

static void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *p = mmap(addr, len, prot, flags, fd, off);
    return p == MAP_FAILED ? (void *)(intptr_t)-errno : p;
}

static int sys_munmap(void *addr, size_t len)
{
    return neg(munmap(addr, len));
}

static int sys_mprotect(void *addr, size_t len, int prot)
{
    return neg(mprotect(addr, len, prot));
}

static int sys_madvise(void *addr, size_t len, int advice)
{
    return neg(madvise(addr, len, advice));
}

/* process_madvise(2) on the calling process (PIDFD_SELF: recent kernels). */
static ssize_t sys_madvise_self(const struct iovec *iov, size_t n, int advice)
{
    long r = syscall(SYS_process_madvise, -10000 /* PIDFD_SELF */, iov, n, advice, 0);
    return r < 0 ? -errno : r;
}

static int sys_ioctl(int fd, unsigned long req, void *arg)
{
    return neg(ioctl(fd, req, arg));
}

static int sys_userfaultfd(int flags)
{
    return neg(syscall(SYS_userfaultfd, flags));
}

static int sys_futex_wait(_Atomic uint32_t *word, uint32_t val, long timeout_ns, int shared)
{
    struct timespec ts = {timeout_ns / 1000000000, timeout_ns % 1000000000};
    int op = FUTEX_WAIT | (shared ? 0 : FUTEX_PRIVATE_FLAG);
    return neg(syscall(SYS_futex, word, op, val, timeout_ns < 0 ? NULL : &ts, NULL, 0));
}

static int sys_futex_wake(_Atomic uint32_t *word, int n, int shared)
{
    return neg(syscall(SYS_futex, word, FUTEX_WAKE | (shared ? 0 : FUTEX_PRIVATE_FLAG), n, NULL, NULL, 0));
}

#define OS_TABLE                                                                                     \
    {                                                                                                \
        sys_open, sys_close, sys_fstat, sys_link_fd, sys_unlink, sys_pread, sys_pwrite,          \
        sys_pwritev, sys_write_mapped, sys_fsync, sys_fdatasync, sys_sync_range, sys_ftruncate, sys_fallocate,   \
        sys_fadvise, sys_fcntl_lock, sys_mmap, sys_munmap, sys_mprotect, sys_madvise,          \
        sys_madvise_self, sys_ioctl, sys_userfaultfd, sys_futex_wait, sys_futex_wake,             \
    }

const tm_os os_real = OS_TABLE;
tm_os os_calls = OS_TABLE;

/* ---- files ---- */

int os_open(const char *path, int flags, unsigned mode)
{
    int r;
    while ((r = os_calls.open(path, flags | O_CLOEXEC, mode)) == -EINTR)
        ;
    return r;
}

/* Never retried: Linux releases the descriptor even when close reports EINTR. */
void os_close(int fd)
{
    (void)os_calls.close(fd);
}

int os_fstat(int fd, struct stat *st)
{
    return os_calls.fstat(fd, st);
}

static int dir_of(const char *path, char *dir, size_t len)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else if ((size_t)(slash - path) < len)
        memcpy(dir, path, (size_t)(slash - path)), dir[slash - path] = 0;
    else
        return -ENAMETOOLONG;
    return 0;
}

int os_tmpfile(const char *path, unsigned mode)
{
    char dir[PATH_MAX];
    int r = dir_of(path, dir, sizeof dir);
    if (r < 0)
        return r;
    r = os_open(dir, O_TMPFILE | O_RDWR, mode);
    return r == -EISDIR || r == -EINVAL ? -EOPNOTSUPP : r; /* kernels and file systems without it */
}

int os_link_fd(int fd, const char *to)
{
    return os_calls.link_fd(fd, to);
}

int os_unlink(const char *path)
{
    return os_calls.unlink(path);
}

/* A read, a write, or (map) a write through fd's shared mapping, to the
 * end: a short transfer is completed; end of file is -ENODATA, a write
 * that makes no progress -EIO. */
static int transfer(int fd, char *p, size_t len, off_t off, int write, char *map)
{
    while (len > 0) {
        ssize_t n = map     ? os_calls.write_mapped(fd, map, p, len, off)
                    : write ? os_calls.write_at(fd, p, len, off)
                            : os_calls.read_at(fd, p, len, off);
        if (n == -EINTR)
            continue;
        if (n < 0)
            return (int)n;
        if (n == 0)
            return write ? -EIO : -ENODATA;
        p += n, off += n, len -= (size_t)n;
    }
    return 0;
}

int os_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
    return transfer(fd, (char *)buf, len, off, 1, NULL);
}

/* A write creates the page cache's folios as large as it is (ext4 since
 * Linux 6.16), and a later small write into a large folio costs what its
 * size does (the kernel walks each of its blocks): 28 us into a folio of
 * 2 MiB, 8 into one of 64 KiB, 3 into one of 16 KiB or less, measured on
 * ext4.  Files written a little at a time later are written in aligned
 * blocks of SMALL_FOLIO bytes at most. */
#define SMALL_FOLIO ((off_t)16 << 10)

int os_pwrite_small(int fd, const void *buf, size_t len, off_t off)
{
    const char *p = buf;
    int r = 0;
    while (len > 0 && r == 0) {
        size_t n = (size_t)(SMALL_FOLIO - off % SMALL_FOLIO);
        n = n < len ? n : len;
        r = os_pwrite_all(fd, p, n, off);
        p += n, off += (off_t)n, len -= n;
    }
    return r;
}

int os_write_mapped(int fd, char *map, const void *buf, size_t len, off_t off)
{
    return transfer(fd, (char *)buf, len, off, 1, map);
}

int os_pread_all(int fd, void *buf, size_t len, off_t off)
{
    return transfer(fd, buf, len, off, 0, NULL);
}

int os_pwritev_all(int fd, struct iovec *iov, int cnt, off_t off)
{
    while (cnt > 0) {
        ssize_t n = os_calls.writev_at(fd, iov, cnt > IOV_BATCH ? IOV_BATCH : cnt, off);
        if (n == -EINTR)
            continue;
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO;
        off += n;
        while (cnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++, cnt--;
        }
        if (n > 0) { /* a short write stopped inside this vector */
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

static int retry(int (*call)(int), int fd)
{
    int r;
    while ((r = call(fd)) == -EINTR)
        ;
    return r;
}

int os_fsync(int fd)
{
    return retry(os_calls.fsync, fd);
}

int os_fdatasync(int fd)
{
    return retry(os_calls.fdatasync, fd);
}

int os_fsync_dir(const char *path)
{
    char dir[PATH_MAX];
    int fd, r;
    if ((r = dir_of(path, dir, sizeof dir)) < 0)
        return r;
    if ((fd = os_open(dir, O_RDONLY | O_DIRECTORY, 0)) < 0)
        return fd;
    r = os_fsync(fd);
    os_close(fd);
    return r;
}

void os_writeback(int fd)
{
    (void)os_calls.sync_range(fd, 0, 0); /* a hint: the sync that follows reports errors */
}

int os_ftruncate(int fd, off_t len)
{
    int r;
    while ((r = os_calls.ftruncate(fd, len)) == -EINTR)
        ;
    return r;
}

int os_extend(int fd, off_t off, off_t len)
{
    int r;
    while ((r = os_calls.fallocate(fd, off, len)) == -EINTR)
        ;
    if (r == -EOPNOTSUPP || r == -ENOSYS)
        r = os_ftruncate(fd, off + len);
    return r;
}

void os_fadvise(int fd, int advice)
{
    (void)os_calls.fadvise(fd, 0, 0, advice); /* a hint: only speed depends on it */
}

static struct flock flock_of(off_t byte, off_t len, int type)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = (short)type;
    fl.l_whence = SEEK_SET;
    fl.l_start = byte;
    fl.l_len = len;
    return fl;
}

int os_lock(int fd, off_t byte, off_t len, int type, int wait)
{
    struct flock fl = flock_of(byte, len, type);
    int r;
    while ((r = os_calls.fcntl_lock(fd, wait ? F_SETLKW : F_SETLK, &fl)) == -EINTR)
        ;
    return r == -EACCES ? -EAGAIN : r;
}

int os_lock_wait_patiently(int fd, off_t byte, off_t len, int type)
{
    struct timespec pause = {0, 1000000};
    int r;
    while ((r = os_lock(fd, byte, len, type, 1)) == -EDEADLK) {
        nanosleep(&pause, NULL);
        if (pause.tv_nsec < 10000000)
            pause.tv_nsec *= 2;
    }
    return r;
}

int os_lock_held(int fd, off_t byte, int type)
{
    struct flock fl = flock_of(byte, 1, type);
    int r;
    if ((r = os_calls.fcntl_lock(fd, F_GETLK, &fl)) < 0)
        return r;
    return fl.l_type != F_UNLCK;
}

/* ---- memory ---- */

void *os_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return os_calls.mmap(addr, len, prot, flags, fd, off);
}

void os_munmap(void *addr, size_t len)
{
    (void)os_calls.munmap(addr, len);
}

int os_mprotect(void *addr, size_t len, int prot)
{
    return os_calls.mprotect(addr, len, prot);
}

int os_madvise(void *addr, size_t len, int advice)
{
    return os_calls.madvise(addr, len, advice);
}

ssize_t os_madvise_self(const struct iovec *iov, size_t n, int advice)
{
    return os_calls.madvise_self(iov, n, advice);
}

int os_ioctl(int fd, unsigned long req, void *arg)
{
    int r;
    while ((r = os_calls.ioctl(fd, req, arg)) == -EINTR)
        ;
    return r;
}

int os_userfaultfd(int flags)
{
    return os_calls.userfaultfd(flags);
}

int os_futex_wait(_Atomic uint32_t *word, uint32_t val, long timeout_ns, int shared)
{
    int r = os_calls.futex_wait(word, val, timeout_ns, shared);
    return r == -EAGAIN ? 0 : r; /* the value had changed already */
}

/* Waking cannot fail on a valid word of ours. */
void os_futex_wake(_Atomic uint32_t *word, int n, int shared)
{
    (void)os_calls.futex_wake(word, n, shared);
}

void *os_alloc(size_t len)
{
    void *p = os_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return os_map_failed(p) ? NULL : p;
}

void os_free(void *p, size_t len)
{
    if (p)
        os_munmap(p, len);
}

/* ---- the process ---- */

size_t os_page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static __attribute__((tls_model("initial-exec"))) __thread pid_t tls_tid;

static pid_t __attribute__((noinline)) tid_slow(void)
{
    return tls_tid = (pid_t)syscall(SYS_gettid);
}

pid_t os_tid(void)
{
    pid_t t = tls_tid;
    return __builtin_expect(t != 0, 1) ? t : tid_slow();
}

void os_tid_forget(void)
{
    tls_tid = 0;
}

pid_t os_pid(void)
{
    return getpid();
}

int os_boot_id(char out[36])
{
    int fd = os_open("/proc/sys/kernel/random/boot_id", O_RDONLY, 0), r;
    if (fd < 0)
        return fd;
    r = os_pread_all(fd, out, 36, 0);
    os_close(fd);
    return r;
}

uint64_t os_random64(void)
{
    uint64_t v = 0;
    struct timespec ts;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v && v)
        return v;
    clock_gettime(CLOCK_REALTIME, &ts);
    return v ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 48) ^ (uintptr_t)&v;
}

/* ---- diagnostics ---- */

static void put(const char *s)
{
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, s, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* stderr is gone: nowhere left to say it */
        s += n, len -= (size_t)n;
    }
}

void os_say(const char *a, const char *b, uintptr_t addr)
{
    char hex[2 + 16 + 1];
    int saved = errno, i;
    put("tmfalloc: ");
    put(a);
    if (addr) {
        hex[0] = '0', hex[1] = 'x';
        for (i = 0; i < 16; i++)
            hex[2 + i] = "0123456789abcdef"[(addr >> (60 - 4 * i)) & 15];
        hex[18] = 0;
        put(" ");
        put(hex);
    }
    if (b) {
        put(" ");
        put(b);
    }
    put("\n");
    errno = saved;
}
