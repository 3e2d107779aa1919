/* test_tmf.c — the tmf command-line tool: every command on good, damaged,
 * pending-recovery and foreign files (exit codes and messages), copy while a
 * writer commits, JSON output, installation-free runs of the built binary. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "heap.h"
#include "inspect.h"
#include "internal.h"
#include "os.h"

#ifndef TMF_TOOL
#error "TMF_TOOL must name the tmf binary"
#endif

static char out[16384];

/* Runs tmf with the NULL-terminated arguments (PATH replaced when path is
 * not NULL); stdout and stderr go to out.  Returns the exit status. */
static int run_env(const char *path, const char *arg, ...)
{
    const char *argv[16];
    int n = 0, pipefd[2], status;
    size_t got = 0;
    ssize_t k;
    va_list ap;
    pid_t pid;
    argv[n++] = TMF_TOOL;
    va_start(ap, arg);
    for (; arg && n < 15; arg = va_arg(ap, const char *))
        argv[n++] = arg;
    va_end(ap);
    argv[n] = NULL;
    cr_assert_eq(pipe(pipefd), 0);
    if ((pid = fork()) == 0) {
        dup2(pipefd[1], 1), dup2(pipefd[1], 2);
        close(pipefd[0]), close(pipefd[1]);
        if (path)
            setenv("PATH", path, 1);
        execv(TMF_TOOL, (char **)argv);
        _exit(126);
    }
    close(pipefd[1]);
    while ((k = read(pipefd[0], out + got, sizeof out - 1 - got)) > 0)
        got += (size_t)k;
    out[got] = 0;
    close(pipefd[0]);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "tmf died: %s", out);
    return WEXITSTATUS(status);
}
#define run(...) run_env(NULL, __VA_ARGS__, (const char *)NULL)

#define EXPECT(code, sub, ...)                                                             \
    do {                                                                                   \
        int ex_ = run(__VA_ARGS__);                                                        \
        cr_assert_eq(ex_, code, "exit %d, want %d; output:\n%s", ex_, code, out);          \
        cr_assert(strstr(out, sub), "no \"%s\" in output:\n%s", sub, out);                 \
    } while (0)

/* ---- files ---- */

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void flip(const char *path, off_t off)
{
    unsigned char c;
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pread(fd, &c, 1, off), 1);
    c ^= 0x40;
    cr_assert_eq(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

static off_t file_size(const char *path)
{
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    return sb.st_size;
}

/* A store with a root of 3 pages (value v at both ends) and a malloc'd
 * block; returns the block's offset from the base.  Closed cleanly. */
static uint64_t make_store(const char *path, long v)
{
    tm_store *st = tu_open(path);
    long *root = tm_store_root(st, 3 * PAGE);
    char *p;
    uint64_t off;
    cr_assert_not_null(root);
    TU_OK(tm_store_begin(st));
    root[0] = root[3 * PAGE / sizeof(long) - 1] = v;
    p = tm_store_malloc(st, 10000);
    cr_assert_not_null(p);
    memset(p, 7, 10000);
    TU_OK(tm_store_commit(st));
    off = (uint64_t)(p - (char *)tm_store_base(st));
    TU_OK(tm_close(st));
    return off;
}

/* ---- help and usage ---- */

Test(tmf, help_of_every_command)
{
    static const char *cmds[] = {"info", "check", "recover", "stats", "copy", "map"};
    char want[64];
    size_t i;
    for (i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        snprintf(want, sizeof want, "usage: tmf %s", cmds[i]);
        EXPECT(0, want, cmds[i], "--help");
    }
    EXPECT(0, "Commands", "--help");
    EXPECT(64, "unknown command", "frobnicate");
    EXPECT(64, "FILE is needed", "check");
    EXPECT(64, "FILE and DEST", "copy", "x");
    EXPECT(64, "bad option", "map", "--width", "3", "x");
    EXPECT(64, "bad option", "info", "--json", "x");
}

/* ---- a good store ---- */

Test(tmf, good_store_info_check_stats)
{
    const char *path = tu_path("good.tmf");
    make_store(path, 42);
    EXPECT(0, "magic:           TMFSTORE", "info", path);
    cr_assert(strstr(out, "base:            0x200000000000"), "%s", out);
    cr_assert(strstr(out, "header slots:    both valid"), "%s", out);
    cr_assert(strstr(out, "recovery:        not needed"), "%s", out);
    cr_assert(strstr(out, "last commit:"), "%s", out);
    EXPECT(0, ": clean: commit seq", "check", path);
    EXPECT(0, "live_bytes", "stats", path);
    cr_assert(strstr(out, "recovery_pending no"), "%s", out);
}

static int count(const char *s, char c)
{
    int n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

Test(tmf, stats_json_parses)
{
    static const char *keys[] = {"\"file\":", "\"arena_size\":", "\"max_size\":", "\"live_bytes\":",
                                 "\"free_bytes\":", "\"free_blocks\":", "\"largest_free\":",
                                 "\"commits\":", "\"log_bytes\":", "\"log_records\":",
                                 "\"pending_records\":", "\"recovery_pending\": false"};
    const char *path = tu_path("j\"son.tmf");
    size_t i;
    make_store(path, 1);
    EXPECT(0, "{", "stats", "--json", path);
    cr_assert_eq(count(out, '{'), 1);
    cr_assert_eq(count(out, '}'), 1);
    cr_assert_eq(out[0], '{');
    cr_assert(strstr(out, "j\\\"son.tmf"), "path not escaped: %s", out);
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
        cr_assert(strstr(out, keys[i]), "no %s in %s", keys[i], out);
}

Test(tmf, map_text_and_png)
{
    const char *path = tu_path("map.tmf"), *png = tu_path("map.png");
    unsigned char magic[8];
    int fd;
    make_store(path, 1);
    EXPECT(0, "legend:", "map", "--width", "32", "--color=never", path);
    cr_assert(strstr(out, "HHSS") || strstr(out, "HS"), "%s", out);
    cr_assert(strstr(out, "#") && strstr(out, "fence"), "%s", out);
    cr_assert_null(strstr(out, "\033["), "colour without a terminal");
    EXPECT(0, "\033[", "map", "--color=always", path);
    cr_assert_eq(run_env("/nonexistent", "map", "--png", png, path, NULL), 1, "%s", out);
    cr_assert(strstr(out, "gnuplot") && strstr(out, "not found"), "%s", out);
    if (system("command -v gnuplot >/dev/null 2>&1") != 0)
        cr_skip_test("gnuplot is not installed");
    EXPECT(0, "wrote", "map", "--png", png, path);
    fd = open(png, O_RDONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(read(fd, magic, 8), 8);
    close(fd);
    cr_assert_arr_eq(magic, "\x89PNG\r\n\x1a\n", 8);

    /* a name that would end gnuplot's quoted string is passed through
     * intact; quoted as it was before, it ran "touch" in the current
     * directory */
    char odd[600];
    snprintf(odd, sizeof odd, "%s/x'; system('touch tmf-planted'); print '.png", tu_dir());
    EXPECT(0, "wrote", "map", "--png", odd, path);
    cr_assert_eq(access(odd, F_OK), 0, "no file %s", odd);
    cr_assert_neq(access("tmf-planted", F_OK), 0, "the name ran a command");
}

/* ---- foreign files ---- */

Test(tmf, foreign_files_are_unusable)
{
    static const char *cmds[] = {"info", "check", "stats", "map", "recover"};
    char text[512], empty[512], missing[512], log[512];
    struct stat sb;
    size_t i;
    snprintf(text, sizeof text, "%s", tu_path("text"));
    snprintf(empty, sizeof empty, "%s", tu_path("empty"));
    snprintf(missing, sizeof missing, "%s", tu_path("missing"));
    snprintf(log, sizeof log, "%s", tu_path("text.log"));
    write_file(text, "just some text, not a store at all\n", 35);
    write_file(empty, "", 0);
    for (i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        EXPECT(2, "not a tmfalloc store", cmds[i], text);
        EXPECT(2, "empty file", cmds[i], empty);
        EXPECT(2, "directory", cmds[i], tu_dir());
        EXPECT(2, "No such file", cmds[i], missing);
    }
    EXPECT(2, "not a tmfalloc store", "copy", text, tu_path("dest"));
    cr_assert_neq(stat(log, &sb), 0, "a log was created beside a text file");
    cr_assert_neq(stat(missing, &sb), 0, "a missing store was created");
    cr_assert_eq(file_size(text), 35);
}

/* ---- damage ---- */

Test(tmf, damaged_header_slot)
{
    const char *path = tu_path("slot.tmf");
    make_store(path, 1);
    flip(path, HDR_SLOT_SIZE + offsetof(struct hdr_slot, base) + 1);
    EXPECT(1, "damaged: header slot 1 is corrupt", "check", path);
    EXPECT(0, "header slot 1 is corrupt", "info", path);
    flip(path, offsetof(struct hdr_slot, store_id));
    EXPECT(1, "damaged: both header slots are corrupt", "check", path);
    EXPECT(1, "both header slots", "info", path);
}

Test(tmf, damaged_superblock)
{
    const char *path = tu_path("super.tmf");
    make_store(path, 1);
    flip(path, PAGE + offsetof(struct tm_super, root) + 2);
    EXPECT(1, "damaged: the superblock", "check", path);
    EXPECT(1, "superblock", "stats", "--json", path);
}

Test(tmf, damaged_heap_block_header)
{
    const char *path = tu_path("heap.tmf");
    uint64_t off = make_store(path, 1);
    flip(path, (off_t)(off - BLK_HDR + 8 + 6)); /* the check bits of the block's head */
    EXPECT(1, "damaged: heap: bad block header at 0x", "check", path);
    EXPECT(1, "damaged heap", "map", path);
}

/* The free tree's root, in the heap state the superblock checksum does not
 * cover, pointing outside the arena: reported, not followed. */
Test(tmf, damaged_free_tree_link)
{
    const char *path = tu_path("tree.tmf");
    uint64_t wild = 0x300000000000ull;
    make_store(path, 1);
    int fd = open(path, O_WRONLY);
    cr_assert_eq(pwrite(fd, &wild, sizeof wild, PAGE + offsetof(struct tm_super, heap) +
                                                    offsetof(struct heap_state, root)),
                 (ssize_t)sizeof wild);
    close(fd);
    EXPECT(1, "damaged", "check", path);
    cr_assert_leq(run("info", path), 1, "%s", out); /* run() fails the test if tmf died */
    cr_assert_leq(run("stats", path), 1, "%s", out);
}

Test(tmf, newer_version_and_truncation)
{
    const char *path = tu_path("v.tmf"), *log = tu_path("v.tmf.log");
    struct hdr_slot h;
    int fd, i;
    make_store(path, 1);
    cr_assert_eq(truncate(log, 100), 0);
    EXPECT(1, "redo log", "check", path);
    make_store(tu_path("t.tmf"), 1);
    cr_assert_eq(truncate(tu_path("t.tmf"), 3 * PAGE), 0);
    EXPECT(2, "shorter than its header", "check", tu_path("t.tmf"));
    cr_assert_eq(truncate(tu_path("t.tmf"), PAGE + 100), 0);
    EXPECT(2, "unusable", "info", tu_path("t.tmf"));
    make_store(tu_path("n.tmf"), 1);
    fd = open(tu_path("n.tmf"), O_RDWR);
    for (i = 0; i < 2; i++) {
        cr_assert_eq(pread(fd, &h, sizeof h, i * HDR_SLOT_SIZE), (ssize_t)sizeof h);
        h.version = FORMAT_VERSION + 1;
        h.checksum = hdr_checksum(&h);
        cr_assert_eq(pwrite(fd, &h, sizeof h, i * HDR_SLOT_SIZE), (ssize_t)sizeof h);
    }
    close(fd);
    EXPECT(2, "newer", "check", tu_path("n.tmf"));
}

/* A child commits n times and dies without closing: its records stay in
 * the log after the checkpoint.  With stale != 0 it then puts back the
 * store file and the lock file's applied state of before its last commit,
 * as if it died before applying it (checkpoint.c S2): that record is
 * durable but pending.  With stale == 2 it dies before publishing it too:
 * whoever comes next finds the durable record in the log. */
struct crash_arg {
    const char *path;
    int n, stale;
};

static void commit_and_die(void *p)
{
    struct crash_arg *a = p;
    tm_store *st = tu_open_or_exit(a->path);
    long *root = tm_store_root(st, 3 * PAGE);
    struct tm_shared *sh = st->lk.sh;
    static uint8_t saved[1 << 20];
    uint64_t seq = 0, off = 0, size = 0, last_off = 0, last_sum = 0;
    int i, fd;
    if (!root)
        _exit(98);
    for (i = 1; i <= a->n; i++) {
        size = sh->size, seq = sh->seq, off = sh->log_off, last_off = sh->last_off, last_sum = sh->last_sum;
        if (size > sizeof saved || pread(st->fd, saved, size, 0) != (ssize_t)size)
            _exit(94);
        if (tm_store_begin(st) != 0)
            _exit(97);
        root[0] = root[3 * PAGE / sizeof(long) - 1] = 100 + i;
        if (tm_store_commit(st) != 0)
            _exit(96);
    }
    if (a->stale) {
        if ((fd = open(a->path, O_WRONLY)) < 0 || pwrite(fd, saved, size, 0) != (ssize_t)size)
            _exit(95);
        sh->applied = seq;
        sh->applied_off = off;
        if (a->stale == 2) { /* died before publishing the commit, too */
            sh->seq = seq;
            sh->log_off = off;
            sh->last_off = last_off;
            sh->last_sum = last_sum;
        }
    }
    _exit(0);
}

static void crash(const char *path, int n, int stale)
{
    struct crash_arg a = {path, n, stale};
    int status = tu_run_child(commit_and_die, &a, NULL, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
}

static void copy_bytes_of(const char *from, const char *to)
{
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* The lock file keeps the committed state of the last run of this boot;
 * files copied back over the store's (an older copy of it) are not taken
 * for what that state describes. */
Test(tmf, files_put_back_are_not_taken_for_the_kept_state)
{
    char path[512], log[520], spath[512], slog[520];
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st;
    snprintf(path, sizeof path, "%s", tu_path("back.tmf"));
    snprintf(log, sizeof log, "%s.log", path);
    snprintf(spath, sizeof spath, "%s", tu_path("saved.tmf"));
    snprintf(slog, sizeof slog, "%s.log", spath);
    crash(path, 2, 0); /* commits 1 (the root) to 3, left in the log */
    copy_bytes_of(path, spath);
    copy_bytes_of(log, slog);
    crash(path, 2, 0); /* the first opener recovers, checkpoints; then commits 4 and 5 */
    copy_bytes_of(spath, path);
    copy_bytes_of(slog, log);
    EXPECT(0, "last commit:     3", "info", path);
    o.read_only = 1;
    TU_OK(tm_open(path, &o, &st));
    long *root = tm_store_root(st, 1);
    cr_assert_not_null(root, "%s", tm_strerror(errno));
    cr_assert_eq(root[0], 102);
    TU_OK(tm_close(st));
}

Test(tmf, log_records_after_checkpoint_are_reported)
{
    const char *path = tu_path("log.tmf");
    crash(path, 3, 0);
    EXPECT(0, "after the checkpoint", "info", path);
    cr_assert(strstr(out, "recovery:        not needed"), "%s", out);
    EXPECT(0, ": clean:", "check", path);
    EXPECT(0, "\"log_records\": 4", "stats", "--json", path); /* the root's commit too */
}

Test(tmf, damaged_log_record)
{
    const char *path = tu_path("rec.tmf");
    crash(path, 2, 0);
    flip(path, 0); /* nothing: the flip below is in the log */
    flip(path, 0);
    flip(tu_path("rec.tmf.log"), LOG_START + sizeof(struct log_rec) + 8 + 300);
    EXPECT(1, "damaged: log record seq 1 at offset 4096 is corrupt", "check", path);
    EXPECT(0, "corrupt committed record", "info", path);
}

Test(tmf, torn_uncommitted_record_is_not_damage)
{
    const char *path = tu_path("torn.tmf"), *log = tu_path("torn.tmf.log");
    struct log_rec rec;
    int fd;
    crash(path, 2, 2); /* seq 3 (the last commit) is unpublished: torn, it never happened */
    fd = open(log, O_RDWR);
    cr_assert_geq(fd, 0);
    /* the third record: the root's commit, then two of the loop */
    off_t off = LOG_START;
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(pread(fd, &rec, sizeof rec, off), (ssize_t)sizeof rec);
        off += (off_t)rec.len;
    }
    close(fd);
    flip(log, off + (off_t)sizeof rec + 40);
    EXPECT(0, "torn uncommitted log record is ignored", "check", path);
    EXPECT(0, "log tail:        torn uncommitted record seq 3", "info", path);
    cr_assert_null(strstr(out, "damage"), "%s", out);
}

/* ---- pending recovery ---- */

static long root_value(const char *path, int end)
{
    tm_store *st = tu_open(path);
    long *root = tm_store_root(st, 3 * PAGE), v;
    cr_assert_not_null(root);
    v = root[end ? 3 * PAGE / sizeof(long) - 1 : 0];
    TU_OK(tm_close(st));
    return v;
}

Test(tmf, recover_replays_pending_records)
{
    const char *path = tu_path("pend.tmf");
    crash(path, 3, 1);
    EXPECT(0, "recovery pending: 1 durable commit(s) not yet applied", "check", path);
    EXPECT(0, "recovery:        pending", "info", path);
    EXPECT(0, "\"recovery_pending\": true", "stats", "--json", path);
    EXPECT(1, "recovery pending", "map", path);
    EXPECT(0, "replayed 4 log record(s) (1 not yet applied before); commit seq 4", "recover", path);
    cr_assert(strstr(out, "checkpointed at commit seq 4"), "%s", out);
    EXPECT(0, ": clean: commit seq 4", "check", path);
    EXPECT(0, "none after the checkpoint", "info", path);
    cr_assert_eq(root_value(path, 0), 103);
    cr_assert_eq(root_value(path, 1), 103);
}

static uint64_t hash_of(const char *path)
{
    struct stat sb;
    uint8_t *p;
    uint64_t h;
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "open %s", path);
    cr_assert_eq(fstat(fd, &sb), 0);
    cr_assert_not_null(p = malloc((size_t)sb.st_size + 1));
    cr_assert_eq(pread(fd, p, (size_t)sb.st_size, 0), sb.st_size);
    close(fd);
    h = hash_bytes(p, (size_t)sb.st_size, 1);
    free(p);
    return h;
}

/* A copy of a store that needs recovery holds its last durable commit,
 * replayed from the log, and leaves the store as it was. */
Test(tmf, copy_of_a_store_that_needs_recovery_holds_the_last_durable_commit)
{
    const char *path = tu_path("pc.tmf"), *log = tu_path("pc.tmf.log"), *dest = tu_path("pc.copy");
    uint64_t store_hash, log_hash;
    crash(path, 3, 1); /* commit seq 4 durable, not in the store file */
    store_hash = hash_of(path), log_hash = hash_of(log);
    EXPECT(0, "copied", "copy", path, dest);
    cr_assert(strstr(out, "at commit seq 4: recovery is pending in"), "%s", out);
    cr_assert_eq(hash_of(path), store_hash, "the copy wrote the source");
    cr_assert_eq(hash_of(log), log_hash, "the copy wrote the source's log");
    EXPECT(0, "recovery pending: 1 durable commit(s)", "check", path);
    EXPECT(0, ": clean: commit seq 4, ", "check", dest);
    cr_assert(strstr(out, " 0 log records after the checkpoint"), "%s", out);
    cr_assert_eq(root_value(dest, 0), 103);
    cr_assert_eq(root_value(dest, 1), 103);
}

/* A power cut: a child commits with TMF_SYNC=full, growing the arena, but
 * none of its writes to the store file reach the disk (no checkpoint syncs
 * it meanwhile); the lock file's state is lost with it. */
static int lost_fd = -1;

static ssize_t lose_write(int fd, const void *buf, size_t len, off_t off)
{
    return fd == lost_fd ? (ssize_t)len : os_real.write_at(fd, buf, len, off);
}

static ssize_t lose_mapped(int fd, char *map, const void *buf, size_t len, off_t off)
{
    return fd == lost_fd ? (ssize_t)len : os_real.write_mapped(fd, map, buf, len, off);
}

static ssize_t lose_writev(int fd, const struct iovec *iov, int n, off_t off)
{
    ssize_t len = 0;
    if (fd != lost_fd)
        return os_real.writev_at(fd, iov, n, off);
    for (int i = 0; i < n; i++)
        len += (ssize_t)iov[i].iov_len;
    return len;
}

static void commit_without_the_store_file(void *path)
{
    tm_store *st;
    /* Pages left open by a commit are compared with the store file at the
     * next begin: with the file's writes lost, that begin would find them
     * changed and stop the process (a stray write, as far as it can tell). */
    setenv("TMF_TRACK", "protect", 1);
    st = tu_open_or_exit(path);
    long *root = tm_store_root(st, 3 * PAGE);
    char *big;
    if (!root)
        _exit(98);
    lost_fd = st->fd;
    os_calls.write_at = lose_write;
    os_calls.writev_at = lose_writev;
    os_calls.write_mapped = lose_mapped;
    for (int i = 1; i <= 3; i++) {
        if (tm_store_begin(st) != 0)
            _exit(97);
        root[0] = root[3 * PAGE / sizeof(long) - 1] = 200 + i;
        if (i == 2) { /* grows the arena; a small record, so that the log's ring holds all three */
            if (!(big = tm_store_malloc(st, (size_t)2 << 20)))
                _exit(96);
            big[0] = big[((size_t)2 << 20) - 1] = 0x5a;
        }
        if (tm_store_commit(st) != 0)
            _exit(95);
    }
    _exit(0);
}

Test(tmf, after_a_power_cut_recovery_is_pending_not_damage_and_copy_replays)
{
    const char *path = tu_path("cut.tmf"), *dest = tu_path("cut.copy");
    tm_store *st;
    tm_stats_t s;
    int status;
    make_store(path, 1);
    status = tu_run_child(commit_without_the_store_file, (void *)path, NULL, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    cr_assert_eq(unlink(tu_path("cut.tmf.lock")), 0);
    EXPECT(0, "recovery:        pending", "info", path);
    cr_assert_null(strstr(out, "damage"), "%s", out);
    EXPECT(0, ": recovery pending: 3 durable commit(s) not yet applied", "check", path);
    EXPECT(0, "recovery is pending in", "copy", path, dest);
    EXPECT(0, ": clean:", "check", dest);
    cr_assert_eq(root_value(dest, 0), 203);
    cr_assert_eq(root_value(dest, 1), 203);
    st = tu_open(dest);
    TU_OK(tm_store_stats(st, &s));
    cr_assert_gt(s.arena_size, (uint64_t)2 << 20, "the copy lost the growth: %llu", (unsigned long long)s.arena_size);
    TU_OK(tm_close(st));
    cr_assert_eq(root_value(path, 0), 203); /* the store itself recovers the same */
}

/* The copy's replay sees a checkpoint that came in after the handle was
 * opened: the log may have been reused meanwhile. */
Test(tmf, a_replay_into_a_copy_sees_a_checkpoint_made_meanwhile)
{
    const char *path = tu_path("ck.tmf"), *dest = tu_path("ck.copy");
    tm_options o = tu_opts(TM_SYNC_FULL);
    struct hdr_slot h;
    uint64_t seq, size;
    tm_store *st;
    int out_fd, fd;
    crash(path, 3, 1);
    o.read_only = 1;
    TU_OK(tm_open(path, &o, &st));
    cr_assert_eq(tm_store_read_begin(st), EROFS);
    out_fd = open(dest, O_RDWR | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(out_fd, 0);
    cr_assert_eq(inspect_replay_into(st, out_fd, &seq, &size), 0);
    cr_assert_eq(seq, 4);
    cr_assert_eq(size, (uint64_t)file_size(dest));
    tu_header(path, &h); /* a checkpoint by another process: the next slot */
    h.gen++;
    h.checksum = hdr_checksum(&h);
    fd = open(path, O_WRONLY);
    cr_assert_eq(pwrite(fd, &h, sizeof h, (off_t)((h.gen & 1) * HDR_SLOT_SIZE)), (ssize_t)sizeof h);
    close(fd);
    cr_assert_eq(inspect_replay_into(st, out_fd, &seq, &size), -EAGAIN);
    close(out_fd);
    TU_OK(tm_close(st));
}

/* A store whose creation a crash cut short before its log was made needs
 * recovery; the same store without its log after a commit is damaged. */
Test(tmf, a_store_without_the_log_it_never_had_needs_recovery)
{
    const char *path = tu_path("nolog.tmf"), *log = tu_path("nolog.tmf.log");
    tm_store *st = tu_open(path);
    TU_OK(tm_close(st)); /* no commit: never checkpointed */
    cr_assert_eq(unlink(log), 0);
    EXPECT(0, ": recovery pending: the store's creation was cut short", "check", path);
    EXPECT(0, "recovery:        pending: the store's creation was cut short", "info", path);
    EXPECT(1, "recovery pending", "copy", path, tu_path("nolog.copy"));
    EXPECT(1, "recovery pending", "stats", path);
    EXPECT(1, "recovery pending", "map", path);
    cr_assert_neq(access(tu_path("nolog.copy"), F_OK), 0);
    EXPECT(0, "replayed 0 log record(s)", "recover", path);
    EXPECT(0, ": clean:", "check", path);

    make_store(path, 1); /* committed to and checkpointed: its log mattered */
    cr_assert_eq(unlink(log), 0);
    EXPECT(1, "redo log", "check", path);
    cr_assert(strstr(out, "No such file"), "%s", out);
}

Test(tmf, recover_on_a_live_store_heals)
{
    const char *path = tu_path("live.tmf");
    tm_store *st;
    crash(path, 2, 1);
    st = tu_open(path); /* this process is the first opener: it recovers */
    EXPECT(0, "live", "recover", path);
    EXPECT(0, "nothing to heal", "recover", path);
    TU_OK(tm_close(st));
    EXPECT(0, ": clean: commit seq 3", "check", path);
}

/* ---- copy ---- */

Test(tmf, copy_refuses_existing_dest_and_copies)
{
    const char *path = tu_path("src.tmf"), *dest = tu_path("dst.tmf");
    make_store(path, 5);
    write_file(dest, "keep me", 7);
    EXPECT(1, "exists; use --force", "copy", path, dest);
    cr_assert_eq(file_size(dest), 7);
    EXPECT(0, "copied", "copy", "--force", path, dest);
    EXPECT(0, ": clean:", "check", dest);
    cr_assert_eq(file_size(tu_path("dst.tmf.log")), PAGE);
    cr_assert_eq(root_value(dest, 0), 5);
    EXPECT(0, "copied", "copy", "--force", path, dest); /* over a copy that was opened */
    EXPECT(0, ": clean:", "check", dest);

    /* a log without its store is not overwritten either */
    const char *lone = tu_path("lone.tmf"), *lone_log = tu_path("lone.tmf.log");
    write_file(lone_log, "old log", 7);
    EXPECT(1, "lone.tmf.log: exists; use --force", "copy", path, lone);
    cr_assert_eq(file_size(lone_log), 7);
    cr_assert_neq(access(lone, F_OK), 0);
    /* nor is anything renamed into place when the destination is a directory */
    const char *dir = tu_path("adir");
    cr_assert_eq(mkdir(dir, 0700), 0);
    EXPECT(1, "is a directory", "copy", "--force", path, dir);
    cr_assert_neq(access(tu_path("adir.log"), F_OK), 0, "a log was left beside the directory");
}

static void keep_committing(void *p)
{
    tm_store *st = tu_open_or_exit(p);
    long *root = tm_store_root(st, 3 * PAGE);
    long i;
    if (!root)
        _exit(98);
    for (i = 1; i < 2000000; i++) {
        char *junk;
        if (tm_store_begin(st) != 0)
            _exit(97);
        root[0] = i;
        junk = tm_store_malloc(st, (size_t)(i % 5000) + 1); /* heap churn, some growth */
        if (junk && i % 3)
            tm_store_free(st, junk);
        root[3 * PAGE / sizeof(long) - 1] = i;
        if (tm_store_commit(st) != 0)
            _exit(96);
    }
    _exit(0);
}

Test(tmf, copy_while_a_writer_commits, .timeout = 120)
{
    const char *path = tu_path("busy.tmf"), *dest = tu_path("busy.copy");
    long last = 0;
    pid_t pid;
    int i, status;
    make_store(path, 0);
    if ((pid = fork()) == 0) {
        keep_committing((void *)path);
        _exit(0);
    }
    usleep(100000);
    for (i = 0; i < 5; i++) {
        tm_store *st;
        long *root, v;
        char msg[256];
        EXPECT(0, "copied", "copy", "--force", path, dest);
        EXPECT(0, ": clean:", "check", dest);
        st = tu_open(dest);
        root = tm_store_root(st, 3 * PAGE);
        v = root[0];
        cr_assert_eq(v, root[3 * PAGE / sizeof(long) - 1], "a torn transaction in the copy");
        cr_assert_geq(v, last, "the copies went back in time");
        TU_OK(tm_store_read_begin(st));
        cr_assert_eq(tm_store_check(st, msg, sizeof msg), 0, "%s", msg);
        TU_OK(tm_store_read_end(st));
        TU_OK(tm_close(st));
        last = v;
        usleep(50000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    cr_assert_gt(last, 0, "the writer never committed");
    /* killed at any point: clean, or recovery pending, never damaged */
    cr_assert_eq(run("check", path), 0, "%s", out);
}

/* ---- the read-only open mode the tool relies on ---- */

Test(tmf, read_only_handle_never_writes)
{
    const char *path = tu_path("ro.tmf");
    tm_options o = tu_opts(TM_SYNC_FULL);
    struct stat before, after;
    tm_store *st;
    crash(path, 2, 0); /* records after the checkpoint: a first opener would replay */
    cr_assert_eq(stat(tu_path("ro.tmf.log"), &before), 0);
    o.read_only = 1;
    TU_OK(tm_open(path, &o, &st));
    cr_assert_eq(tm_store_begin(st), EROFS);
    TU_OK(tm_store_read_begin(st));
    cr_assert_eq(*(long *)tm_store_root(st, 1), 102);
    TU_OK(tm_store_read_end(st));
    TU_OK(tm_close(st));
    cr_assert_eq(stat(tu_path("ro.tmf.log"), &after), 0);
    cr_assert_eq(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec, "the log was written");
    cr_assert_eq(before.st_size, after.st_size);
    EXPECT(0, "3 after the checkpoint", "info", path); /* no checkpoint at close */
    cr_assert_eq(tm_open(tu_path("none.tmf"), &o, &st), ENOENT);
}

/* ---- progress on a large store ---- */

#define BIG_ARENA ((uint64_t)4 << 30)
#define BIG_RECORD ((size_t)72 << 20) /* above the tool's threshold for a meter */

static tm_options big_opts(void)
{
    tm_options o = tu_opts(TM_SYNC_NONE);
    o.max_size = 2 * BIG_ARENA;
    o.initial_size = BIG_ARENA; /* a sparse file: the tool's work is 4 GiB, the disk's little */
    return o;
}

static int die_fd = -1;

static ssize_t pwrite_or_die(int fd, const void *buf, size_t len, off_t off)
{
    if (fd == die_fd && off >= 2 * PAGE)
        _exit(0); /* a page applied: the log record is written, its commit durable (L3) */
    return os_real.write_at(fd, buf, len, off);
}

static ssize_t mapped_or_die(int fd, char *map, const void *buf, size_t len, off_t off)
{
    if (fd == die_fd && off >= 2 * PAGE)
        _exit(0);
    return os_real.write_mapped(fd, map, buf, len, off);
}

/* A child writes BIG_RECORD bytes in one transaction and dies as the
 * commit starts to apply them to the store file (a checkpoint may write the
 * header first): recovery has a large record to replay. */
static void commit_big_and_die(void *path)
{
    tm_options o = big_opts();
    tm_store *st;
    char *p;
    if (tm_open(path, &o, &st) != 0 || !(p = tm_store_root(st, PAGE)) || tm_store_begin(st) != 0 ||
        !(p = tm_store_malloc(st, BIG_RECORD)))
        _exit(99);
    memset(p, 0x5a, BIG_RECORD);
    die_fd = st->fd;
    os_calls.write_at = pwrite_or_die;
    os_calls.write_mapped = mapped_or_die;
    tm_store_commit(st);
    _exit(98);
}

static void leave_big_record(const char *path)
{
    int status = tu_run_child(commit_big_and_die, (void *)path, NULL, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
}

/* Runs the tool under a pseudo-terminal (script(1) of util-linux), whose
 * output, stderr included, goes to out; returns the tool's exit status. */
static int run_tty(const char *args)
{
    char cmd[2048];
    int pipefd[2], status;
    size_t got = 0;
    ssize_t k;
    pid_t pid;
    snprintf(cmd, sizeof cmd, "'%s' %s", TMF_TOOL, args);
    cr_assert_eq(pipe(pipefd), 0);
    if ((pid = fork()) == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0), dup2(pipefd[1], 1), dup2(pipefd[1], 2);
        close(pipefd[0]), close(pipefd[1]);
        execlp("script", "script", "-qec", cmd, "/dev/null", (char *)NULL);
        _exit(126);
    }
    close(pipefd[1]);
    while ((k = read(pipefd[0], out + got, sizeof out - 1 - got)) > 0)
        got += (size_t)k;
    out[got] = 0;
    close(pipefd[0]);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 126, "script(1) did not run: %s", out);
    return WEXITSTATUS(status);
}

/* A meter of `what`, run to its end, is in out. */
static void assert_meter(const char *what)
{
    char want[128];
    const char *p;
    snprintf(want, sizeof want, "%s: 100%% (", what);
    p = strstr(out, want);
    cr_assert_not_null(p, "no progress \"%s\" in:\n%s", want, out);
    cr_assert_not_null(strstr(p, "/s)"), "no rate in:\n%s", out);
    cr_assert_not_null(strstr(p, ", done."), "the meter did not end in:\n%s", out);
}

Test(tmf, progress_on_a_large_sparse_store, .timeout = 300)
{
    const char *path = tu_path("big.tmf"), *copy = tu_path("big.copy");
    char args[1200];
    struct stat sb;

    leave_big_record(path);
    /* Without a terminal: the work is done, and not a word of progress. */
    EXPECT(0, "replayed 1 log record(s) (1 not yet applied before)", "recover", path);
    cr_assert_null(strstr(out, "replaying"), "%s", out);
    EXPECT(0, ": clean: commit seq", "check", path);
    cr_assert_null(strstr(out, "%"), "%s", out);
    EXPECT(0, "copied", "copy", path, copy);
    cr_assert_null(strstr(out, "%"), "%s", out);
    EXPECT(0, "legend", "map", "--color=never", path);
    cr_assert_null(strstr(out, "100%"), "%s", out);

    /* On a terminal: each meter runs to 100% with its rate. */
    leave_big_record(path);
    snprintf(args, sizeof args, "recover '%s'", path);
    cr_assert_eq(run_tty(args), 0, "%s", out);
    assert_meter("replaying the log");
    cr_assert_not_null(strstr(out, "replayed 1 log record(s)"), "%s", out);
    snprintf(args, sizeof args, "check '%s'", path);
    cr_assert_eq(run_tty(args), 0, "%s", out);
    assert_meter("checking the heap");
    cr_assert_not_null(strstr(out, "4.0 GiB of 4.0 GiB"), "%s", out);
    cr_assert_not_null(strstr(out, ": clean: commit seq"), "%s", out);
    snprintf(args, sizeof args, "copy --force '%s' '%s'", path, copy);
    cr_assert_eq(run_tty(args), 0, "%s", out);
    assert_meter("copying");
    snprintf(args, sizeof args, "map --color=never '%s'", path);
    cr_assert_eq(run_tty(args), 0, "%s", out);
    assert_meter("walking the heap");

    /* --quiet, on a terminal too. */
    snprintf(args, sizeof args, "check --quiet '%s'", path);
    cr_assert_eq(run_tty(args), 0, "%s", out);
    cr_assert_null(strstr(out, "checking the heap"), "%s", out);
    snprintf(args, sizeof args, "copy -q --force '%s' '%s'", path, copy);
    cr_assert_eq(run_tty(args), 0, "%s", out);
    cr_assert_null(strstr(out, "copying"), "%s", out);

    /* The copy is whole, and as sparse as its source. */
    EXPECT(0, ": clean: commit seq", "check", copy);
    cr_assert_eq(stat(copy, &sb), 0);
    cr_assert_eq((uint64_t)sb.st_size, BIG_ARENA);
    cr_assert_lt((uint64_t)sb.st_blocks * 512, BIG_ARENA / 4, "the copy is not sparse: %lld blocks",
                 (long long)sb.st_blocks);
}
