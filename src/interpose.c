/*
 * interpose.c — libc calls that write into caller buffers, wrapped so that
 * they work on arena buffers inside a write transaction.
 *
 * A system call that writes into a write-protected page fails with EFAULT
 * (no fault reaches user space), so these wrappers first touch the buffer's
 * pages (fault_touch: one fault per page not yet dirty) and then call libc.
 * Outside a write transaction they cost one thread-local test.  Other calls
 * need tm_touch() on their buffer first.  The core never calls these: its
 * own system calls go through os.c.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

#define EXPORT __attribute__((visibility("default")))


/* Touches [p, p+len) for the write transaction of this thread, if any. */
static void prepare(void *p, size_t len)
{
    int i;
    for (i = 0; i < MAX_STORES; i++) {
        tm_store *st = store_registry[i];
        uintptr_t a = (uintptr_t)p, base;
        if (!st || !tx_owned(st))
            continue;
        base = (uintptr_t)st->base;
        if (a + len > base && a < base + st->mapped) {
            uintptr_t lo = a > base + PAGE ? a : base + PAGE;
            uintptr_t hi = a + len < base + st->mapped ? a + len : base + st->mapped;
            if (hi > lo) /* inside our own transaction and arena: it cannot fail */
                (void)fault_touch(st, (void *)lo, hi - lo);
        }
    }
}

static void prepare_iov(const struct iovec *iov, int n)
{
    int i;
    for (i = 0; i < n; i++)
        prepare(iov[i].iov_base, iov[i].iov_len);
}

/* The next definitions of the wrapped calls (libc's). */
#define NEXT(name) static __typeof__(name) *real_##name
NEXT(read);
NEXT(pread);
NEXT(pread64);
NEXT(readv);
NEXT(preadv);
NEXT(recv);
NEXT(recvfrom);
NEXT(recvmsg);
NEXT(fread);

#define RESOLVE(name) real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

/* dlsym may allocate: never into the arena. */
static void resolve(void)
{
    tm_transient_begin();
    RESOLVE(read);
    RESOLVE(pread);
    RESOLVE(pread64);
    RESOLVE(readv);
    RESOLVE(preadv);
    RESOLVE(recv);
    RESOLVE(recvfrom);
    RESOLVE(recvmsg);
    RESOLVE(fread);
    tm_transient_end();
}

/* Called by tm_open, so that the wrappers are resolved before any
 * transaction, and so that a static link takes this file along with the
 * library even where the program's read resolves to another definition
 * first (a sanitizer's weak interceptor): without the wrappers, read(2)
 * into the arena fails with EFAULT. */
void interpose_resolve(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, resolve);
}

#define REAL(name)                                                     \
    if (unlikely(!real_##name))                                        \
    interpose_resolve()

EXPORT ssize_t read(int fd, void *buf, size_t n)
{
    REAL(read);
    if (unlikely(tm_route_tx))
        prepare(buf, n);
    return real_read(fd, buf, n);
}

EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    REAL(pread);
    if (unlikely(tm_route_tx))
        prepare(buf, n);
    return real_pread(fd, buf, n, off);
}

EXPORT ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
    REAL(pread64);
    if (unlikely(tm_route_tx))
        prepare(buf, n);
    return real_pread64(fd, buf, n, off);
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int n)
{
    REAL(readv);
    if (unlikely(tm_route_tx))
        prepare_iov(iov, n);
    return real_readv(fd, iov, n);
}

EXPORT ssize_t preadv(int fd, const struct iovec *iov, int n, off_t off)
{
    REAL(preadv);
    if (unlikely(tm_route_tx))
        prepare_iov(iov, n);
    return real_preadv(fd, iov, n, off);
}

EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    REAL(recv);
    if (unlikely(tm_route_tx))
        prepare(buf, n);
    return real_recv(fd, buf, n, flags);
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *a, socklen_t *al)
{
    REAL(recvfrom);
    if (unlikely(tm_route_tx))
        prepare(buf, n);
    return real_recvfrom(fd, buf, n, flags, a, al);
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
    REAL(recvmsg);
    if (unlikely(tm_route_tx))
        prepare_iov(m->msg_iov, (int)m->msg_iovlen);
    return real_recvmsg(fd, m, flags);
}

EXPORT size_t fread(void *buf, size_t size, size_t n, FILE *f)
{
    REAL(fread);
    if (unlikely(tm_route_tx) && size && n <= SIZE_MAX / size)
        prepare(buf, size * n);
    return real_fread(buf, size, n, f);
}
