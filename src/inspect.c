/*
 * inspect.c — the tools' access to an open handle (inspect.h).
 */
#include <errno.h>

#include "inspect.h"
#include "internal.h"

void inspect_view(tm_store *st, struct tm_view *v)
{
    v->path = st->path;
    v->log_path = st->log_path;
    v->fd = st->fd;
    v->log_fd = st->log.fd;
    v->max = st->max;
    v->hdr = st->hdr;
    v->sb = super_of(st);
}

int inspect_begin(tm_store *st, int *own)
{
    int r = tm_store_read_begin(st);
    *own = 0;
    if (r != EROFS)
        return r;
    if ((r = lock_data(&st->lk, 0)) < 0)
        return tm__err(r);
    if ((r = hdr_current(st)) == 0 && (r = log_refresh_len(&st->log)) == 0) {
        r = log_valid(&st->log, store_log_tail(st), super_of(st)->seq + 1);
        r = r > 0 ? -EROFS : r < 0 ? r : store_refresh(st);
    }
    if (r < 0) {
        lock_data_release(&st->lk);
        return tm__err(r);
    }
    *own = 1;
    return 0;
}

void inspect_end(tm_store *st, int own)
{
    if (own)
        lock_data_release(&st->lk);
    else
        tm_store_read_end(st);
}

int inspect_live(int fd)
{
    return lock_open_held(fd);
}
