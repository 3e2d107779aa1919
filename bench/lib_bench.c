/*
 * lib_bench — a real library kept in the arena: SQLite.
 *
 * A worker process under LD_PRELOAD=libtmfpreload.so (TMF_PATH=DIR/lib.tmf,
 * TMF_SYNC=none) calls sqlite3_initialize() before any transaction (SQLite's
 * global state stays in ordinary memory), then, inside one transaction,
 * opens an in-memory database (":memory:"), creates t(k INTEGER PRIMARY KEY,
 * v BLOB) with 10,000 rows of 64 bytes and prepares an INSERT and an UPDATE;
 * the sqlite3 * and both statements are kept in the root, and every byte
 * SQLite allocates lands in the arena.  It then times transactions that
 * each run one statement, TMF_SYNC=none:
 *   insert  INSERT of a new key with a 64-byte value;
 *   update  UPDATE of the value of a random one of the first 10,000 keys;
 * both with the prepared statement (bind, step, reset) and as SQL text
 * (sqlite3_exec, so SQLite compiles it inside the transaction).  A second
 * worker without the preload runs the same statements on a plain :memory:
 * database without transactions: the same work on ordinary memory.  Each
 * workload runs N/10 times untimed, then N times timed; minor page faults
 * (getrusage) per statement are counted over the timed part.  Rounds
 * alternate which worker goes first, and both workers of a round run on
 * the same CPU (the rounds take turns: bench_util.h, round_cpu); figures
 * are medians, ratios are taken per round.
 *
 *   lib_bench [--trackers=protect,uffd] DIR PRELOAD_SO N ROUNDS
 */
#include <inttypes.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "bench_tx.h"
#include "tmfalloc.h"

#define NROWS 10000
#define MAX_ROUNDS 32

enum { INS_STMT, UPD_STMT, INS_EXEC, UPD_EXEC, NWORK };
static const char *work_key[NWORK] = {"insert", "update", "insert_exec", "update_exec"};
static const char *work_name[NWORK] = {"INSERT, prepared statement", "UPDATE by key, prepared statement",
                                       "INSERT, SQL text (sqlite3_exec)", "UPDATE by key, SQL text (sqlite3_exec)"};

/* ---- the worker ---- */

struct root {
    sqlite3 *db;
    sqlite3_stmt *ins, *upd;
    int64_t next_key;
};

static int arena; /* under the preload, in transactions */
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

static void sql_die(sqlite3 *db, const char *what)
{
    fprintf(stderr, "lib_bench: %s: %s\n", what, db ? sqlite3_errmsg(db) : "failed");
    exit(1);
}

static void tx_begin(void)
{
    int r;
    if (arena && (r = tm_begin()) != 0)
        die("tm_begin", tm_strerror(r));
}

static void tx_commit(void)
{
    int r;
    if (arena && (r = tm_commit()) != 0)
        die("tm_commit", tm_strerror(r));
}

static void exec(sqlite3 *db, const char *sql)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        sql_die(db, sql);
}

static void step(sqlite3 *db, sqlite3_stmt *s, int64_t key, const char *val)
{
    sqlite3_bind_int64(s, 1, key);
    sqlite3_bind_blob(s, 2, val, 64, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE)
        sql_die(db, "step");
    sqlite3_reset(s);
}

static void create(struct root *r)
{
    char val[64] = {0};
    tx_begin();
    if (sqlite3_open(":memory:", &r->db) != SQLITE_OK)
        sql_die(r->db, "sqlite3_open");
    exec(r->db, "CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB)");
    if (sqlite3_prepare_v2(r->db, "INSERT INTO t(k, v) VALUES(?1, ?2)", -1, &r->ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(r->db, "UPDATE t SET v = ?2 WHERE k = ?1", -1, &r->upd, NULL) != SQLITE_OK)
        sql_die(r->db, "prepare");
    exec(r->db, "BEGIN");
    for (int64_t k = 0; k < NROWS; k++)
        step(r->db, r->ins, k, val);
    exec(r->db, "COMMIT");
    r->next_key = NROWS;
    tx_commit();
}

/* One statement of workload w in one transaction. */
static void one(struct root *r, int w, int64_t i)
{
    char val[64], sql[256];
    int64_t key = w == INS_STMT || w == INS_EXEC ? r->next_key : (int64_t)(next() % NROWS);
    memset(val, (int)i, sizeof val);
    if (w == INS_EXEC || w == UPD_EXEC) {
        int n = w == INS_EXEC ? snprintf(sql, sizeof sql, "INSERT INTO t(k, v) VALUES(%" PRId64 ", x'", key)
                              : snprintf(sql, sizeof sql, "UPDATE t SET v = x'");
        for (int j = 0; j < 64; j++)
            n += snprintf(sql + n, sizeof sql - (size_t)n, "%02x", (unsigned char)val[j]);
        if (w == INS_EXEC)
            snprintf(sql + n, sizeof sql - (size_t)n, "')");
        else
            snprintf(sql + n, sizeof sql - (size_t)n, "' WHERE k = %" PRId64, key);
    }
    tx_begin();
    switch (w) {
    case INS_STMT: step(r->db, r->ins, key, val); break;
    case UPD_STMT: step(r->db, r->upd, key, val); break;
    default: exec(r->db, sql);
    }
    if (w == INS_STMT || w == INS_EXEC)
        r->next_key++;
    tx_commit();
}

static int worker(const char *mode, const char *dir, long n)
{
    static char outbuf[1 << 14]; /* stdout's buffer: never in the arena */
    static struct root plain_root;
    struct root *r = &plain_root;
    char path[4200];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    arena = strcmp(mode, "arena") == 0;
    if (sqlite3_initialize() != SQLITE_OK)
        die("sqlite3_initialize", "failed");
    if (arena) {
        snprintf(path, sizeof path, "%s/lib.tmf", dir);
        remove_store(path);
        setenv("TMF_PATH", path, 1);
        setenv("TMF_SYNC", "none", 1);
        if (!(r = tm_root(sizeof *r)))
            die("tm_root", "failed");
    }
    create(r);
    if (arena && !tm_store_of(r->db))
        die("lib_bench", "SQLite's memory is not in the arena: run the worker under LD_PRELOAD=libtmfpreload.so");
    for (int w = 0; w < NWORK; w++) {
        long warm = n / 10, f0 = 0;
        double t = 0;
        for (long i = 0; i < warm + n; i++) {
            if (i == warm)
                f0 = minor_faults(), t = now();
            one(r, w, i);
        }
        t = now() - t;
        printf("%d %.6f %.4f\n", w, t * 1e6 / n, (double)(minor_faults() - f0) / n);
    }
    fflush(stdout);
    if (arena)
        remove_store(path);
    return 0;
}

/* ---- the driver ---- */

struct sample {
    double us[NWORK], faults[NWORK];
};

static struct sample run_worker(const char *self, const char *mode, const char *dir, const char *preload, long n,
                                int cpu)
{
    char nbuf[32];
    int fds[2], w, status;
    double us, flt;
    struct sample s;
    memset(&s, 0, sizeof s);
    snprintf(nbuf, sizeof nbuf, "%ld", n);
    char *args[] = {(char *)self, "--worker", (char *)mode, (char *)dir, nbuf, NULL};
    fflush(stdout);
    pid_t pid = spawn_on(fds, strcmp(mode, "arena") == 0 ? preload : NULL, args, cpu);
    FILE *f = fdopen(fds[0], "r");
    int got = 0;
    while (f && fscanf(f, "%d %lf %lf", &w, &us, &flt) == 3)
        if (w >= 0 && w < NWORK)
            s.us[w] = us, s.faults[w] = flt, got++;
    if (f)
        fclose(f);
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || got != NWORK)
        die("worker failed", mode);
    return s;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--worker") == 0)
        return worker(argv[2], argv[3], atol(argv[4]));
    char *trackers = tracker_option(&argc, argv);
    if (argc < 5) {
        fprintf(stderr, "usage: lib_bench [--trackers=A,B] DIR PRELOAD_SO N ROUNDS\n");
        return 2;
    }
    if (trackers)
        return tracker_run_all(trackers, argv);
    char dir[4096], self[4096];
    snprintf(dir, sizeof dir, "%s/lib", argv[1]);
    const char *preload = argv[2];
    long n = atol(argv[3]);
    int rounds = atoi(argv[4]);
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len < 0)
        die("readlink", "/proc/self/exe");
    self[len] = 0;
    if (rounds > MAX_ROUNDS)
        rounds = MAX_ROUNDS;
    if (n < 10 || rounds < 1)
        die("arguments", "N >= 10 and ROUNDS >= 1");
    if (access(preload, R_OK) != 0)
        die("no preload library at", preload);
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'; mkdir -p '%s'", dir, dir);
    if (system(cmd) != 0)
        die("mkdir", dir);
    const char *trk = tracker();
    print_tracker();

    static struct sample a[MAX_ROUNDS], p[MAX_ROUNDS];
    for (int k = 0; k < rounds; k++) { /* both workers of a round on its CPU (bench_util.h) */
        int cpu = round_cpu(k);
        if (k % 2 == 0) {
            a[k] = run_worker(self, "arena", dir, preload, n, cpu);
            p[k] = run_worker(self, "plain", dir, preload, n, cpu);
        } else {
            p[k] = run_worker(self, "plain", dir, preload, n, cpu);
            a[k] = run_worker(self, "arena", dir, preload, n, cpu);
        }
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        die("rm", dir);

    printf("SQLite :memory: database, one statement per transaction, %ld per round (after %ld untimed), "
           "median of %d rounds\n",
           n, n / 10, rounds);
    printf("%-40s %12s %10s %12s %10s %10s\n", "statement", "arena µs/tx", "faults/tx", "plain µs", "faults",
           "arena/plain");
    double ratio[NWORK];
    for (int w = 0; w < NWORK; w++) {
        double au[MAX_ROUNDS], af[MAX_ROUNDS], pu[MAX_ROUNDS], pf[MAX_ROUNDS], r[MAX_ROUNDS];
        for (int k = 0; k < rounds; k++) {
            au[k] = a[k].us[w], af[k] = a[k].faults[w], pu[k] = p[k].us[w], pf[k] = p[k].faults[w];
            r[k] = au[k] / pu[k];
        }
        double mau = median_of(au, rounds), maf = median_of(af, rounds), mpu = median_of(pu, rounds),
               mpf = median_of(pf, rounds);
        ratio[w] = median_of(r, rounds);
        printf("%-40s %12.3f %10.2f %12.3f %10.2f %10.2f\n", work_name[w], mau, maf, mpu, mpf, ratio[w]);
        printf("RESULT lib_%s_%s_arena_us=%.4f\nRESULT lib_%s_%s_arena_faults=%.3f\n", trk, work_key[w], mau, trk,
               work_key[w], maf);
        printf("RESULT lib_%s_%s_plain_us=%.4f\nRESULT lib_%s_%s_plain_faults=%.3f\n", trk, work_key[w], mpu, trk,
               work_key[w], mpf);
        printf("RESULT lib_%s_%s_ratio=%.4f\n", trk, work_key[w], ratio[w]);
    }
    printf("\n");
    char name[96], what[128];
    for (int w = 0; w < NWORK; w++) {
        snprintf(name, sizeof name, "lib_%s_target_%s", trk, work_key[w]);
        snprintf(what, sizeof what, "%s: SQLite in the arena / ordinary memory, %s", trk, work_name[w]);
        target(name, what, ratio[w], "<=", 10);
    }
    printf("RESULT lib_%s_rounds=%d\nRESULT lib_%s_n=%ld\n", trk, rounds, trk, n);
    return 0;
}
