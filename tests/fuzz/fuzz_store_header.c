/*
 * fuzz_store_header.c — store header and superblock checks on open.
 *
 * Input: one flag byte, then the first bytes of a store file.
 *   flag bit 0  pad the file with the rest of the template store T0
 *               (fuzz_common.h), so short inputs damage only the header;
 *   flag bit 1  recompute the checksums of the header slots that carry the
 *               magic, so the fields behind the checksum are reached;
 *   flag bit 2  recompute the superblock checksum.
 * tm_open must return 0 or an error code; a store that opens is checked
 * and closed.  Never a crash, a hang or a mapping left behind.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct fz_template *t = fz_template();
    const char *path = fz_path("h.tmf");
    uint8_t flags, *file;
    size_t len;
    tm_options o = fz_opts();
    tm_store *st = NULL;
    int r;

    if (size < 1 || size > ((size_t)1 << 20))
        return -1;
    flags = data[0], data++, size--;
    len = (flags & 1) && size < t->store_len ? t->store_len : size;
    file = malloc(len ? len : 1);
    memcpy(file, data, size);
    if (len > size)
        memcpy(file + size, t->store + size, len - size);
    if (flags & 2)
        fz_fix_header(file, len);
    if (flags & 4)
        fz_fix_super(file, len);
    unlink(fz_path("h.tmf.log"));
    fz_write(path, file, len, NULL, 0);
    free(file);

    o.no_create = 1;
    r = tm_open(path, &o, &st);
    if (r == 0) {
        char msg[200];
        int c = tm_store_check(st, msg, sizeof msg);
        if (c != 0 && c != TM_ECORRUPT)
            abort();
        tm_close(st);
        fz_count(0, c);
    } else if (r < 0) {
        abort(); /* error codes are positive */
    } else {
        fz_count(r, 0);
    }
    return 0;
}
