/*
 * tmf.h — shared pieces of the tmf command-line tool: exit codes, opening a
 * store for inspection with a diagnosis of why it cannot be opened, the log
 * scan, and the subcommands.
 *
 * The tool links the static library and sees the core through the public
 * header and src/inspect.h: the on-disk format (header slots, log records)
 * and a view of an open handle.  It never writes a store except in "tmf
 * recover", which goes through the library's read-write open.
 *
 * Never open a second descriptor of a store file while a handle is open on
 * it: closing any descriptor of a file drops all of the process's POSIX
 * locks on it.  Use the view's fd and log_fd instead.
 */
#ifndef TMF_TOOL_H
#define TMF_TOOL_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#include "inspect.h"

/* Exit codes (documented in man/tmf.1). */
enum {
    EXIT_CLEAN = 0,    /* success; check: no damage found */
    EXIT_DAMAGED = 1,  /* check: damage found; other commands: failed */
    EXIT_UNUSABLE = 2, /* cannot be opened: not a store, newer version, truncated, ... */
    EXIT_USAGE = 64    /* bad command line */
};

/* Not an exit status: what tmf_diagnose and tmf_open_ro say of a store
 * whose creation a crash cut short before its log was made (a store never
 * checkpointed, its superblock as new, no log file): no commit can have
 * been made, and the first read-write open makes the log (src/store.c).
 * check and info call it recovery pending; the other commands fail with
 * that message (EXIT_DAMAGED). */
#define TMF_UNFINISHED (-1)

/* What a scan of the redo log found (the rules of src/log.c, L1). */
struct log_scan {
    uint64_t log_size;   /* bytes of the log file */
    uint64_t records;    /* valid records after the checkpoint */
    uint64_t bytes;      /* their bytes */
    uint64_t applied;    /* of them, in the store file already (seq <= superblock's) */
    uint64_t pending;    /* of them, durable but not applied: recovery needed */
    uint64_t pending_bytes; /* bytes of the pending ones */
    uint64_t first_seq, last_seq;
    uint64_t end;        /* offset just past the last valid record */
    int corrupt;         /* a record the superblock proves committed is corrupt */
    int torn;            /* an uncommitted record with a valid header, torn: discarded */
    uint64_t bad_off, bad_seq;
};

/* Scans the log on fd for records of header h; records up to seq applied
 * are in the store file. */
int tmf_scan_log(int fd, const struct hdr_slot *h, uint64_t applied, uint64_t max, struct log_scan *out);
/* A read transaction with a scan of the log: 0, EROFS when recovery is
 * pending (the scan is made, no transaction is open), or an error code. */
int tmf_read_begin(tm_store *st, struct log_scan *scan);
/* Checks both header slots of page 0; 0, or -1 with a message in msg. */
int tmf_check_slots(const uint8_t *page0, char *msg, size_t len);

/* Opens path read-only.  On failure returns EXIT_DAMAGED (a corrupt
 * header, superblock or log header), EXIT_UNUSABLE or TMF_UNFINISHED, with
 * the diagnosis in msg, or printed as "tmf: path: why" when msg is NULL;
 * *st is NULL then. */
int tmf_open_ro(const char *path, tm_store **st, char *msg, size_t len);
/* Why tm_open failed with code: a diagnosis read from the files; returns
 * the exit code it deserves, or TMF_UNFINISHED. */
int tmf_diagnose(const char *path, int code, char *msg, size_t len);
/* Prints "tmf: a: b" on stderr. */
void tmf_err(const char *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Progress on stderr (tmf_progress.c): a meter of total bytes, shown when
 * stderr is a terminal, the work is large and --quiet was not given.
 * tmf_progress_add suits the library's hook, tm__progress. */
void tmf_progress_quiet(int quiet);
void tmf_progress_start(const char *what, uint64_t total);
void tmf_progress_set(uint64_t done);
void tmf_progress_add(uint64_t bytes);
void tmf_progress_end(void);
/* "1.5 MiB" */
const char *tmf_human(uint64_t n, char *buf, size_t len);

/* Subcommand arguments: the one or two operands and the options seen. */
struct tmf_args {
    const char *file, *dest, *png;
    int json, force, help, quiet, color;  /* color: -1 auto, 0 never, 1 always */
    unsigned width;
};
typedef int tmf_cmd(const struct tmf_args *a);
tmf_cmd tmf_info, tmf_stats, tmf_check, tmf_recover, tmf_copy, tmf_map;

#endif
