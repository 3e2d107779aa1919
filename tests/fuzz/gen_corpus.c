/*
 * gen_corpus.c — writes the seed corpora of the fuzz targets:
 *   gen_corpus DIR   writes DIR/{store_header,log_replay,heap_check}/seed-*
 * from the deterministic template of fuzz_common.h (scripts/fuzz.sh runs it
 * with DIR = tests/fuzz/corpus; the seeds there are committed).
 */
#include "fuzz_common.h"

static const char *out;

/* A heap_check seed: the offset (from FZ_HEAP_OFF), then T0's bytes there. */
static void heap_seed(const struct fz_template *t, uint32_t at, size_t len)
{
    char path[1024];
    uint8_t *buf = malloc(4 + len);
    snprintf(path, sizeof path, "%s/heap_check", out);
    mkdir(out, 0755);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/heap_check/seed-%06x", out, (unsigned)at);
    memcpy(buf, &at, 4);
    memcpy(buf + 4, t->store + FZ_HEAP_OFF + at, len);
    fz_write(path, buf, 4 + len, NULL, 0);
    free(buf);
}

static void seed(const char *target, const char *name, uint8_t flag, const uint8_t *a, size_t alen)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", out, target);
    mkdir(out, 0755);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", out, target, name);
    fz_write(path, &flag, 1, a, alen);
}

int main(int argc, char **argv)
{
    const struct fz_template *t;
    const uint8_t *recs;
    size_t nrec, off, first;
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus DIR\n");
        return 2;
    }
    out = argv[1];
    t = fz_template();

    /* store header: the whole store; header and superblock pages with the
     * rest padded from T0; the header page alone; nothing. */
    seed("store_header", "seed-two-pages-padded", 7, t->store, 2 * PAGE);
    seed("store_header", "seed-header-padded", 3, t->store, PAGE);
    seed("store_header", "seed-header-slot", 3, t->store, 2 * HDR_SLOT_SIZE);
    seed("store_header", "seed-header-only", 0, t->store, PAGE);
    seed("store_header", "seed-empty", 0, NULL, 0);

    /* log replay: every record; the first record alone, whole and torn;
     * nothing. */
    recs = t->log + LOG_START;
    nrec = t->log_len - LOG_START;
    memcpy(&first, recs + offsetof(struct log_rec, len), 8);
    seed("log_replay", "seed-all", 1, recs, nrec);
    seed("log_replay", "seed-first", 1, recs, first);
    seed("log_replay", "seed-torn", 0, recs, first - 100);
    seed("log_replay", "seed-empty", 0, NULL, 0);

    /* heap check: the heap state and the first heap pages; then windows
     * of T0 at every 32 KiB (span headers at 64 KiB, large blocks between)
     * and the fence at the end. */
    heap_seed(t, 0, 3 * PAGE);
    for (off = 32 << 10; off + 2048 <= t->store_len - FZ_HEAP_OFF; off += 32 << 10)
        heap_seed(t, (uint32_t)(off - FZ_HEAP_OFF), 2048);
    heap_seed(t, (uint32_t)(t->store_len - FZ_HEAP_OFF - 1024), 1024);
    printf("store %zu bytes, log records %zu bytes\n", t->store_len, nrec);
    return 0;
}
