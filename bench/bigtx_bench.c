/*
 * bigtx_bench — one large durable transaction against the disk's sequential
 * write speed.
 *
 * tmfalloc: a store whose root object is SIZE MiB (set up and synced before
 * the clock starts); then, timed: tm_store_begin, memset of the whole root
 * (every page dirtied: per-page faults first, the bulk mode past 16384
 * pages), tm_store_commit with TMF_SYNC=full (the log record, its
 * fdatasync, the pages written into the store file, the checkpoint that
 * follows a log past 64 MiB).  Against it: writing 2 x SIZE MiB sequentially
 * into a new file (1 MiB pwrites) plus one fdatasync, since a commit writes
 * every page twice (log and store).  Target: tmfalloc <= 2x the sequential
 * time.  Rounds alternate the order; medians.
 *
 *   bigtx_bench DIR [SIZE_MIB] [ROUNDS]
 */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "bench_util.h"
#include "tmfalloc.h"

static char dir[4096];

static void sync_dir(void)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        syncfs(fd);
        close(fd);
    }
}

/* Returns the total time; *fill and *commit get its two parts. */
static double tmf_round(size_t size, int k, double *fill, double *commit)
{
    char path[4200];
    tm_options o;
    tm_store *st;
    int r;
    snprintf(path, sizeof path, "%s/bigtx.tmf", dir);
    remove_store(path);
    tm_options_init(&o);
    o.sync = TM_SYNC_FULL;
    o.max_size = size * 2 + ((size_t)64 << 20);
    if ((r = tm_open(path, &o, &st)) != 0)
        die("tm_open", tm_strerror(r));
    char *root = tm_store_root(st, size);
    if (!root)
        die("tm_store_root", "failed");
    sync_dir();
    double t0 = now();
    if ((r = tm_store_begin(st)) != 0)
        die("tm_store_begin", tm_strerror(r));
    memset(root, k + 1, size);
    double t1 = now();
    if ((r = tm_store_commit(st)) != 0)
        die("tm_store_commit", tm_strerror(r));
    double t2 = now();
    *fill = t1 - t0, *commit = t2 - t1;
    if (root[size - 1] != (char)(k + 1))
        die("bigtx_bench", "the committed data are wrong");
    tm_close(st);
    remove_store(path);
    return t2 - t0;
}

static double seq_round(size_t bytes, char *buf, size_t chunk)
{
    char path[4200];
    int fd;
    snprintf(path, sizeof path, "%s/bigtx.seq", dir);
    unlink(path);
    sync_dir();
    double t0 = now();
    if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0)
        die("open", path);
    for (size_t off = 0; off < bytes; off += chunk)
        if (pwrite(fd, buf, chunk, (off_t)off) != (ssize_t)chunk)
            die("pwrite", path);
    if (fdatasync(fd) < 0)
        die("fdatasync", path);
    double t = now() - t0;
    close(fd);
    unlink(path);
    return t;
}

int main(int argc, char **argv)
{
    snprintf(dir, sizeof dir, "%s", argc > 1 ? argv[1] : ".");
    size_t mib = argc > 2 ? strtoull(argv[2], NULL, 10) : 1024;
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    size_t size = mib << 20, chunk = (size_t)1 << 20;
    double tmf[32], fill[32], commit[32], seq[32];
    char *buf = malloc(chunk);
    memset(buf, 0x5a, chunk);
    if (rounds > 32)
        rounds = 32;
    for (int k = 0; k < rounds; k++) {
        if (k % 2) {
            seq[k] = seq_round(2 * size, buf, chunk);
            tmf[k] = tmf_round(size, k, &fill[k], &commit[k]);
        } else {
            tmf[k] = tmf_round(size, k, &fill[k], &commit[k]);
            seq[k] = seq_round(2 * size, buf, chunk);
        }
    }
    double mt = median(tmf, rounds), mf = median(fill, rounds), mc = median(commit, rounds),
           ms = median(seq, rounds);
    printf("one transaction dirtying %zu MiB, TMF_SYNC=full, median of %d rounds (directory %s)\n", mib,
           rounds, dir);
    printf("  %-44s %10.3f s  (%.2f GB/s of data)\n", "tmfalloc begin + memset + commit", mt,
           size / mt / 1e9);
    printf("  %-44s %10.3f s\n", "  of which memset (first-write faults)", mf);
    printf("  %-44s %10.3f s\n", "  of which commit", mc);
    printf("  %-44s %10.3f s  (%.2f GB/s)\n", "sequential write 2x size + fdatasync", ms, 2 * size / ms / 1e9);
    printf("  ratio tmfalloc / sequential = %.2f (target <= 2)\n", mt / ms);
    printf("RESULT bigtx_rounds=%d\nRESULT bigtx_mib=%zu\n", rounds, mib);
    printf("RESULT bigtx_tmf_s=%.4f\nRESULT bigtx_fill_s=%.4f\nRESULT bigtx_commit_s=%.4f\n", mt, mf, mc);
    printf("RESULT bigtx_seq_s=%.4f\nRESULT bigtx_ratio=%.4f\n", ms, mt / ms);
    free(buf);
    return 0;
}
