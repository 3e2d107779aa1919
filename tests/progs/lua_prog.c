/*
 * lua_prog — an embedded Lua VM kept in the store, under the preload.
 *
 * The first run makes the state (luaL_newstate, luaL_openlibs) inside a
 * transaction and keeps it in the root; every run then runs a chunk that
 * changes the VM's globals, inside a transaction, and prints what they
 * hold.  The state holds pointers to its allocator and to the C functions
 * of Lua's libraries: it survives restarts because the preload keeps the
 * program and its libraries at the same addresses.  test_preload.c runs it.
 */
#include <errno.h>
#include <stdio.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "tmfalloc.h"

struct root {
    lua_State *L;
    long runs;
};

static const char chunk[] =
    "n = (n or 0) + 1\n"
    "names = names or {}\n"
    "names[#names + 1] = string.format('run %d', n)\n"
    "if not tenfold then function tenfold(x) return 10 * x end end\n"
    "return string.format('%d %s %d %s', n, table.concat(names, ','), tenfold(n), type(print))\n";

int main(void)
{
    struct root *r = tm_root(sizeof *r);
    int err;
    if (!r) {
        fprintf(stderr, "lua_prog: %s\n", tm_strerror(errno));
        return 1;
    }
    if ((err = tm_begin()) != 0) {
        fprintf(stderr, "lua_prog: %s\n", tm_strerror(err));
        return 1;
    }
    if (!r->L) {
        r->L = luaL_newstate();
        luaL_openlibs(r->L);
    }
    if (!tm_store_of(r->L)) {
        fprintf(stderr, "lua_prog: the state is not in the store: run me with LD_PRELOAD=libtmfpreload.so\n");
        tm_abort();
        return 2;
    }
    if (luaL_dostring(r->L, chunk) != 0) {
        fprintf(stderr, "lua_prog: %s\n", lua_tostring(r->L, -1));
        tm_abort();
        return 1;
    }
    printf("%s\n", lua_tostring(r->L, -1));
    lua_pop(r->L, 1);
    r->runs++;
    if ((err = tm_commit()) != 0) {
        fprintf(stderr, "lua_prog: %s\n", tm_strerror(err));
        return 1;
    }
    return 0;
}
