/*
 * tmf_log.c — read-only checks of on-disk structures for the tool: the two
 * header slots, and a scan of the redo log by the record rules of
 * src/log.c (L1): magic, store id, generation, the expected sequence number,
 * a length that fits the file, the checksum, and page numbers strictly
 * increasing inside the arena.  The scan classifies what it finds against
 * the superblock: records already applied (seq <= superblock seq), records
 * durable but not applied (recovery pending), a torn uncommitted tail
 * (normal after a crash), or a corrupt record the superblock proves was
 * committed (damage).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tmf.h"

#define CHUNK (1u << 20) /* a multiple of 8: page numbers never straddle it */

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

/* The body: checksum, then the page numbers. 1 valid, 0 invalid, -errno. */
static int body_ok(int fd, uint64_t off, const struct log_rec *r, uint8_t *buf)
{
    uint64_t done = 0, body = r->len - sizeof *r, ilen = (uint64_t)r->npages * 8;
    struct log_index_check ic;
    hash_state hs;
    int e;
    log_rec_hash_init(&hs, r);
    log_index_check_init(&ic, r);
    while (done < body) {
        size_t n = body - done < CHUNK ? (size_t)(body - done) : CHUNK;
        if ((e = os_pread_all(fd, buf, n, (off_t)(off + sizeof *r + done))) < 0)
            return e == -ENODATA ? -EIO : e;
        hash_update(&hs, buf, n);
        if (done < ilen)
            log_index_check(&ic, buf, ilen - done < n ? (size_t)(ilen - done) : n);
        done += n;
    }
    return ic.ok && hash_final(&hs) == r->checksum;
}

static void note_bad(struct log_scan *out, const struct log_rec *r, const struct tm_super *sb,
                     uint64_t off)
{
    if (r->seq <= sb->seq)
        out->corrupt = 1; /* the superblock proves this commit happened */
    else
        out->torn = 1;
    out->bad_off = off;
    out->bad_seq = r->seq;
}

int tmf_scan_log(int fd, const struct hdr_slot *h, const struct tm_super *sb, uint64_t max,
                 struct log_scan *out)
{
    uint64_t off = LOG_START, seq = h->ckpt_seq + 1;
    struct log_rec r;
    struct stat ls;
    uint8_t *buf;
    int ok = 1;

    memset(out, 0, sizeof *out);
    if (fstat(fd, &ls) < 0)
        return -errno;
    out->log_size = (uint64_t)ls.st_size;
    out->end = LOG_START;
    if (!(buf = malloc(CHUNK)))
        return -ENOMEM;
    while (ok > 0 && pread(fd, &r, sizeof r, (off_t)off) == (ssize_t)sizeof r &&
           header_ok(&r, h, seq, off, out->log_size, max)) {
        if ((ok = body_ok(fd, off, &r, buf)) <= 0) {
            if (ok == 0)
                note_bad(out, &r, sb, off);
            break;
        }
        if (out->records++ == 0)
            out->first_seq = seq;
        out->last_seq = seq;
        out->bytes += r.len;
        *(seq <= sb->seq ? &out->applied : &out->pending) += 1;
        off += r.len, seq++;
        out->end = off;
    }
    free(buf);
    return ok < 0 ? ok : 0;
}

int tmf_read_begin(tm_store *st, struct log_scan *scan, int *own)
{
    struct tm_view v;
    int r = inspect_begin(st, own);
    if (r != 0)
        return r;
    inspect_view(st, &v);
    if ((r = -tmf_scan_log(v.log_fd, &v.hdr, v.sb, v.max, scan)) != 0)
        inspect_end(st, *own);
    return r;
}

void tmf_read_end(tm_store *st, int own)
{
    inspect_end(st, own);
}
