/*
 * fuzz_heap_check.c — the heap checker on a damaged arena.
 *
 * The store file is the template T0 (fuzz_common.h) with the input laid over
 * its heap: the heap state in the superblock (from FZ_HEAP_OFF), then the
 * heap pages.  Input: a little-endian u32 offset into that region (taken
 * modulo its length), then the bytes laid there (clipped at the end of the
 * arena).  The superblock checksum is recomputed so that the store opens.  tm_store_check must return 0 or TM_ECORRUPT — never crash, hang or
 * read outside the arena.  When it passes, tm_store_stats must work too.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct fz_template *t = fz_template();
    const char *path = fz_path("c.tmf");
    tm_options o = fz_opts();
    tm_store *st = NULL;
    size_t region = t->store_len - FZ_HEAP_OFF, at;
    uint32_t off;
    uint8_t *file;
    char msg[256];
    int r;

    if (size < 4)
        return -1;
    memcpy(&off, data, 4);
    data += 4, size -= 4;
    at = off % region;
    if (size > region - at)
        size = region - at;
    file = malloc(t->store_len);
    memcpy(file, t->store, t->store_len);
    memcpy(file + FZ_HEAP_OFF + at, data, size);
    fz_fix_super(file, t->store_len);
    unlink(fz_path("c.tmf.log"));
    fz_write(path, file, t->store_len, NULL, 0);
    free(file);

    o.no_create = 1;
    r = tm_open(path, &o, &st);
    if (r < 0)
        abort();
    if (r) {
        fz_count(r, 0);
        return 0;
    }
    r = tm_store_check(st, msg, sizeof msg);
    fz_count(0, r);
    if (r != 0 && r != TM_ECORRUPT)
        abort();
    if (r == 0) {
        tm_stats_t s;
        if (tm_store_stats(st, &s))
            abort();
    }
    tm_close(st);
    return 0;
}
