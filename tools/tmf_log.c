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

#include "os.h"
#include "tmf.h"

#define CHUNK (1u << 20) /* a multiple of 8: page numbers never straddle it */

int tmf_check_slots(const uint8_t *page0, char *msg, size_t len)
{
    int i;
    for (i = 0; i < 2; i++) {
        const struct hdr_slot *s = (const void *)(page0 + i * HDR_SLOT_SIZE);
        if (memcmp(s->magic, HDR_MAGIC, 8) != 0 || hdr_checksum(s) != s->checksum) {
            snprintf(msg, len, "header slot %d is corrupt (bad magic or checksum; the other slot is in use)", i);
            return -1;
        }
    }
    return 0;
}

static int header_ok(const struct log_rec *r, const struct hdr_slot *h, uint64_t seq, uint64_t off,
                     uint64_t log_size, uint64_t max)
{
    return r->magic == (uint32_t)LOG_MAGIC && r->store_id == h->store_id && r->gen == h->gen &&
           r->seq == seq && r->npages > 0 && r->len == log_record_len(r->npages) &&
           off + r->len <= log_size && r->size >= 2 * PAGE && r->size % PAGE == 0 && r->size <= max;
}

/* The body: checksum, then the page numbers. 1 valid, 0 invalid, -errno. */
static int body_ok(int fd, uint64_t off, const struct log_rec *r, uint8_t *buf)
{
    struct log_rec h0 = *r;
    uint64_t done = 0, body = r->len - sizeof *r, ilen = (uint64_t)r->npages * 8, prev = 0;
    hash_state hs;
    h0.checksum = 0;
    hash_init(&hs, r->store_id);
    hash_update(&hs, &h0, sizeof h0);
    while (done < body) {
        size_t n = body - done < CHUNK ? (size_t)(body - done) : CHUNK, i;
        if (pread(fd, buf, n, (off_t)(off + sizeof *r + done)) != (ssize_t)n)
            return -EIO;
        hash_update(&hs, buf, n);
        for (i = 0; done + i < ilen && i + 8 <= n; i += 8) {
            uint64_t pg;
            memcpy(&pg, buf + i, 8);
            if (pg <= prev || pg >= r->size / PAGE)
                return 0;
            prev = pg;
        }
        done += n;
    }
    return hash_final(&hs) == r->checksum;
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
        out->pages += r.npages;
        out->pending_pages += seq <= sb->seq ? 0 : r.npages;
        off += r.len, seq++;
        out->end = off;
    }
    free(buf);
    return ok < 0 ? ok : 0;
}

/* A read-only handle's read transaction is refused (EROFS) when a record
 * with a valid header follows the superblock's log position: it cannot tell
 * a dead writer's durable commit from a torn record a writer killed while
 * appending left behind.  The scan can: a torn record was never durable, so
 * nothing of it reached the store file, which is then consistent under the
 * shared data lock, taken here directly. */
static int read_torn(tm_store *st, struct log_scan *scan)
{
    int r;
    if ((r = os_lock(st->fd, LOCK_DATA, F_RDLCK, 1)) < 0)
        return -r;
    if ((r = hdr_current(st)) == 0 &&
        (r = tmf_scan_log(st->log_fd, &st->hdr, super_of(st), st->max, scan)) == 0)
        r = scan->pending ? -EROFS : store_refresh(st);
    if (r < 0)
        os_lock(st->fd, LOCK_DATA, F_UNLCK, 0);
    return -r;
}

int tmf_read_begin(tm_store *st, struct log_scan *scan, int *own)
{
    int r = tm_store_read_begin(st);
    *own = 0;
    if (r == EROFS) {
        if ((r = read_torn(st, scan)) == 0)
            *own = 1;
        return r;
    }
    if (r == 0 && (r = -tmf_scan_log(st->log_fd, &st->hdr, super_of(st), st->max, scan)) != 0)
        tm_store_read_end(st);
    return r;
}

void tmf_read_end(tm_store *st, int own)
{
    if (own)
        os_lock(st->fd, LOCK_DATA, F_UNLCK, 0);
    else
        tm_store_read_end(st);
}
