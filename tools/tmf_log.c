/*
 * tmf_log.c — read-only checks of on-disk structures for the tool: the two
 * header slots, and a scan of the redo log by the record rules of
 * src/log.c (L1), checked by the library's own code (inspect.h).  The scan
 * classifies what it finds against the committed state the store's
 * processes share: records applied, records durable but not applied
 * (recovery pending), a torn uncommitted tail (normal after a crash), or a
 * corrupt record that was taken as applied (damage).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tmf.h"


int tmf_check_slots(const uint8_t *page0, char *msg, size_t len)
{
    struct hdr_slot s;
    int i;
    for (i = 0; i < 2; i++) {
        if (!hdr_slot_ok(page0, i, &s)) {
            snprintf(msg, len, "header slot %d is corrupt (bad magic or checksum; the other slot is in use)", i);
            return -1;
        }
    }
    return 0;
}

static int header_ok(const struct log_rec *r, const struct hdr_slot *h, uint64_t seq, uint64_t off,
                     uint64_t log_size, uint64_t max)
{
    return log_rec_header_ok(r, h->store_id, h->gen, seq, max) && off + r->len <= log_size;
}

static void note_bad(struct log_scan *out, const struct log_rec *r, uint64_t applied, uint64_t off)
{
    if (r->seq <= applied)
        out->corrupt = 1; /* the store's processes took this commit as applied */
    else
        out->torn = 1;
    out->bad_off = off;
    out->bad_seq = r->seq;
}

int tmf_scan_log(int fd, const struct hdr_slot *h, uint64_t applied, uint64_t max, struct log_scan *out)
{
    uint64_t off = LOG_START, seq = h->ckpt_seq + 1;
    struct log_rec r;
    struct stat ls;
    int ok = 1;

    memset(out, 0, sizeof *out);
    if (fstat(fd, &ls) < 0)
        return -errno;
    out->log_size = (uint64_t)ls.st_size;
    out->end = LOG_START;
    while (ok > 0 && os_pread_all(fd, &r, sizeof r, (off_t)off) == 0 &&
           header_ok(&r, h, seq, off, out->log_size, max)) {
        if ((ok = inspect_record_ok(fd, off, &r)) <= 0) {
            if (ok == 0)
                note_bad(out, &r, applied, off);
            break;
        }
        if (out->records++ == 0)
            out->first_seq = seq;
        out->last_seq = seq;
        out->bytes += r.len;
        *(seq <= applied ? &out->applied : &out->pending) += 1;
        out->pending_bytes += seq <= applied ? 0 : r.len;
        off += r.len, seq++;
        out->end = off;
    }
    return ok < 0 ? ok : 0;
}

int tmf_read_begin(tm_store *st, struct log_scan *scan)
{
    struct tm_committed c;
    struct tm_view v;
    int r = tm_store_read_begin(st), rr;
    if (r != 0 && r != EROFS)
        return r;
    inspect_view(st, &v);
    inspect_state(st, &c);
    if ((rr = -tmf_scan_log(v.log_fd, &v.hdr, c.applied, v.max, scan)) != 0) {
        if (r == 0)
            tm_store_read_end(st);
        return rr;
    }
    return r;
}
