/*
 * sqlite_prog — an SQLite ":memory:" database kept in the store, under the
 * preload.
 *
 * SQLite's global set-up (sqlite3_initialize) is per process and belongs
 * to the library, not to the store: it runs first, outside any
 * transaction.  The first run then opens the database inside a transaction
 * and keeps the handle in the root; every run inserts a row inside a
 * transaction and prints what the table holds.  The handle points into
 * SQLite's method tables and virtual file system (its static data): it
 * survives restarts because the preload keeps the library at the same
 * address.  test_preload.c runs it.
 */
#include <errno.h>
#include <stdio.h>
#include <sqlite3.h>

#include "tmfalloc.h"

struct root {
    sqlite3 *db;
};

static int print_row(void *ctx, int n, char **vals, char **names)
{
    (void)ctx, (void)names;
    for (int i = 0; i < n; i++)
        printf("%s%s", i ? " " : "", vals[i] ? vals[i] : "NULL");
    printf("\n");
    return 0;
}

static int exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, print_row, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "sqlite_prog: %s: %s\n", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int main(void)
{
    struct root *r;
    int err;
    if (sqlite3_initialize() != SQLITE_OK) { /* the library's own, in each process */
        fprintf(stderr, "sqlite_prog: sqlite3_initialize failed\n");
        return 1;
    }
    if (!(r = tm_root(sizeof *r))) {
        fprintf(stderr, "sqlite_prog: %s\n", tm_strerror(errno));
        return 1;
    }
    if ((err = tm_begin()) != 0) {
        fprintf(stderr, "sqlite_prog: %s\n", tm_strerror(err));
        return 1;
    }
    if (!r->db && (sqlite3_open(":memory:", &r->db) != SQLITE_OK ||
                   exec(r->db, "create table runs(n integer primary key, what text)") < 0)) {
        tm_abort();
        return 1;
    }
    if (!tm_store_of(r->db)) {
        fprintf(stderr, "sqlite_prog: the database is not in the store: run me with LD_PRELOAD=libtmfpreload.so\n");
        tm_abort();
        return 2;
    }
    if (exec(r->db, "insert into runs(what) values('run ' || (select count(*) + 1 from runs))") < 0 ||
        exec(r->db, "select count(*), group_concat(what, ',') from runs") < 0) {
        tm_abort();
        return 1;
    }
    if ((err = tm_commit()) != 0) {
        fprintf(stderr, "sqlite_prog: %s\n", tm_strerror(err));
        return 1;
    }
    return 0;
}
