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

void inspect_state(tm_store *st, struct tm_committed *c)
{
    const struct tm_shared *sh = st->lk.sh;
    c->seq = sh->seq;
    c->applied = sh->applied;
    c->size = sh->size;
    c->detached = st->lk.detached;
}

int inspect_record_ok(int log_fd, uint64_t off, const struct log_rec *rec)
{
    uint8_t *buf = os_alloc(REPLAY_BUF);
    int whole, r;
    if (!buf)
        return -ENOMEM;
    r = rec_verify(log_fd, off, rec, buf, &whole);
    os_free(buf, REPLAY_BUF);
    return r;
}

int inspect_replay_into(tm_store *st, int out_fd, uint64_t *seq, uint64_t *size)
{
    struct tm_log lg = st->log; /* a cursor of our own: the handle's stays as it was */
    uint8_t page[PAGE];
    struct hdr_slot now;
    uint64_t off = LOG_START;
    long n;
    int r;
    lg.map = NULL;
    lg.map_len = 0;
    *seq = st->hdr.ckpt_seq;
    *size = st->hdr.ckpt_size;
    n = log_replay(&lg, out_fd, 0, &off, seq, size);
    if (lg.map)
        os_munmap((void *)lg.map, lg.map_len);
    if (n < 0)
        return (int)n;
    if ((r = os_ftruncate(out_fd, (off_t)*size)) < 0)
        return r;
    if ((r = os_pread_all(st->fd, page, PAGE, 0)) < 0 || (r = hdr_pick(page, &now)) < 0)
        return r;
    return now.gen != st->hdr.gen ? -EAGAIN : 0;
}

int inspect_live(int fd)
{
    return lock_open_held(fd);
}
