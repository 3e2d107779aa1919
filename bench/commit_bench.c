/*
 * commit_bench — the cost of a small durable commit against store size.
 *
 * For stores of 4 MiB, 256 MiB and 4 GiB (sparse files; every page of the
 * arena read once first, so the whole arena is mapped and populated), times
 * transactions that each change 8 bytes of one random page and commit, and
 * counts fdatasync calls per commit.  Beside them, in the same run, the
 * physical limit: a loop of one 4 KiB pwrite + fdatasync.  Prints medians of
 * several rounds and the ratios.
 *
 *   commit_bench [DIR] [COMMITS_PER_ROUND] [ROUNDS]
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "tmfalloc.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

/* Microseconds per pwrite + fdatasync of one 4 KiB block, overwritten in
 * place in a preallocated file: the floor of a durable commit. */
static double raw_sync_us(const char *dir, int n)
{
    char path[4096], buf[4096];
    int fd;
    double t;
    snprintf(path, sizeof path, "%s/raw.bin", dir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    memset(buf, 1, sizeof buf);
    for (int i = 0; i < 256; i++)
        if (pwrite(fd, buf, sizeof buf, (off_t)i * 4096) != (ssize_t)sizeof buf)
            exit(1);
    fdatasync(fd);
    t = now();
    for (int i = 0; i < n; i++) {
        buf[0] = (char)i;
        if (pwrite(fd, buf, sizeof buf, (off_t)(i % 256) * 4096) != (ssize_t)sizeof buf)
            exit(1);
        fdatasync(fd);
    }
    t = now() - t;
    close(fd);
    unlink(path);
    return t * 1e6 / n;
}

struct result {
    double us, syncs_per_commit;
};

static struct result commits_us(const char *dir, size_t size, tm_sync sync, int n)
{
    char path[4096];
    tm_options o;
    tm_store *st;
    tm_stats_t a, b;
    struct result res;
    int r;
    double t;

    snprintf(path, sizeof path, "%s/store-%zu.tmf", dir, size);
    tm_options_init(&o);
    o.initial_size = size;
    o.max_size = size * 2;
    o.sync = sync;
    if ((r = tm_open(path, &o, &st)) != 0) {
        fprintf(stderr, "tm_open: %s\n", tm_strerror(r));
        exit(1);
    }
    volatile char *base = tm_store_base(st);
    char *root = tm_store_root(st, 64 * 4096); /* 64 pages to write into */
    long sum = 0;
    for (size_t p = 0; p < size / 4096; p++) /* populate the whole mapping */
        sum += base[p * 4096];
    (void)sum;
    tm_store_stats(st, &a);
    t = now();
    for (int i = 0; i < n; i++) {
        tm_store_begin(st);
        *(volatile uint64_t *)(root + (next() % 64) * 4096) = (uint64_t)i;
        tm_store_commit(st);
    }
    t = now() - t;
    tm_store_stats(st, &b);
    res.us = t * 1e6 / n;
    res.syncs_per_commit = (double)(b.syncs - a.syncs) / (double)(b.tx_commits - a.tx_commits);
    tm_close(st);
    unlink(path);
    strcat(path, ".log");
    unlink(path);
    return res;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    int n = argc > 2 ? atoi(argv[2]) : 1000, rounds = argc > 3 ? atoi(argv[3]) : 5;
    size_t sizes[] = {(size_t)4 << 20, (size_t)256 << 20, (size_t)4 << 30};
    const char *names[] = {"4 MiB", "256 MiB", "4 GiB"}, *keys[] = {"4m", "256m", "4g"};
    double full[3][16], none[3][16], syncs[3][16], raw[16];

    if (rounds > 16)
        rounds = 16;
    for (int k = 0; k < rounds; k++) {
        raw[k] = raw_sync_us(dir, n);
        for (int s = 0; s < 3; s++) {
            struct result f = commits_us(dir, sizes[s], TM_SYNC_FULL, n);
            struct result z = commits_us(dir, sizes[s], TM_SYNC_NONE, n);
            full[s][k] = f.us;
            syncs[s][k] = f.syncs_per_commit;
            none[s][k] = z.us;
        }
    }
    double rawm = median(raw, rounds), full4 = 0, none4 = 0;
    printf("one-page commits, %d per round, median of %d rounds (directory %s)\n", n, rounds, dir);
    printf("%-10s %14s %16s %14s %12s\n", "store", "full us/commit", "fdatasync/commit", "none us/commit",
           "full/limit");
    for (int s = 0; s < 3; s++) {
        double f = median(full[s], rounds), z = median(none[s], rounds), y = median(syncs[s], rounds);
        if (s == 0)
            full4 = f, none4 = z;
        printf("%-10s %14.1f %16.3f %14.1f %12.2f\n", names[s], f, y, z, f / rawm);
    }
    printf("limit: pwrite 4 KiB + fdatasync: %.1f us\n", rawm);
    printf("ratio 4 GiB / 4 MiB: full %.2f (target <= 1.2), none %.2f\n", median(full[2], rounds) / full4,
           median(none[2], rounds) / none4);
    printf("RESULT commit_rounds=%d\nRESULT commit_n=%d\nRESULT commit_limit_us=%.2f\n", rounds, n, rawm);
    for (int s = 0; s < 3; s++)
        printf("RESULT commit_%s_full_us=%.2f\nRESULT commit_%s_none_us=%.2f\nRESULT commit_%s_syncs=%.4f\n",
               keys[s], median(full[s], rounds), keys[s], median(none[s], rounds), keys[s],
               median(syncs[s], rounds));
    printf("RESULT commit_size_ratio_full=%.4f\nRESULT commit_size_ratio_none=%.4f\n",
           median(full[2], rounds) / full4, median(none[2], rounds) / none4);
    return 0;
}
