/*
 * open.c — tm_open and tm_close: the public face of store.c, with what a
 * handle's transactions need at its start and end.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

void tm_options_init(tm_options *o)
{
    memset(o, 0, sizeof *o);
    o->base = DEFAULT_BASE;
    o->max_size = DEFAULT_MAX;
    o->initial_size = DEFAULT_INITIAL;
    o->sync = TM_SYNC_FULL;
    o->mode = 0600;
}

int tm_open(const char *path, const tm_options *opts, tm_store **out)
{
    tm_options o;
    int r;

    *out = NULL;
    if (!path || !*path)
        return EINVAL;
    if (os_page_size() != PAGE)
        return TM_EPAGESIZE;
    if (opts)
        o = *opts;
    else
        tm_options_init(&o);
    if (!o.base)
        o.base = DEFAULT_BASE;
    if (!o.max_size)
        o.max_size = DEFAULT_MAX;
    o.max_size = (o.max_size + PAGE - 1) & ~(size_t)(PAGE - 1);
    if ((r = fault_install()) < 0)
        return tm__err(r);
    interpose_resolve();
    if ((r = store_open(path, &o, out)) == 0 && (r = layout_open(*out)) < 0) { /* layout.c */
        store_close(*out);
        *out = NULL;
    }
    return tm__err(r);
}

int tm_close(tm_store *st)
{
    if (!st)
        return EINVAL;
    if (st->state != ST_FORKED) /* a child's inherited handle owns no transaction */
        tm_store_abort(st);
    return tm__err(store_close(st));
}

const char *tm_store_path(const tm_store *st)
{
    return st->path;
}

void *tm_store_base(const tm_store *st)
{
    return st->base;
}
