/* util.h — helpers shared by the test suites. */
#ifndef TMF_TEST_UTIL_H
#define TMF_TEST_UTIL_H

#include <criterion/criterion.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tmfalloc.h"

/* A fresh directory for this test; removed with its files at exit. */
const char *tu_dir(void);
/* "<tu_dir()>/<name>" in a static buffer per call slot (4 slots). */
const char *tu_path(const char *name);
/* Options for tests: base TMF_ADDR (hex) or the default, 1 GiB reservation,
 * given sync. */
tm_options tu_opts(tm_sync sync);
/* Opens (creating) path with tu_opts(TM_SYNC_FULL); fails the test on error. */
tm_store *tu_open(const char *path);
/* For forked children, where Criterion assertions must not be used (they
 * talk to the runner and hang): opens path or _exits with status 99. */
tm_store *tu_open_or_exit(const char *path);
/* Asserts an int call returned 0, printing tm_strerror otherwise. */
#define TU_OK(call)                                                                 \
    do {                                                                            \
        int tu_r_ = (call);                                                         \
        cr_assert_eq(tu_r_, 0, "%s -> %d (%s)", #call, tu_r_, tm_strerror(tu_r_));  \
    } while (0)

/* Runs fn(arg) in a child process; returns its wait status. The child's
 * stderr goes to errbuf (if not NULL, up to len bytes, NUL-terminated). */
int tu_run_child(void (*fn)(void *), void *arg, char *errbuf, size_t len);

/* The current header slot of the store file at path (the valid one of
 * the later generation); fails the test when neither is valid. */
struct hdr_slot;
void tu_header(const char *path, struct hdr_slot *out);
/* Rewrites both header slots of the store file at path with this format
 * version, as a store of that version says. */
void tu_set_version(const char *path, uint32_t version);

/* Whether another process finds the writer lock of the store at path taken
 * (asked from a child: a process never conflicts with its own locks). */
int tu_writer_lock_held(const char *path);

/* A checkpoint now: takes the writer's lock, heals, checkpoints; returns
 * the checkpoint's result (a negative errno). */
int tu_checkpoint(tm_store *st);
/* The same, its sync of the store file failing with EIO once (checkpoint.c
 * S4: a rewrite of the generation's records is owed then). */
int tu_checkpoint_failing_sync(tm_store *st);
/* From now on counts, in tu_store_writes, the writes to fd past its first
 * two pages (headers, superblock): arena bytes written into the store file. */
extern long tu_store_writes;
void tu_count_store_writes(int fd);

/* A small deterministic PRNG (splitmix64). */
static inline uint64_t tu_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#endif
