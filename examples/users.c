/*
 * users — a third-party malloc-based C library, uthash, used unchanged: its
 * hash table of users lives in the store and survives restarts.
 *
 *   LD_PRELOAD=libtmfpreload.so users add ID NAME | del ID | find ID | list
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "tmfalloc.h"

struct user {
    int id;
    char name[32];
    UT_hash_handle hh;
};

struct root {
    struct user *users; /* the uthash head */
};

static int fail(const char *what, int err)
{
    fprintf(stderr, "users: %s: %s\n", what, tm_strerror(err));
    return 1;
}

int main(int argc, char **argv)
{
    struct root *r = tm_root(sizeof *r);
    struct user *u;
    int id = argc > 2 ? atoi(argv[2]) : 0, err;
    if (!r)
        return fail("tm_root", errno);
    if (argc == 4 && strcmp(argv[1], "add") == 0) {
        if ((err = tm_begin()))
            return fail("tm_begin", err);
        HASH_FIND_INT(r->users, &id, u);
        if (!u) {
            u = calloc(1, sizeof *u); /* uthash's own allocations follow */
            u->id = id;
            HASH_ADD_INT(r->users, id, u);
        }
        snprintf(u->name, sizeof u->name, "%s", argv[3]);
        return (err = tm_commit()) ? fail("tm_commit", err) : 0;
    }
    if (argc == 3 && strcmp(argv[1], "del") == 0) {
        if ((err = tm_begin()))
            return fail("tm_begin", err);
        HASH_FIND_INT(r->users, &id, u);
        if (u) {
            HASH_DEL(r->users, u);
            free(u);
        }
        return (err = tm_commit()) ? fail("tm_commit", err) : u ? 0 : 1;
    }
    if (argc == 3 && strcmp(argv[1], "find") == 0) {
        tm_read_begin();
        HASH_FIND_INT(r->users, &id, u);
        if (u)
            printf("%d %s\n", u->id, u->name);
        tm_read_end();
        return u ? 0 : 1;
    }
    if (argc == 2 && strcmp(argv[1], "list") == 0) {
        tm_read_begin();
        for (u = r->users; u; u = u->hh.next)
            printf("%d %s\n", u->id, u->name);
        printf("(%u users)\n", HASH_COUNT(r->users));
        tm_read_end();
        return 0;
    }
    fprintf(stderr, "usage: users add ID NAME | del ID | find ID | list\n");
    return 2;
}
