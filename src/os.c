/*
 * os.c — system primitives behind the swappable table of os.h.
 */
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define IOV_BATCH 1024 /* IOV_MAX on Linux */

static ssize_t real_pread(int fd, void *buf, size_t len, off_t off)
{
    ssize_t n = pread(fd, buf, len, off);
    return n < 0 ? -errno : n;
}

static ssize_t real_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    ssize_t n = pwrite(fd, buf, len, off);
    return n < 0 ? -errno : n;
}

static ssize_t real_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    ssize_t n = pwritev(fd, iov, cnt, off);
    return n < 0 ? -errno : n;
}

static int real_fdatasync(int fd)
{
    return fdatasync(fd) < 0 ? -errno : 0;
}

static int real_ftruncate(int fd, off_t len)
{
    return ftruncate(fd, len) < 0 ? -errno : 0;
}

static int real_fallocate(int fd, off_t off, off_t len)
{
    return fallocate(fd, 0, off, len) < 0 ? -errno : 0;
}

static int real_ioctl(int fd, unsigned long req, void *arg)
{
    int n = ioctl(fd, req, arg);
    return n < 0 ? -errno : n;
}

/* process_madvise(2) on the calling process (PIDFD_SELF: recent kernels). */
static ssize_t real_madvise_self(const struct iovec *iov, size_t n, int advice)
{
    long r = syscall(SYS_process_madvise, -10000 /* PIDFD_SELF */, iov, n, advice, 0);
    return r < 0 ? -errno : r;
}

const tm_os os_real = {
    real_pread,     real_pwrite, real_pwritev,       real_fdatasync,
    real_ftruncate, real_fallocate, real_ioctl,      real_madvise_self,
};

tm_os os_calls = {
    real_pread,     real_pwrite, real_pwritev,       real_fdatasync,
    real_ftruncate, real_fallocate, real_ioctl,      real_madvise_self,
};

static int retry(ssize_t n)
{
    return n == -EINTR;
}

int os_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = os_calls.pwrite(fd, p, len, off);
        if (retry(n))
            continue;
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO;
        p += n, off += n, len -= (size_t)n;
    }
    return 0;
}

int os_pwritev_all(int fd, struct iovec *iov, int cnt, off_t off)
{
    while (cnt > 0) {
        ssize_t n = os_calls.pwritev(fd, iov, cnt > IOV_BATCH ? IOV_BATCH : cnt, off);
        if (retry(n))
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

int os_pread_all(int fd, void *buf, size_t len, off_t off)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = os_calls.pread(fd, p, len, off);
        if (retry(n))
            continue;
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -ENODATA; /* end of file */
        p += n, off += n, len -= (size_t)n;
    }
    return 0;
}

int os_fdatasync(int fd)
{
    int r;
    while ((r = os_calls.fdatasync(fd)) == -EINTR)
        ;
    return r;
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

int os_lock(int fd, off_t byte, int type, int wait)
{
    return os_lock_range(fd, byte, 1, type, wait);
}

int os_lock_range(int fd, off_t byte, off_t len, int type, int wait)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = (short)type;
    fl.l_whence = SEEK_SET;
    fl.l_start = byte;
    fl.l_len = len;
    while (fcntl(fd, wait ? F_SETLKW : F_SETLK, &fl) < 0) {
        if (errno != EINTR)
            return errno == EACCES ? -EAGAIN : -errno;
    }
    return 0;
}

void *os_alloc(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void os_free(void *p, size_t len)
{
    if (p)
        munmap(p, len);
}

size_t os_page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

pid_t os_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

static void put(const char *s)
{
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, s, len);
        if (n <= 0 && errno != EINTR)
            return;
        if (n > 0)
            s += n, len -= (size_t)n;
    }
}

void os_say(const char *a, const char *b, uintptr_t addr)
{
    char hex[2 + 16 + 1];
    int i;
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
}
