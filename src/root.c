/*
 * root.c — the root object and statistics.
 *
 * The root is the one object a program finds again by itself after a
 * restart: the superblock records its address and size.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

static void *fail(int code)
{
    errno = code;
    return NULL;
}

/* Inside the write transaction: a zeroed block of at least size bytes that
 * keeps the old root's contents. */
static int grow_root(tm_store *st, size_t size)
{
    struct tm_super *sb = super_of(st);
    void *p = heap_alloc(st, size, 16);
    if (!p)
        return -errno;
    memset(p, 0, size);
    if (sb->root) {
        memcpy(p, (void *)(uintptr_t)sb->root, sb->root_size);
        heap_free(st, (void *)(uintptr_t)sb->root);
    }
    sb->root = (uintptr_t)p;
    sb->root_size = size;
    return 0;
}

void *tm_store_root(tm_store *st, size_t size)
{
    struct tm_super *sb;
    int own, r;
    if (size == 0)
        size = 1;
    if (st->state == ST_FORKED && (r = store_revive(st)) < 0)
        return fail(tm__err(r));
    read_refresh(st);
    sb = super_of(st);
    if (sb->root && sb->root_size >= size)
        return (void *)(uintptr_t)sb->root;
    own = !tx_owned(st);
    if (own && (r = tm_store_begin(st)) != 0)
        return fail(r);
    if (!(sb->root && sb->root_size >= size) && (r = tm__err(grow_root(st, size))) != 0) {
        if (own)
            tm_store_abort(st);
        return fail(r);
    }
    if (own && (r = tm_store_commit(st)) != 0)
        return fail(r);
    return (void *)(uintptr_t)sb->root;
}

int tm_store_stats(tm_store *st, tm_stats_t *out)
{
    struct tm_super *sb;
    int r;
    if (st->state == ST_FORKED && (r = store_revive(st)) < 0)
        return tm__err(r);
    read_refresh(st);
    sb = super_of(st);
    memset(out, 0, sizeof *out);
    out->arena_size = sb->size;
    out->max_size = st->max;
    out->commits = st->lk.sh->seq;
    out->log_bytes = st->lk.sh->log_off - LOG_START;
    out->checkpoints = st->n_ckpts;
    out->syncs = st->n_syncs;
    out->tx_commits = st->n_commits;
    return tm__err(heap_stats(st, out));
}
