/*
 * format.c — checksums and validation of the on-disk structures of
 * format.h, shared by the library and the tools.  Every length, offset and
 * address read from a file passes through one of these before use.
 */
#include "format.h"

#include <string.h>

#include "tmfalloc.h"

#define SEED_HDR 0x746d6668   /* "tmfh" */
#define SEED_SUPER 0x746d6673 /* "tmfs" */

uint64_t hdr_checksum(const struct hdr_slot *s)
{
    return hash_bytes(s, offsetof(struct hdr_slot, checksum), SEED_HDR);
}

uint64_t super_checksum(const struct tm_super *sb)
{
    return hash_bytes(sb, offsetof(struct tm_super, checksum), SEED_SUPER);
}

void hdr_init(struct hdr_slot *h, uint64_t base, uint64_t max_size, uint64_t size, uint64_t store_id)
{
    memset(h, 0, sizeof *h);
    memcpy(h->magic, HDR_MAGIC, 8);
    h->version = FORMAT_VERSION;
    h->page_size = PAGE;
    h->base = base;
    h->max_size = max_size;
    h->store_id = store_id;
    h->gen = 1;
    h->ckpt_size = size;
    h->checksum = hdr_checksum(h);
}

static int slot_sane(const struct hdr_slot *s)
{
    return s->page_size == PAGE && s->base % PAGE == 0 && s->base >= ((uint64_t)1 << 32) &&
           s->max_size % PAGE == 0 && s->max_size >= 2 * PAGE && s->max_size < ADDR_LIMIT &&
           s->base + s->max_size <= ADDR_LIMIT && s->ckpt_size >= 2 * PAGE &&
           s->ckpt_size % PAGE == 0 && s->ckpt_size <= s->max_size && s->store_id != 0;
}

int hdr_slot_ok(const uint8_t *page0, int i, struct hdr_slot *out)
{
    memcpy(out, page0 + i * HDR_SLOT_SIZE, sizeof *out);
    return memcmp(out->magic, HDR_MAGIC, 8) == 0 && hdr_checksum(out) == out->checksum;
}

int hdr_pick(const uint8_t *page0, struct hdr_slot *out)
{
    struct hdr_slot s[2];
    int best = -1, magic = 0, i;
    for (i = 0; i < 2; i++) {
        if (!hdr_slot_ok(page0, i, &s[i])) {
            magic |= memcmp(s[i].magic, HDR_MAGIC, 8) == 0;
            continue;
        }
        magic = 1;
        if (best < 0 || s[i].gen > s[best].gen)
            best = i;
    }
    if (best < 0)
        return magic ? -TM_ECORRUPT : -TM_ENOTSTORE;
    if (s[best].version > FORMAT_VERSION)
        return -TM_EVERSION;
    if (s[best].version < MIN_FORMAT_VERSION || !slot_sane(&s[best]))
        return -TM_ECORRUPT;
    *out = s[best];
    return 0;
}

int super_check(const struct tm_super *sb, const struct hdr_slot *h, uint64_t file_size, const char **why)
{
    const char *w = NULL;
    if (sb->magic != SUPER_MAGIC || sb->checksum != super_checksum(sb))
        w = "the superblock (page 1) is corrupt (bad magic or checksum)";
    else if (sb->size < 2 * PAGE || sb->size % PAGE || sb->size > h->max_size)
        w = "the superblock has impossible values (size)";
    else if (sb->root && (sb->root < h->base + 2 * PAGE || sb->root - h->base > sb->size ||
                          sb->root_size > sb->size - (sb->root - h->base)))
        w = "the superblock's root pointer lies outside the arena";
    if (why)
        *why = w;
    if (w)
        return -TM_ECORRUPT;
    return sb->size > file_size ? -TM_ETRUNCATED : 0;
}

void log_head_init(uint8_t page[PAGE], uint64_t store_id)
{
    struct log_head h;
    memset(page, 0, PAGE);
    memcpy(h.magic, LOG_HDR_MAGIC, 8);
    h.store_id = store_id;
    memcpy(page, &h, sizeof h);
}

int log_head_check(const void *head, size_t len, uint64_t store_id)
{
    struct log_head h;
    if (len < sizeof h)
        return -TM_ECORRUPT;
    memcpy(&h, head, sizeof h);
    return memcmp(h.magic, LOG_HDR_MAGIC, 8) == 0 && h.store_id == store_id ? 0 : -TM_ECORRUPT;
}

uint64_t log_pages_len(uint64_t npages)
{
    return sizeof(struct log_rec) + npages * (8 + PAGE);
}

int log_rec_header_ok(const struct log_rec *r, uint64_t store_id, uint64_t gen, uint64_t seq, uint64_t max)
{
    int len_ok = r->magic == LOG_MAGIC ? r->len >= sizeof *r + r->n * log_range_bytes(1) && r->len % 8 == 0
                                      : r->magic == LOG_MAGIC_PAGES && r->len == log_pages_len(r->n);
    return len_ok && r->store_id == store_id && r->gen == gen && r->seq == seq && r->n > 0 &&
           r->size >= 2 * PAGE && r->size % PAGE == 0 && r->size <= max;
}

void log_rec_hash_init(hash_state *h, const struct log_rec *r)
{
    struct log_rec h0 = *r;
    h0.checksum = 0;
    hash_init(h, r->store_id);
    hash_update(h, &h0, sizeof h0);
}

void log_index_check_init(struct log_index_check *c, const struct log_rec *r)
{
    c->prev = 0;
    c->limit = r->size / PAGE;
    c->ok = 1;
}

void log_index_check(struct log_index_check *c, const void *p, size_t len)
{
    size_t i;
    for (i = 0; i + 8 <= len; i += 8) {
        uint64_t pg;
        memcpy(&pg, (const uint8_t *)p + i, 8);
        if (pg <= c->prev || pg >= c->limit)
            c->ok = 0;
        c->prev = pg;
    }
}
