/* counter: a persistent counter.  Each run adds one and prints the total. */
#include <stdio.h>
#include <tmfalloc.h>

struct root {
    long runs;
};

int main(void)
{
    struct root *r = tm_root(sizeof *r);
    int err;
    if (!r) {
        perror("tm_root");
        return 1;
    }
    if ((err = tm_begin()) != 0) {
        fprintf(stderr, "tm_begin: %s\n", tm_strerror(err));
        return 1;
    }
    r->runs++;
    if ((err = tm_commit()) != 0) {
        fprintf(stderr, "tm_commit: %s\n", tm_strerror(err));
        return 1;
    }
    printf("this program has run %ld times\n", r->runs);
    return 0;
}
