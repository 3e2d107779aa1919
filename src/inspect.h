/*
 * inspect.h — what the tools (tools/) see of the core beyond the public
 * header: the on-disk format (format.h), a view into an open handle, a
 * read transaction for inspection, and the heap's walk.
 */
#ifndef TMF_INSPECT_H
#define TMF_INSPECT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "format.h"
#include "tmfalloc.h"

/* An open handle as the tools see it.  fd and log_fd are the handle's own
 * descriptors: never open and close a second descriptor of these files
 * while the handle is open, which would drop the process's locks on them. */
struct tm_view {
    const char *path, *log_path;
    int fd, log_fd;
    uint64_t max;                /* bytes reserved for the arena */
    struct hdr_slot hdr;         /* the current header slot */
    const struct tm_super *sb;   /* the superblock, in the arena */
};
void inspect_view(tm_store *st, struct tm_view *v);

/* The committed state the store's processes share (its lock file): the
 * last durable commit, the last one in the store file (a read-only handle
 * refuses to read, EROFS, while they differ: recovery needed), the arena
 * size; detached: a read-only handle without a writable lock file, alone. */
struct tm_committed {
    uint64_t seq, applied, size;
    int detached;
};
void inspect_state(tm_store *st, struct tm_committed *c);

/* A copy of a store that needs recovery: replays into out_fd, which holds
 * the store file's bytes read since st was opened, every valid record of
 * the log after st's checkpoint, with the library's replay (log.c L1, L4),
 * and cuts it to the arena size of the last one.  The copy then holds the
 * last durable commit, whether or not the store file does yet: a
 * read-only handle's read transaction refuses (EROFS) while it may not.
 * Since the checkpoint, a writer puts into the store file only the bytes of
 * records of its generation (checkpoint.c S1), which the replay writes
 * again over whatever the copy caught.  *seq and *size: the commit the copy
 * holds and its arena size (the checkpoint's when no record follows).
 * -EAGAIN when the store was checkpointed since st was opened (its log may
 * be reused meanwhile): copy again from a new handle. */
int inspect_replay_into(tm_store *st, int out_fd, uint64_t *seq, uint64_t *size);

/* Whether the record at off of a log (its header read already) is valid,
 * checksum and body included: 1, 0, or a negative errno. */
int inspect_record_ok(int log_fd, uint64_t off, const struct log_rec *rec);

/* Whether another process has the store file open; fd is a descriptor of
 * it that the caller opened without a handle.  1, 0 or a negative errno. */
int inspect_live(int fd);

/* The heap's read-only walk (heap_check.c): calls fn for every run of bytes
 * of one kind, in address order, offsets from the base; the header and
 * superblock pages come first.  -TM_ECORRUPT at the first block it cannot
 * trust (after reporting what came before it).  Inside a read transaction. */
enum heap_kind {
    HK_HEADER, HK_SUPER, HK_USED, HK_FREE, HK_SPAN_META, HK_SPAN_USED, HK_SPAN_FREE, HK_FENCE,
    HK_COUNT
};
typedef void heap_walk_fn(void *ctx, uint64_t off, uint64_t len, int kind);
int heap_walk(tm_store *st, heap_walk_fn *fn, void *ctx);

/* The code layout record (format.h, layout.c).  The tools set
 * tm__layout_ignore before they open a store: their own layout is not the
 * program's, and they never follow the data's pointers.  inspect_layout,
 * inside a read transaction: 0 when the store has no record; else 1, *gen
 * its generation, and fn called for each module with the number of
 * aligned words of the live heap that fall in its ranges.  -TM_ECORRUPT
 * for a damaged record, -ENOMEM. */
extern int tm__layout_ignore;
struct tm_layout_module {
    const char *path;            /* not NUL-terminated: path_len bytes */
    unsigned path_len;
    uint64_t base, lo, hi;       /* load address; its ranges span [lo, hi) */
    const uint8_t *build_id;
    unsigned id_len;             /* 0: none */
    uint64_t pointers;
};
typedef void layout_fn(void *ctx, const struct tm_layout_module *m);
int inspect_layout(tm_store *st, uint64_t *gen, layout_fn *fn, void *ctx);

/* Progress of long work, for the tool (the core prints nothing): NULL, or
 * told now and then how many more bytes are done: bytes replayed by
 * log_replay (replay.c), heap walked by heap_check.  Set by a
 * single-threaded tool around one call. */
extern void (*tm__progress)(uint64_t bytes);

/* From os.c (os.h states their conventions: 0 or a negative errno). */
int os_pwrite_all(int fd, const void *buf, size_t len, off_t off);
int os_pread_all(int fd, void *buf, size_t len, off_t off);
int os_fsync_dir(const char *path);

#endif
