/* test_basic.c — open, commit, reopen, root, abort, nesting. */
#include "util.h"

#include <string.h>
#include <sys/stat.h>

Test(basic, create_commit_reopen)
{
    const char *path = tu_path("s.tmf");
    tm_store *st = tu_open(path);
    long *root = tm_store_root(st, 64);
    struct stat sb;
    cr_assert_not_null(root);
    cr_assert_eq(root[0], 0);
    TU_OK(tm_store_begin(st));
    root[0] = 42;
    root[7] = -1;
    TU_OK(tm_store_commit(st));
    TU_OK(tm_close(st));
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0600, "mode %o", sb.st_mode & 0777);

    st = tu_open(path);
    root = tm_store_root(st, 64);
    cr_assert_eq(root[0], 42);
    cr_assert_eq(root[7], -1);
    TU_OK(tm_close(st));
}

Test(basic, abort_restores_bytes_and_size)
{
    tm_store *st = tu_open(tu_path("s.tmf"));
    char *root = tm_store_root(st, 8192);
    tm_stats_t before, after;
    memset(&before, 0, sizeof before);
    TU_OK(tm_store_stats(st, &before));
    TU_OK(tm_store_begin(st));
    memset(root, 'x', 8192);
    cr_assert_not_null(tm_store_root(st, (size_t)8 << 20)); /* grows the arena */
    tm_store_abort(st);
    TU_OK(tm_store_stats(st, &after));
    cr_assert_eq(after.arena_size, before.arena_size);
    cr_assert_eq(after.commits, before.commits);
    root = tm_store_root(st, 8192);
    for (int i = 0; i < 8192; i++)
        cr_assert_eq(root[i], 0, "byte %d", i);
    TU_OK(tm_close(st));
}

Test(basic, nesting_commits_only_outermost)
{
    tm_store *st = tu_open(tu_path("s.tmf"));
    int *root = tm_store_root(st, 16);
    tm_stats_t s0, s1;
    TU_OK(tm_store_stats(st, &s0));
    TU_OK(tm_store_begin(st));
    TU_OK(tm_store_begin(st));
    root[0] = 1;
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_stats(st, &s1));
    cr_assert_eq(s1.commits, s0.commits, "inner commit must not commit");
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_stats(st, &s1));
    cr_assert_eq(s1.commits, s0.commits + 1);
    cr_assert_eq(tm_store_commit(st), TM_ENOTX);
    TU_OK(tm_close(st));
}
