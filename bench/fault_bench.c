/*
 * fault_bench — the first write to a page inside a transaction against a
 * plain kernel copy-on-write fault.
 *
 * tmfalloc: a store with a root of PAGES pages (PAGES < 16384, so the
 * per-page mode is used: SIGSEGV, mprotect of the page, then the kernel's
 * COW fault).  Each round reads every page first (mapped, read-only), opens
 * a transaction, and times one 8-byte write into each page; then aborts.
 * Plain: the same writes into a MAP_PRIVATE, PROT_READ|PROT_WRITE mapping of
 * a file of PAGES pages, every page read first (so the write is exactly a
 * COW fault).  Rounds alternate the order; medians of microseconds per page.
 * Target: tmfalloc <= 1.5x the plain fault.
 *
 * Then pages written again: two sets of HOT_N pages that transactions
 * write in turn, one 8-byte write each, timed after the transactions
 * before made them hot (TMF_TRACK=uffd or auto: tracked by the kernel; each
 * commit write-protects the other set again, which the next transaction
 * writes, since open pages beyond those just written are more than a
 * commit leaves open) or kept (TMF_TRACK=protect: copies kept read-only).
 * (A page that every transaction writes stays open and takes no fault at
 * all.)  Target: <= 1.5x the plain COW fault measured above.
 *
 *   fault_bench DIR [PAGES] [ROUNDS]
 */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "bench_util.h"
#include "tmfalloc.h"

enum { PAGE = 4096 };

static volatile long sink;

static double tmf_round(tm_store *st, char *root, size_t pages, int k)
{
    long sum = 0;
    for (size_t i = 0; i < pages; i++)
        sum += ((volatile char *)root)[i * PAGE];
    sink = sum;
    tm_store_begin(st);
    double t = now();
    for (size_t i = 0; i < pages; i++)
        *(volatile uint64_t *)(root + i * PAGE) = (uint64_t)k;
    t = now() - t;
    tm_store_abort(st);
    return t * 1e6 / pages;
}

/* One transaction writing each of the hot pages of set k % 2; µs per page. */
enum { HOT_N = 256 };

static double hot_round(tm_store *st, char *hot, int k)
{
    tm_store_begin(st);
    hot += (size_t)(k % 2) * HOT_N * PAGE;
    double t = now();
    for (size_t i = 0; i < HOT_N; i++)
        *(volatile uint64_t *)(hot + i * PAGE) = (uint64_t)k;
    t = now() - t;
    if (tm_store_commit(st) != 0)
        die("tm_store_commit", "failed");
    return t * 1e6 / HOT_N;
}

static double plain_round(int fd, size_t pages, int k)
{
    long sum = 0;
    char *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        die("mmap", "failed");
    for (size_t i = 0; i < pages; i++)
        sum += ((volatile char *)p)[i * PAGE];
    sink = sum;
    double t = now();
    for (size_t i = 0; i < pages; i++)
        *(volatile uint64_t *)(p + i * PAGE) = (uint64_t)k;
    t = now() - t;
    munmap(p, pages * PAGE);
    return t * 1e6 / pages;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    size_t pages = argc > 2 ? strtoull(argv[2], NULL, 10) : 8192;
    int rounds = argc > 3 ? atoi(argv[3]) : 9;
    char path[4200], plain[4200], *buf;
    double tmf[64], pl[64], hot[64];
    tm_options o;
    tm_store *st;
    int r, fd;
    if (pages >= 16000)
        pages = 16000;
    if (rounds > 64)
        rounds = 64;

    snprintf(path, sizeof path, "%s/fault.tmf", dir);
    remove_store(path);
    tm_options_init(&o);
    o.max_size = (size_t)1 << 30;
    if ((r = tm_open(path, &o, &st)) != 0)
        die("tm_open", tm_strerror(r));
    char *root = tm_store_root(st, (pages + 2 * HOT_N + 1) * PAGE);
    if (!root)
        die("tm_store_root", "failed");
    tm_store_begin(st); /* real data in every page, as in the plain file */
    memset(root, 1, (pages + 2 * HOT_N + 1) * PAGE);
    tm_store_commit(st);
    char *hotp = root + pages * PAGE;
    hotp += PAGE - (uintptr_t)hotp % PAGE;

    snprintf(plain, sizeof plain, "%s/fault.plain", dir);
    if ((fd = open(plain, O_RDWR | O_CREAT | O_TRUNC, 0600)) < 0)
        die("open", plain);
    buf = malloc(pages * PAGE);
    memset(buf, 1, pages * PAGE);
    if (write(fd, buf, pages * PAGE) != (ssize_t)(pages * PAGE))
        die("write", plain);
    fdatasync(fd);
    free(buf);

    tmf_round(st, root, pages, 0), plain_round(fd, pages, 0); /* warm up */
    for (int k = 0; k < rounds; k++) {
        if (k % 2) {
            pl[k] = plain_round(fd, pages, k);
            tmf[k] = tmf_round(st, root, pages, k);
        } else {
            tmf[k] = tmf_round(st, root, pages, k);
            pl[k] = plain_round(fd, pages, k);
        }
    }
    for (int k = 0; k < 4; k++) /* written by two transactions: hot */
        hot_round(st, hotp, k);
    for (int k = 0; k < rounds; k++)
        hot[k] = hot_round(st, hotp, k);
    tm_close(st);
    remove_store(path);
    close(fd);
    unlink(plain);
    double mt = median(tmf, rounds), mp = median(pl, rounds), mh = median(hot, rounds);
    printf("first write to each of %zu pages, median of %d rounds\n", pages, rounds);
    printf("  %-48s %8.2f us/page\n", "tmfalloc, inside a transaction (per-page mode)", mt);
    printf("  %-48s %8.2f us/page\n", "plain MAP_PRIVATE file mapping (kernel COW)", mp);
    printf("  ratio = %.2f (target <= 1.5)\n", mt / mp);
    printf("first write to each of %d pages written by every other transaction (hot, or kept under TMF_TRACK=protect)\n", HOT_N);
    printf("  %-48s %8.2f us/page\n", "tmfalloc, inside a transaction", mh);
    printf("  ratio to the plain COW fault above = %.2f (target <= 1.5)\n", mh / mp);
    printf("RESULT fault_hot_us=%.3f\nRESULT fault_hot_ratio=%.4f\n", mh, mh / mp);
    printf("RESULT fault_rounds=%d\nRESULT fault_pages=%zu\n", rounds, pages);
    printf("RESULT fault_tmf_us=%.3f\nRESULT fault_plain_us=%.3f\nRESULT fault_ratio=%.4f\n", mt, mp, mt / mp);
    return 0;
}
