/*
 * early_lib — a library whose constructor opens the default store.  The
 * loader runs it before the preload's own constructor (a program's
 * libraries are initialised before LD_PRELOAD's), so the preload finds a
 * store open when it loads and must leave its wrappers in place
 * (preload/direct.c).  early_prog checks that it did.
 */
#include "tmfalloc.h"

int early_opened = -1;

__attribute__((constructor)) static void early_open(void)
{
    tm_stats_t s;
    early_opened = tm_stats(&s);
}
