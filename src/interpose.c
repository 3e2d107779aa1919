/*
 * interpose.c — libc calls that write into caller buffers, wrapped so that
 * they work on arena buffers inside a write transaction.
 *
 * A system call that writes into a write-protected page fails with EFAULT
 * (no fault reaches user space), so these wrappers first touch the buffer's
 * pages (fault_touch: one fault per page not yet dirty) and then call libc.
 * Outside a write transaction they cost one thread-local test.  Other calls
 * need tm_touch() on their buffer first.  The core never calls these: its
 * own system calls go through os.c.  Every buffer a call writes is touched,
 * a datagram's source address and control data too: the kernel takes the
 * datagram off the socket before it finds out it cannot copy them.  So are
 * the entry points _FORTIFY_SOURCE compiles the calls to (__read_chk...),
 * which reach the system without passing through read.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

#define EXPORT __attribute__((visibility("default")))
#undef fread_unlocked /* an optimising glibc makes it a macro */

/* glibc's fortified entry points, declared only by its fortifying headers. */
ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen);
ssize_t __pread64_chk(int fd, void *buf, size_t n, off_t off, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags, struct sockaddr *a, socklen_t *al);
size_t __fread_chk(void *buf, size_t buflen, size_t size, size_t n, FILE *f);
size_t __fread_unlocked_chk(void *buf, size_t buflen, size_t size, size_t n, FILE *f);


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

/* dlsym may allocate: never into the arena. */
static void *next_symbol(const char *name)
{
    void *p;
    tm_transient_begin();
    p = dlsym(RTLD_NEXT, name);
    tm_transient_end();
    return p;
}

/* The next definitions of the wrapped calls (libc's), resolved once. */
#define WRAPPED(X)                                                                                       \
    X(read) X(pread) X(pread64) X(readv) X(preadv) X(preadv64) X(preadv2) X(preadv64v2) X(recv) X(recvfrom)    \
    X(recvmsg) X(fread) X(fread_unlocked) X(__read_chk) X(__pread_chk) X(__pread64_chk) X(__recv_chk)        \
    X(__recvfrom_chk) X(__fread_chk) X(__fread_unlocked_chk)
#define POINTER(name) static __typeof__(name) *real_##name;
WRAPPED(POINTER)
static pthread_once_t resolved = PTHREAD_ONCE_INIT;

static void resolve(void)
{
#define RESOLVE(name) real_##name = (__typeof__(name) *)next_symbol(#name);
    WRAPPED(RESOLVE)
}

/* Resolves them at the first open, outside any transaction.  Calling it
 * also links this file into a program linked with the static library:
 * nothing else would, where a runtime (a sanitizer's) defines read(2)
 * itself. */
void interpose_resolve(void)
{
    pthread_once(&resolved, resolve);
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

EXPORT ssize_t preadv64(int fd, const struct iovec *iov, int n, off64_t off)
{
    REAL(preadv64);
    if (unlikely(tm_route_tx))
        prepare_iov(iov, n);
    return real_preadv64(fd, iov, n, off);
}

EXPORT ssize_t preadv2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    REAL(preadv2);
    if (unlikely(tm_route_tx))
        prepare_iov(iov, n);
    return real_preadv2(fd, iov, n, off, flags);
}

EXPORT ssize_t preadv64v2(int fd, const struct iovec *iov, int n, off64_t off, int flags)
{
    REAL(preadv64v2);
    if (unlikely(tm_route_tx))
        prepare_iov(iov, n);
    return real_preadv64v2(fd, iov, n, off, flags);
}

EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    REAL(recv);
    if (unlikely(tm_route_tx))
        prepare(buf, n);
    return real_recv(fd, buf, n, flags);
}

/* A datagram's source address: *al bytes at a, and *al itself. */
static void prepare_from(struct sockaddr *a, socklen_t *al)
{
    if (al) {
        prepare(al, sizeof *al);
        if (a)
            prepare(a, *al);
    }
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *a, socklen_t *al)
{
    REAL(recvfrom);
    if (unlikely(tm_route_tx)) {
        prepare(buf, n);
        prepare_from(a, al);
    }
    return real_recvfrom(fd, buf, n, flags, a, al);
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
    REAL(recvmsg);
    if (unlikely(tm_route_tx) && m) { /* the kernel writes the header's lengths and flags too */
        prepare(m, sizeof *m);
        prepare_iov(m->msg_iov, (int)m->msg_iovlen);
        prepare(m->msg_name, m->msg_namelen);
        prepare(m->msg_control, m->msg_controllen);
    }
    return real_recvmsg(fd, m, flags);
}

static size_t at_most(size_t n, size_t buflen)
{
    return n < buflen ? n : buflen;
}

/* size * n bytes at buf, at most buflen, when that does not overflow
 * (fread fails then). */
static void prepare_items(void *buf, size_t size, size_t n, size_t buflen)
{
    if (size && n <= SIZE_MAX / size)
        prepare(buf, at_most(size * n, buflen));
}

EXPORT size_t fread(void *buf, size_t size, size_t n, FILE *f)
{
    REAL(fread);
    if (unlikely(tm_route_tx))
        prepare_items(buf, size, n, SIZE_MAX);
    return real_fread(buf, size, n, f);
}

EXPORT size_t fread_unlocked(void *buf, size_t size, size_t n, FILE *f)
{
    REAL(fread_unlocked);
    if (unlikely(tm_route_tx))
        prepare_items(buf, size, n, SIZE_MAX);
    return real_fread_unlocked(buf, size, n, f);
}

/* ---- the same, as _FORTIFY_SOURCE calls them (buflen: what the compiler
 * knows of the buffer; a longer read aborts in libc, touching no more) ---- */

EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
    REAL(__read_chk);
    if (unlikely(tm_route_tx))
        prepare(buf, at_most(n, buflen));
    return real___read_chk(fd, buf, n, buflen);
}

EXPORT ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen)
{
    REAL(__pread_chk);
    if (unlikely(tm_route_tx))
        prepare(buf, at_most(n, buflen));
    return real___pread_chk(fd, buf, n, off, buflen);
}

EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t n, off_t off, size_t buflen)
{
    REAL(__pread64_chk);
    if (unlikely(tm_route_tx))
        prepare(buf, at_most(n, buflen));
    return real___pread64_chk(fd, buf, n, off, buflen);
}

EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
    REAL(__recv_chk);
    if (unlikely(tm_route_tx))
        prepare(buf, at_most(n, buflen));
    return real___recv_chk(fd, buf, n, buflen, flags);
}

EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags, struct sockaddr *a,
                              socklen_t *al)
{
    REAL(__recvfrom_chk);
    if (unlikely(tm_route_tx)) {
        prepare(buf, at_most(n, buflen));
        prepare_from(a, al);
    }
    return real___recvfrom_chk(fd, buf, n, buflen, flags, a, al);
}

EXPORT size_t __fread_chk(void *buf, size_t buflen, size_t size, size_t n, FILE *f)
{
    REAL(__fread_chk);
    if (unlikely(tm_route_tx))
        prepare_items(buf, size, n, buflen);
    return real___fread_chk(buf, buflen, size, n, f);
}

EXPORT size_t __fread_unlocked_chk(void *buf, size_t buflen, size_t size, size_t n, FILE *f)
{
    REAL(__fread_unlocked_chk);
    if (unlikely(tm_route_tx))
        prepare_items(buf, size, n, buflen);
    return real___fread_unlocked_chk(buf, buflen, size, n, f);
}
