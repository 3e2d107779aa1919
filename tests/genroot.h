/* genroot.h — the "generation root" that test_faults.c and test_powercut.c
 * commit and check: a generation number, a count, a checksum, and NELEM
 * elements that each encode the generation.  Starting at ELEM_OFF (4 mod 8),
 * one element straddles every page boundary, so a torn commit shows. */
#ifndef TMF_TEST_GENROOT_H
#define TMF_TEST_GENROOT_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

#define NELEM 6000
#define ELEM_OFF 28

static uint64_t mix(uint64_t x)
{
    return tu_rand(&x);
}

static uint64_t elem(uint64_t g, uint64_t i)
{
    return g ? mix((g << 24) ^ i) : 0;
}

static void fill(unsigned char *root, uint64_t g)
{
    uint64_t sum = g ? mix(g) : 0, n = g ? NELEM : 0, i;
    for (i = 0; i < NELEM; i++) {
        uint64_t v = elem(g, i);
        memcpy(root + ELEM_OFF + 8 * i, &v, 8);
        if (g)
            sum = mix(sum ^ v);
    }
    memcpy(root + 8, &n, 8);
    memcpy(root + 16, &sum, 8);
    memcpy(root, &g, 8);
}

/* The generation root holds, or -1 (with the reason in why) when torn. */
static int64_t root_gen(const unsigned char *root, char *why, size_t len)
{
    uint64_t g, n, sum, want, i;
    memcpy(&g, root, 8);
    memcpy(&n, root + 8, 8);
    memcpy(&sum, root + 16, 8);
    if (n != (g ? NELEM : 0)) {
        snprintf(why, len, "gen %llu with count %llu", (unsigned long long)g, (unsigned long long)n);
        return -1;
    }
    want = g ? mix(g) : 0;
    for (i = 0; i < NELEM; i++) {
        uint64_t v;
        memcpy(&v, root + ELEM_OFF + 8 * i, 8);
        if (v != elem(g, i)) {
            snprintf(why, len, "gen %llu but element %llu (at root+%llu) is %#llx", (unsigned long long)g,
                     (unsigned long long)i, (unsigned long long)(ELEM_OFF + 8 * i), (unsigned long long)v);
            return -1;
        }
        if (g)
            want = mix(want ^ v);
    }
    if (sum != want) {
        snprintf(why, len, "gen %llu with a bad checksum", (unsigned long long)g);
        return -1;
    }
    return (int64_t)g;
}

#endif
