/*
 * default.c — the default store: opened at the first tm_* call (never at
 * load time) with settings from the environment, and the tm_* calls that act
 * on it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static tm_store *_Atomic dflt;
static pthread_mutex_t dflt_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

/* Held across fork(), first in the order of locks (registry.c): handlers
 * registered after the core's run their prepare step before its. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&dflt_mu);
}

static void fork_done(void)
{
    pthread_mutex_unlock(&dflt_mu);
}

static void install_fork_hooks(void)
{
    /* Without them a fork during the first open can copy dflt_mu locked;
     * pthread_atfork fails only for want of memory, and then so would the
     * open that follows. */
    (void)pthread_atfork(fork_prepare, fork_done, fork_done);
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;
    int shift = 0;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    }
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end || v == 0 || v > (~0ull >> shift))
        return -1;
    *out = (size_t)(v << shift);
    return 0;
}

int tm_options_from_env(tm_options *o)
{
    const char *s;
    tm_options_init(o);
    if ((s = getenv("TMF_ADDR")) && *s) {
        char *end;
        errno = 0;
        o->base = (uintptr_t)strtoull(s, &end, 16);
        if (errno || *end || o->base == 0 || o->base % PAGE) {
            os_say("TMF_ADDR must be a page-aligned hexadecimal address, not", s, 0);
            return EINVAL;
        }
    }
    if ((s = getenv("TMF_MAX_SIZE")) && *s && parse_size(s, &o->max_size) < 0) {
        os_say("TMF_MAX_SIZE must be a size such as 64g, not", s, 0);
        return EINVAL;
    }
    if ((s = getenv("TMF_SYNC")) && *s) {
        if (strcmp(s, "full") == 0)
            o->sync = TM_SYNC_FULL;
        else if (strcmp(s, "none") == 0)
            o->sync = TM_SYNC_NONE;
        else {
            os_say("TMF_SYNC must be full or none, not", s, 0);
            return EINVAL;
        }
    }
    return 0;
}

static int default_path(char *buf, size_t len)
{
    const char *s = getenv("TMF_PATH");
    size_t n;
    if (s && *s) {
        if (strlen(s) >= len)
            return ENAMETOOLONG;
        strcpy(buf, s);
        return 0;
    }
    s = program_invocation_short_name;
    n = strlen(s);
    if (n == 0 || n + 5 > len)
        return EINVAL;
    memcpy(buf, s, n);
    memcpy(buf + n, ".tmf", 5);
    return 0;
}

tm_store *tm_default(void)
{
    tm_store *st = dflt;
    char path[4096];
    tm_options o;
    int r;
    if (likely(st != NULL))
        return st;
    if ((r = fault_install()) < 0) { /* and the core's fork hooks, before ours */
        errno = -r;
        return NULL;
    }
    pthread_once(&fork_once, install_fork_hooks);
    pthread_mutex_lock(&dflt_mu);
    if (!(st = dflt)) {
        if ((r = tm_options_from_env(&o)) == 0 && (r = default_path(path, sizeof path)) == 0 &&
            (r = tm_open(path, &o, &st)) == 0)
            dflt = st;
        else
            errno = r; /* may be a TM_E code: tm_strerror knows it */
    }
    pthread_mutex_unlock(&dflt_mu);
    return st;
}

/* The default store or the error that kept it from opening. */
#define DEFAULT_OR_RETURN(st)          \
    tm_store *st = tm_default();       \
    if (!st)                           \
        return errno

int tm_begin(void)
{
    DEFAULT_OR_RETURN(st);
    return tm_store_begin(st);
}

int tm_commit(void)
{
    tm_store *st = dflt;
    return st ? tm_store_commit(st) : TM_ENOTX;
}

void tm_abort(void)
{
    tm_store *st = dflt;
    if (st)
        tm_store_abort(st);
}

int tm_read_begin(void)
{
    DEFAULT_OR_RETURN(st);
    return tm_store_read_begin(st);
}

int tm_read_end(void)
{
    tm_store *st = dflt;
    return st ? tm_store_read_end(st) : TM_ENOTX;
}

void *tm_root(size_t size)
{
    tm_store *st = tm_default();
    return st ? tm_store_root(st, size) : NULL;
}

int tm_touch(void *p, size_t len)
{
    tm_store *st = dflt;
    return st ? tm_store_touch(st, p, len) : TM_ENOTX;
}

int tm_stats(tm_stats_t *out)
{
    DEFAULT_OR_RETURN(st);
    return tm_store_stats(st, out);
}
