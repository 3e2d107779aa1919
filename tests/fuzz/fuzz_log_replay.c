/*
 * fuzz_log_replay.c — log replay and recovery on open.
 *
 * The store file is the template T0 (fuzz_common.h); its log is the
 * template's valid log header page followed by the input, so the input is
 * read as records.  Input: one flag byte, then the records.
 *   flag bit 0  recompute each record's checksum (as log_append does) where
 *               its length fits, so page numbers, sizes and sequence numbers
 *               behind the checksum are reached.
 * tm_open replays what is valid and must return 0 or an error code; a store
 * that opens is checked, reopened once more (recovery must have left a store
 * that opens) and closed.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct fz_template *t = fz_template();
    const char *path = fz_path("l.tmf"), *log = fz_path("l.tmf.log");
    tm_options o = fz_opts();
    tm_store *st = NULL;
    uint8_t flags, *body;
    int r, i;

    if (size < 1 || size > ((size_t)4 << 20))
        return -1;
    flags = data[0], data++, size--;
    body = malloc(size ? size : 1);
    memcpy(body, data, size);
    if (flags & 1)
        fz_fix_records(body, size);
    fz_write(path, t->store, t->store_len, NULL, 0);
    fz_write(log, t->log, LOG_START, body, size);
    free(body);

    o.no_create = 1;
    for (i = 0; i < 2; i++) {
        int c = 0;
        r = tm_open(path, &o, &st);
        if (r < 0)
            abort();
        if (r == 0) {
            c = tm_store_check(st, NULL, 0);
            if (c != 0 && c != TM_ECORRUPT)
                abort();
            tm_close(st);
        }
        if (i == 0)
            fz_count(r, c);
        if (r)
            break;
    }
    return 0;
}
