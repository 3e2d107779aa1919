/* bench_lmdb.h — the LMDB side of the benchmarks that measure against it
 * (tx_bench, wset_bench, read_bench): opening an environment and filling
 * it with records, with every call checked. */
#ifndef BENCH_LMDB_H
#define BENCH_LMDB_H

#include <lmdb.h>
#include <stdint.h>
#include <string.h>

#include "bench_util.h"

#define CHECK(call)                                  \
    do {                                             \
        int rc_ = (call);                            \
        if (rc_)                                     \
            die(#call, mdb_strerror(rc_));           \
    } while (0)

/* Opens the environment in the directory path (which must exist) with the
 * given map size, flags and reader slots (0: LMDB's default), and begins a
 * write transaction on its main database: *txn, *dbi. */
static inline MDB_env *lmdb_open(const char *path, size_t mapsize, unsigned flags, unsigned readers,
                                 MDB_txn **txn, MDB_dbi *dbi)
{
    MDB_env *env;
    CHECK(mdb_env_create(&env));
    CHECK(mdb_env_set_mapsize(env, mapsize));
    if (readers)
        CHECK(mdb_env_set_maxreaders(env, readers));
    CHECK(mdb_env_open(env, path, flags, 0600));
    CHECK(mdb_txn_begin(env, NULL, 0, txn));
    CHECK(mdb_dbi_open(*txn, NULL, 0, dbi));
    return env;
}

/* Puts the keys 0 .. n-1 (uint64_t), each with len zero bytes (len <= 256). */
static inline void lmdb_fill(MDB_txn *txn, MDB_dbi dbi, uint64_t n, size_t len)
{
    char val[256];
    memset(val, 0, sizeof val);
    for (uint64_t key = 0; key < n; key++) {
        MDB_val k = {sizeof key, &key}, v = {len, val};
        CHECK(mdb_put(txn, dbi, &k, &v, 0));
    }
}

#endif
