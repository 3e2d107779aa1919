/*
 * route.c — this thread's routing of the malloc family (route.h), and the
 * escape hatch that sends it to glibc for a while.
 *
 * tx.c sets tm_route_store when a write transaction begins and moves it to
 * another open transaction of the thread, or to NULL, when it ends.  While
 * a transient section is open the route is NULL and the store it would have
 * been is parked in tls_parked.
 */
#include "internal.h"

TLS tm_store *tm_route_store;
TLS int tm_route_tx;
_Atomic uintptr_t tm_arena_lo, tm_arena_hi;
int tm_route_preloaded;
int (*tm_route_opening)(void);
int tm_route_opened;

static TLS tm_store *tls_parked; /* the route during a transient section */
static TLS int tls_transient;

void tm_transient_begin(void)
{
    if (tls_transient++ == 0) {
        tls_parked = tm_route_store;
        tm_route_store = NULL;
    }
}

void tm_transient_end(void)
{
    if (tls_transient > 0 && --tls_transient == 0) {
        tm_route_store = tls_parked;
        tls_parked = NULL;
    }
}

int tm_in_tx(void)
{
    return tm_route_tx > 0;
}

void route_enter(tm_store *st)
{
    tm_route_tx++;
    if (tls_transient)
        tls_parked = tls_parked ? tls_parked : st;
    else if (!tm_route_store)
        tm_route_store = st;
}

void route_leave(tm_store *st, tm_store *next)
{
    tm_route_tx--;
    if (tm_route_store == st)
        tm_route_store = next;
    if (tls_parked == st)
        tls_parked = next;
}

void route_forget(void)
{
    tm_route_tx = 0;
    tm_route_store = tls_parked = NULL;
    tls_transient = 0;
}

void route_set_bounds(uintptr_t lo, uintptr_t hi)
{
    tm_arena_lo = lo;
    tm_arena_hi = hi;
}
