/*
 * early_prog — run under the preload with early_lib, which opened the
 * default store before the preload loaded: a malloc inside a transaction
 * must still land in the arena.  Exits 0 when it did, 1 when not, 2 when
 * the store could not be opened.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "tmfalloc.h"

extern int early_opened;

int main(void)
{
    tm_stats_t s;
    if (early_opened != 0 || tm_stats(&s) != 0 || tm_begin() != 0) {
        fprintf(stderr, "early_prog: the store did not open (%d)\n", early_opened);
        return 2;
    }
    uintptr_t lo = (uintptr_t)tm_store_base(tm_default()), hi = lo + s.max_size;
    void *volatile p = malloc(100);
    int in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
    free(p);
    if (tm_commit() != 0)
        return 2;
    if (!in)
        fprintf(stderr, "early_prog: malloc inside a transaction returned %p, outside the store\n", p);
    return in ? 0 : 1;
}
