/*
 * os.h — the few system primitives the core uses, behind one table.
 *
 * Every call returns 0 (or a byte count for the I/O calls) on success and a
 * negative errno value on failure; none of them touches errno for the caller.
 * Short transfers are completed inside os_pwrite_all / os_pread_all.
 *
 * The table is the seam for fault injection: tests swap entries to make any
 * write, pwrite, fdatasync or ftruncate fail, come up short, or be recorded
 * for a simulated power cut (tests/faults.c), or to hide PAGEMAP_SCAN or
 * process_madvise as older kernels do.  Nothing else in the core calls
 * these system calls directly.
 */
#ifndef TMF_OS_H
#define TMF_OS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct tm_os {
    ssize_t (*pread)(int fd, void *buf, size_t len, off_t off);
    ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t off);
    ssize_t (*pwritev)(int fd, const struct iovec *iov, int n, off_t off);
    int (*fdatasync)(int fd);
    int (*ftruncate)(int fd, off_t len);
    int (*fallocate)(int fd, off_t off, off_t len);
    int (*ioctl)(int fd, unsigned long req, void *arg); /* PAGEMAP_SCAN */
    ssize_t (*madvise_self)(const struct iovec *iov, size_t n, int advice); /* process_madvise */
} tm_os;

/* The table in use; tests may replace entries and restore them. */
extern tm_os os_calls;
/* The real system calls, for tests that wrap them. */
extern const tm_os os_real;

/* Loops over short transfers; a write that makes no progress is -EIO. */
int os_pwrite_all(int fd, const void *buf, size_t len, off_t off);
int os_pwritev_all(int fd, struct iovec *iov, int n, off_t off);
int os_pread_all(int fd, void *buf, size_t len, off_t off);
int os_fdatasync(int fd);
int os_ftruncate(int fd, off_t len);
/* Reserves blocks for [off, off+len), extending the file; falls back to
 * ftruncate where the file system cannot preallocate. */
int os_extend(int fd, off_t off, off_t len);

/* File locks on single bytes (process-associated: not inherited by fork).
 * type is F_RDLCK, F_WRLCK or F_UNLCK; wait selects F_SETLKW. */
int os_lock(int fd, off_t byte, int type, int wait);
/* The same on len bytes from byte: one call for neighbouring locks. */
int os_lock_range(int fd, off_t byte, off_t len, int type, int wait);

/* Zeroed memory straight from mmap: the core never calls malloc, which the
 * preload may route into the arena. NULL on failure. */
void *os_alloc(size_t len);
void os_free(void *p, size_t len);

size_t os_page_size(void);
pid_t os_gettid(void);
/* write(2) to stderr, for diagnostics that must not allocate. */
void os_say(const char *a, const char *b, uintptr_t addr);

#endif
