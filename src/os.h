/*
 * os.h — every system call the core makes, behind one swappable table.
 *
 * The lowest layer: it knows nothing of stores, transactions or the
 * interposers (it makes its calls with syscall(2), never through the
 * exported read/pread wrappers of interpose.c).
 *
 * Conventions, written once for every function below:
 *   - the return value is 0 (or a byte count, a descriptor, an address)
 *     on success and a negative errno value on failure; errno itself is
 *     never the channel, and is left as it was;
 *   - EINTR is retried inside;
 *   - short transfers are completed inside os_pread_all / os_pwrite_all /
 *     os_pwritev_all; a transfer that makes no progress is -EIO (write)
 *     or -ENODATA (read: end of file).
 *
 * The table is the seam for fault injection and crash exploration: tests
 * replace entries to make any call fail, come up short, or be recorded for
 * a simulated power cut (tests/test_faults.c, test_powercut.c,
 * test_explore.c), or to hide PAGEMAP_SCAN, process_madvise or
 * userfaultfd as older kernels and locked-down containers do.  Nothing else
 * in the core makes a system call, so `grep os_calls` lists them all.
 */
#ifndef TMF_OS_H
#define TMF_OS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct tm_os {
    /* files */
    int (*open)(const char *path, int flags, unsigned mode);
    int (*close)(int fd);
    int (*fstat)(int fd, struct stat *st);
    int (*link_fd)(int fd, const char *to); /* gives a file (an O_TMPFILE one) the name to */
    int (*unlink)(const char *path);
    ssize_t (*read_at)(int fd, void *buf, size_t len, off_t off);
    ssize_t (*write_at)(int fd, const void *buf, size_t len, off_t off);
    ssize_t (*writev_at)(int fd, const struct iovec *iov, int n, off_t off);
    /* writes at off of the file fd through map, its shared writable
     * mapping (a memcpy: no system call, the page cache as pwrite's) */
    ssize_t (*write_mapped)(int fd, char *map, const void *buf, size_t len, off_t off);
    int (*fsync)(int fd);
    int (*fdatasync)(int fd);
    int (*sync_range)(int fd, off_t off, off_t len); /* start write-back only */
    int (*ftruncate)(int fd, off_t len);
    int (*fallocate)(int fd, off_t off, off_t len);
    int (*fadvise)(int fd, off_t off, off_t len, int advice);
    int (*fcntl_lock)(int fd, int cmd, void *flock); /* F_SETLK, F_SETLKW, F_GETLK */
    /* memory */
    void *(*mmap)(void *addr, size_t len, int prot, int flags, int fd, off_t off); /* or (void *)-errno */
    int (*munmap)(void *addr, size_t len);
    int (*mprotect)(void *addr, size_t len, int prot);
    int (*madvise)(void *addr, size_t len, int advice);
    ssize_t (*madvise_self)(const struct iovec *iov, size_t n, int advice); /* process_madvise */
    int (*ioctl)(int fd, unsigned long req, void *arg); /* PAGEMAP_SCAN, userfaultfd */
    int (*userfaultfd)(int flags);
    /* futex(2) on a 32-bit word; shared: across processes (a MAP_SHARED word) */
    int (*futex_wait)(_Atomic uint32_t *word, uint32_t val, long timeout_ns, int shared);
    int (*futex_wake)(_Atomic uint32_t *word, int n, int shared);
} tm_os;

/* The table in use; tests may replace entries and restore them. */
extern tm_os os_calls;
/* The real system calls, for tests that wrap them. */
extern const tm_os os_real;

/* Is the value a mapping or a negative errno in disguise? */
static inline int os_map_failed(const void *p)
{
    return (uintptr_t)p >= (uintptr_t)-4095;
}

/* Opens with O_CLOEXEC added. */
int os_open(const char *path, int flags, unsigned mode);
/* Linux releases the descriptor even when close reports an error, and the
 * core syncs what it must before closing: nothing is left to do about one. */
void os_close(int fd);
int os_fstat(int fd, struct stat *st);
/* A nameless file in the directory of path (O_TMPFILE), or -EOPNOTSUPP
 * where the file system has none. */
int os_tmpfile(const char *path, unsigned mode);
/* Gives fd the name to; -EEXIST when it is taken. */
int os_link_fd(int fd, const char *to);
int os_unlink(const char *path);
int os_pwrite_all(int fd, const void *buf, size_t len, off_t off);
/* The same, in aligned pieces that leave the page cache in small folios
 * (see os.c): for files that later take small writes. */
int os_pwrite_small(int fd, const void *buf, size_t len, off_t off);
int os_pwritev_all(int fd, struct iovec *iov, int n, off_t off);
int os_pread_all(int fd, void *buf, size_t len, off_t off);
/* Writes through map, fd's shared writable mapping: a memcpy, or a pwrite
 * where the memcpy meets SIGBUS (a page without a block on a full file
 * system, an I/O error), which then reports the error. */
int os_write_mapped(int fd, char *map, const void *buf, size_t len, off_t off);
/* In a SIGBUS handler: when the signal hit os_write_mapped's memcpy on
 * this thread, jumps back into it (and does not return). */
void os_mapped_fault(void);
int os_fsync(int fd);
int os_fdatasync(int fd);
/* fsync of the directory that holds path: makes a new name durable. */
int os_fsync_dir(const char *path);
/* Starts the write-back of a file; a hint whose failure changes nothing. */
void os_writeback(int fd);
int os_ftruncate(int fd, off_t len);
/* Reserves blocks for [off, off+len), extending the file; falls back to
 * ftruncate where the file system cannot preallocate. */
int os_extend(int fd, off_t off, off_t len);
/* posix_fadvise; a hint whose failure changes nothing. */
void os_fadvise(int fd, int advice);

/* POSIX record locks on len bytes from byte (per process, dropped at exit
 * and by closing any descriptor of the file, not inherited by fork).  type
 * is F_RDLCK, F_WRLCK or F_UNLCK; wait selects F_SETLKW.  A lock that is
 * busy without wait is -EAGAIN. */
int os_lock(int fd, off_t byte, off_t len, int type, int wait);
/* The same waiting, where the kernel's deadlock detection may be wrong:
 * it takes all threads of a process for one owner, so a lock this thread
 * waits for, held by a process that waits for another thread's lock, is
 * reported as a deadlock (-EDEADLK) that another thread's progress ends.
 * Retried, after a pause growing to 10 ms. */
int os_lock_wait_patiently(int fd, off_t byte, off_t len, int type);
/* Whether another process holds a lock of that type or stronger on the
 * byte: 1, 0, or a negative errno. */
int os_lock_held(int fd, off_t byte, int type);

void *os_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
/* Unmaps a range the core mapped itself, which cannot fail. */
void os_munmap(void *addr, size_t len);
int os_mprotect(void *addr, size_t len, int prot);
int os_madvise(void *addr, size_t len, int advice);
ssize_t os_madvise_self(const struct iovec *iov, size_t n, int advice);
int os_ioctl(int fd, unsigned long req, void *arg);
int os_userfaultfd(int flags);
/* Sleeps while *word == val, at most timeout_ns (< 0: no limit); 0 when
 * woken or the value differed, -ETIMEDOUT, -EINTR.  shared: the word is in
 * a MAP_SHARED mapping used by several processes. */
int os_futex_wait(_Atomic uint32_t *word, uint32_t val, long timeout_ns, int shared);
/* Wakes up to n sleepers on word (INT_MAX: all). */
void os_futex_wake(_Atomic uint32_t *word, int n, int shared);

/* Zeroed memory straight from mmap: the core never calls malloc, which the
 * preload may route into the arena.  NULL on failure. */
void *os_alloc(size_t len);
void os_free(void *p, size_t len);

size_t os_page_size(void);
/* The calling thread's id, cached per thread (reset in a forked child). */
pid_t os_tid(void);
void os_tid_forget(void);
pid_t os_pid(void);
/* The system's boot id (36 characters, /proc/sys/kernel/random/boot_id). */
int os_boot_id(char out[36]);
/* 8 random bytes; never fails (falls back on the clock and addresses). */
uint64_t os_random64(void);
/* write(2) to stderr, for diagnostics that must not allocate:
 * "tmfalloc: a 0x<addr> b" (addr and b left out when 0 / NULL). */
void os_say(const char *a, const char *b, uintptr_t addr);

#endif
