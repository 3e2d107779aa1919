/*
 * format.h — the on-disk format, byte by byte, and its validation.
 *
 * Shared by the library and the tools (tools/ include this header and the
 * public one, nothing else of the core).  All integers are little-endian;
 * the structures are laid out exactly as the offsets in the comments say,
 * which the _Static_asserts below hold the compiler to.
 *
 * A store is two files: the store file "<path>" and its redo log
 * "<path>.log".
 *
 * The store file, a whole number of PAGE-byte pages:
 *   page 0   header: two slots of struct hdr_slot at offsets 0 and 512, each
 *            with its own checksum.  The valid slot of the higher generation
 *            is current.  A checkpoint writes the other slot, so a write torn
 *            by a power cut leaves the previous one intact.  Never written
 *            through the mapping.
 *   page 1   superblock (struct tm_super): an ordinary transactional page.
 *            Its last 8 bytes (SUPER_LAYOUT_OFF) hold the address of the
 *            code layout record, or 0 (see "the code layout" below).
 *   page 2.. the heap (heap.h).
 *
 * The log file:
 *   page 0   log header: struct log_head, then zeros.  Written once, when the
 *            log is created; a log that names another store is refused.
 *   4096..   records, back to back, until the first invalid one (log.c).
 *
 * A record (struct log_rec, 64 bytes, then its body) holds what one commit
 * changed, as byte ranges of the arena:
 *   struct log_range {off, len}, then len bytes, then zeros up to a
 *   multiple of 8; nranges times, strictly increasing and apart, each
 *   inside [PAGE, size)
 * Its checksum covers the header (with checksum = 0) and the body, seeded
 * with the store id.  Stores of format 3 and older wrote page records
 * (LOG_MAGIC_PAGES): u64 page numbers x n, strictly increasing in
 * [1, size/PAGE), then the n page images; they are still replayed.
 *
 * Format 4 (lean records, the lock file) no longer keeps the superblock's
 * seq, log_gen and log_tail: the committed state lives in the lock file
 * while the store is open, and in the header's checkpoint and the log
 * otherwise.  Its checksum still covers the first 56 bytes, and a commit
 * that changed them seals it anew.
 */
#ifndef TMF_FORMAT_H
#define TMF_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define PAGE 4096u
#define PAGE_SHIFT 12
#define FORMAT_VERSION 5u /* 2: the heap's recent lists (heap.h H7); 3: heap_prio; 4: lean records, the
                           * heap's big lists and span map (H8, H9); 5: the heap's bins (H10) */
#define MIN_FORMAT_VERSION 1u /* older versions read, upgraded by their first read-write opener */
#define ADDR_LIMIT ((uint64_t)1 << 47) /* x86-64 user space */

/* ---- the store file's header (page 0) ---- */

#define HDR_MAGIC "TMFSTORE"
#define HDR_SLOT_SIZE 512u /* one sector: the two slots never share one */
struct hdr_slot {
    char magic[8];       /*  0: HDR_MAGIC */
    uint32_t version;    /*  8: FORMAT_VERSION of the store */
    uint32_t page_size;  /* 12: PAGE */
    uint64_t base;       /* 16: address the arena is mapped at */
    uint64_t max_size;   /* 24: address space reserved for growth */
    uint64_t store_id;   /* 32: random; ties the log to its store */
    uint64_t gen;        /* 40: checkpoint generation, salt of the log records */
    uint64_t ckpt_seq;   /* 48: commit sequence number at the checkpoint */
    uint64_t ckpt_size;  /* 56: arena size at the checkpoint */
    uint64_t checksum;   /* 64: of the 64 bytes above */
};                       /* 72 bytes */
_Static_assert(sizeof(struct hdr_slot) == 72 && offsetof(struct hdr_slot, checksum) == 64, "hdr_slot layout");

/* ---- the superblock (page 1) ---- */

#define SUPER_MAGIC 0x5245505553464d54ull /* "TMFSUPER" */
#define SUPER_HEAP_BYTES 3072
struct tm_super {
    uint64_t magic;      /*  0: SUPER_MAGIC */
    uint64_t seq;        /*  8: format <= 3: commits so far */
    uint64_t size;       /* 16: arena size in bytes, a multiple of PAGE */
    uint64_t log_gen;    /* 24: format <= 3: generation of the record that wrote this page */
    uint64_t log_tail;   /* 32: format <= 3: log offset just past that record */
    uint64_t root;       /* 40: address of the root object, or 0 */
    uint64_t root_size;  /* 48 */
    uint64_t checksum;   /* 56: of the 56 bytes above */
    uint8_t heap[SUPER_HEAP_BYTES]; /* 64: the heap's own state (heap.h) */
};
_Static_assert(offsetof(struct tm_super, checksum) == 56 && offsetof(struct tm_super, heap) == 64 &&
                   sizeof(struct tm_super) <= PAGE,
               "tm_super layout");

/* ---- the code layout (layout.c) ----
 *
 * Where the programs and libraries whose code or static data the committed
 * data may point into were loaded: function pointers, C++ vtables, method
 * tables, addresses of static data.  0 at SUPER_LAYOUT_OFF until a commit
 * first stores a word that falls in a loaded module's mapped ranges; from
 * then on a heap block holds the record, and every process whose own
 * layout differs rewrites it at its first commit.  An open whose layout
 * differs from the record where the data do point (a module moved,
 * rebuilt or missing) is refused (TM_ELAYOUT).
 *
 * The record, all of it inside the block (its usable size may be larger):
 *   struct layout_head, then nmods times: struct layout_mod, nseg ranges
 *   (u64 start, u64 end: page-aligned, increasing, start < end), the path
 *   (path_len bytes, no NUL), zeros up to a multiple of 8.
 * The checksum covers the whole record with the checksum field 0, seeded
 * with LAYOUT_SEED.  Libraries older than the record leave it alone: a
 * store they commit to afterwards may hold pointers it does not list.
 */
#define SUPER_LAYOUT_OFF (PAGE - 8)
_Static_assert(sizeof(struct tm_super) <= SUPER_LAYOUT_OFF, "the layout field is past the superblock");

#define LAYOUT_MAGIC "TMFLAYT1"
#define LAYOUT_SEED 0x4c41594f55540a01ull
#define LAYOUT_SEGS 8     /* ranges per module at most */
#define LAYOUT_ID_MAX 32  /* bytes of a build id at most (GNU ld writes 20) */
#define LAYOUT_MODS 512   /* modules at most */
struct layout_head {
    char magic[8];       /*  0: LAYOUT_MAGIC */
    uint32_t nmods;      /*  8: modules that follow, <= LAYOUT_MODS */
    uint32_t bytes;      /* 12: the whole record, this header included */
    uint64_t gen;        /* 16: 1, then one more at each rewrite */
    uint64_t checksum;   /* 24 */
};                       /* 32 bytes */
_Static_assert(sizeof(struct layout_head) == 32, "layout_head layout");

struct layout_mod {
    uint64_t base;       /*  0: load address (the difference between its
                          *     addresses in memory and in its file) */
    uint32_t nseg;       /*  8: ranges that follow, 1..LAYOUT_SEGS: its
                          *     PT_LOAD segments, widened to pages */
    uint16_t path_len;   /* 12: bytes of its path; the program's own is the
                          *     one it was executed as */
    uint8_t id_len;      /* 14: bytes of its build id (the ELF note
                          *     NT_GNU_BUILD_ID); 0: none, and path and
                          *     ranges identify it */
    uint8_t reserved;    /* 15: 0 */
    uint8_t build_id[LAYOUT_ID_MAX]; /* 16 */
};                       /* 48 bytes */
_Static_assert(sizeof(struct layout_mod) == 48, "layout_mod layout");

/* A module's ranges (2 * nseg words), its path, and the module after it. */
static inline const uint64_t *layout_mod_segs(const struct layout_mod *m)
{
    return (const uint64_t *)(m + 1);
}

static inline const char *layout_mod_path(const struct layout_mod *m)
{
    return (const char *)(layout_mod_segs(m) + 2 * m->nseg);
}

static inline const struct layout_mod *layout_mod_next(const struct layout_mod *m)
{
    return (const struct layout_mod *)(const void *)(layout_mod_path(m) + ((m->path_len + 7u) & ~7u));
}

/* ---- the log ---- */

#define LOG_HDR_MAGIC "TMFLOG\0\0"
#define LOG_START PAGE /* records start after the log file's header page */
struct log_head {
    char magic[8];       /*  0: LOG_HDR_MAGIC */
    uint64_t store_id;   /*  8: the store the log belongs to */
};

#define LOG_MAGIC 0x474e5254u       /* "TRNG": a record of byte ranges */
#define LOG_MAGIC_PAGES 0x52544d54u /* "TMTR": a record of pages, format <= 3 */
struct log_rec {
    uint32_t magic;      /*  0: LOG_MAGIC (or LOG_MAGIC_PAGES) */
    uint32_t n;          /*  4: ranges (pages); > 0 */
    uint64_t store_id;   /*  8 */
    uint64_t gen;        /* 16: the header's generation when written */
    uint64_t seq;        /* 24: ckpt_seq + 1, + 2, ... in file order */
    uint64_t size;       /* 32: arena size after the commit */
    uint64_t len;        /* 40: bytes of the record, this header included; a multiple of 8 */
    uint64_t checksum;   /* 48: of header (checksum 0) and body */
    uint64_t reserved;   /* 56: 0 */
};
_Static_assert(sizeof(struct log_rec) == 64 && offsetof(struct log_rec, checksum) == 48, "log_rec layout");

struct log_range {
    uint64_t off;        /* 0: arena offset */
    uint64_t len;        /* 8: bytes that follow, > 0 */
};
_Static_assert(sizeof(struct log_range) == 16, "log_range layout");

/* Bytes a range of len takes in a record. */
static inline uint64_t log_range_bytes(uint64_t len)
{
    return sizeof(struct log_range) + ((len + 7) & ~(uint64_t)7);
}

/* ---- the checksum (checksum.c) ---- */

typedef struct {
    uint64_t v[4];
    uint64_t total;
    uint8_t buf[32];
    unsigned nbuf;
} hash_state;
void hash_init(hash_state *h, uint64_t seed);
void hash_update(hash_state *h, const void *p, size_t len);
uint64_t hash_final(hash_state *h);
uint64_t hash_bytes(const void *p, size_t len, uint64_t seed);

/* ---- validation (format.c) ---- */

uint64_t hdr_checksum(const struct hdr_slot *s);
uint64_t super_checksum(const struct tm_super *sb);
/* A fresh slot of generation 1 for a new store. */
void hdr_init(struct hdr_slot *h, uint64_t base, uint64_t max_size, uint64_t size, uint64_t store_id);
/* Whether slot i (0 or 1) of a header page has the magic and a valid
 * checksum; *out gets its bytes either way. */
int hdr_slot_ok(const uint8_t *page0, int i, struct hdr_slot *out);
/* Picks the current slot of a header page.  0, or -TM_ENOTSTORE (no magic),
 * -TM_EVERSION (the current slot is of a newer format), -TM_ECORRUPT (no
 * valid slot, or impossible values in the current one). */
int hdr_pick(const uint8_t *page0, struct hdr_slot *out);
/* The superblock against its header: 0, -TM_ECORRUPT (bad magic, checksum
 * or values; *why says which when not NULL) or -TM_ETRUNCATED (the arena
 * is longer than the file). */
int super_check(const struct tm_super *sb, const struct hdr_slot *h, uint64_t file_size, const char **why);

void log_head_init(uint8_t page[PAGE], uint64_t store_id);
/* 0 when the first bytes of a log name this store, else -TM_ECORRUPT. */
int log_head_check(const void *head, size_t len, uint64_t store_id);

/* The most a record of npages whole pages takes. */
static inline uint64_t log_pages_bound(uint64_t npages)
{
    return sizeof(struct log_rec) + npages * (sizeof(struct log_range) + PAGE);
}

/* The length of a page record of npages (format <= 3). */
uint64_t log_pages_len(uint64_t npages);
/* L1, all but the checksum and the body: the header of the record that
 * must come next (gen, seq) in a log of store_id whose records may
 * describe arenas up to max bytes. */
int log_rec_header_ok(const struct log_rec *r, uint64_t store_id, uint64_t gen, uint64_t seq, uint64_t max);
/* A range of a record of arena size `size`, after one that ended at prev:
 * increasing, apart, inside [PAGE, size), and within the record's rest. */
static inline int log_range_ok(const struct log_range *g, uint64_t prev_end, uint64_t size, uint64_t rest)
{
    return g->len > 0 && g->off >= PAGE && g->off >= prev_end && g->len <= size && g->off <= size - g->len &&
           log_range_bytes(g->len) <= rest;
}
/* The record's checksum is computed over pieces: start with the header. */
void log_rec_hash_init(hash_state *h, const struct log_rec *r);
/* Page numbers of a page record: strictly increasing, inside [1, size/PAGE).
 * Feed them in order, in pieces of whole numbers; ok stays 1 while valid. */
struct log_index_check {
    uint64_t prev, limit;
    int ok;
};
void log_index_check_init(struct log_index_check *c, const struct log_rec *r);
void log_index_check(struct log_index_check *c, const void *p, size_t len);

#endif
