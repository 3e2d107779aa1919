/* test_preload.c — libtmfpreload.so: real programs run unchanged under it,
 * the malloc family routes by transaction and by address, the examples keep
 * their data across restarts and kill -9. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef TMF_PRELOAD
#error "TMF_PRELOAD (the path of libtmfpreload.so) must be defined by the build"
#endif

struct run {
    int status;
    char out[65536];
    char err[4096];
};

static void drain(int fd, char *buf, size_t len)
{
    size_t got = 0;
    ssize_t n;
    while ((n = read(fd, buf + got, len - 1 - got)) > 0 && got + (size_t)n < len - 1)
        got += (size_t)n;
    if (n > 0)
        got += (size_t)n;
    buf[got < len ? got : len - 1] = 0;
    while (read(fd, (char[256]){0}, 256) > 0) /* discard the rest */
        ;
}

/* Runs argv with stdin from in (or /dev/null), optionally preloaded, in dir;
 * the kill_after_us > 0 variant sends SIGKILL after that many microseconds. */
static void run_in(struct run *r, char *const argv[], int preload, const char *store, long kill_after_us)
{
    int out[2], err[2];
    cr_assert_eq(pipe(out), 0);
    cr_assert_eq(pipe(err), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]), close(err[0]);
        if (preload)
            setenv("LD_PRELOAD", TMF_PRELOAD, 1);
        else
            unsetenv("LD_PRELOAD");
        if (store)
            setenv("TMF_PATH", store, 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(out[1]), close(err[1]);
    if (kill_after_us > 0) {
        usleep((useconds_t)kill_after_us);
        kill(pid, SIGKILL);
    }
    /* stderr is small; read stdout first, both fully */
    drain(out[0], r->out, sizeof r->out);
    drain(err[0], r->err, sizeof r->err);
    close(out[0]), close(err[0]);
    waitpid(pid, &r->status, 0);
}

static struct run *run(char *const argv[], int preload, const char *store)
{
    static struct run r;
    run_in(&r, argv, preload, store, 0);
    return &r;
}

static int exited(const struct run *r, int code)
{
    return WIFEXITED(r->status) && WEXITSTATUS(r->status) == code;
}

/* ---- programs that never call tm_* ---- */

static void same_output(char *const argv[])
{
    static struct run plain;
    struct run *pre;
    run_in(&plain, argv, 0, NULL, 0);
    pre = run(argv, 1, NULL);
    cr_assert_eq(pre->status, plain.status, "%s: status %#x under the preload, %#x without", argv[0],
                 pre->status, plain.status);
    cr_assert_str_eq(pre->out, plain.out, "%s: output differs under the preload", argv[0]);
    cr_assert_str_eq(pre->err, plain.err, "%s: stderr differs under the preload", argv[0]);
}

Test(preload, python_runs_unchanged)
{
    char *argv[] = {"/usr/bin/python3", "-c",
                    "import json,hashlib;d={str(i):[i]*i for i in range(300)};"
                    "print(hashlib.sha256(json.dumps(d,sort_keys=True).encode()).hexdigest())",
                    NULL};
    same_output(argv);
}

Test(preload, perl_runs_unchanged)
{
    char *argv[] = {"perl", "-e", "my %h; $h{$_} = 'x' x $_ for 1..2000; print join(',', map { length $h{$_} } sort { $a <=> $b } keys %h), qq{\\n}", NULL};
    same_output(argv);
}

Test(preload, sort_runs_unchanged)
{
    char script[600];
    snprintf(script, sizeof script, "seq 1 20000 | sed 's/$/ line/' | shuf --random-source=/dev/zero | sort -n | md5sum");
    char *argv[] = {"sh", "-c", script, NULL};
    same_output(argv);
}

Test(preload, gcc_compiles_unchanged, .timeout = 120)
{
    char script[1200];
    snprintf(script, sizeof script,
             "cd '%s' && printf '#include <stdio.h>\\nint main(void){puts(\"hi\");return 0;}\\n' > h.c && "
             "gcc -O2 -o h h.c && ./h && rm -f h",
             tu_dir());
    char *argv[] = {"sh", "-c", script, NULL};
    same_output(argv);
}

Test(preload, git_runs_unchanged, .timeout = 120)
{
    char script[1200];
    snprintf(script, sizeof script,
             "cd '%s' && rm -rf g && git init -q g && cd g && echo hello > f && git add f && "
             "git -c user.name=t -c user.email=t@t commit -qm m && git cat-file -p HEAD:f && git log --format=%%s",
             tu_dir());
    char *argv[] = {"sh", "-c", script, NULL};
    same_output(argv);
}

/* ---- the malloc family ---- */

Test(preload, malloc_family_routes_by_transaction_and_address)
{
    char *argv[] = {TMF_PROGS "/preload_prog", "family", NULL};
    struct run *r = run(argv, 1, tu_path("family.tmf"));
    cr_assert(exited(r, 0), "status %#x\n%s", r->status, r->err);
}

/* Until a store opens, the program calls glibc directly (preload/direct.c);
 * from then on, the preload; also when its PLT slots are read-only. */
static void direct(const char *prog)
{
    char *argv[] = {(char *)prog, "direct", NULL};
    struct run *r = run(argv, 1, tu_path("direct.tmf"));
    cr_assert(exited(r, 0), "%s: status %#x\n%s", prog, r->status, r->err);
}

Test(preload, calls_go_to_glibc_directly_until_a_store_opens)
{
    direct(TMF_PROGS "/preload_prog");
    direct(TMF_PROGS "/preload_prog_now");
}

/* A store opened by a library's constructor, before the preload's own ran:
 * the preload leaves its wrappers in place. */
Test(preload, a_store_opened_before_the_preload_loads_is_routed)
{
    char *argv[] = {TMF_PROGS "/early_prog", NULL};
    struct run *r = run(argv, 1, tu_path("early.tmf"));
    cr_assert(exited(r, 0), "status %#x\n%s", r->status, r->err);
}

Test(preload, a_store_outside_the_window_is_refused)
{
    char *argv[] = {TMF_PROGS "/preload_prog", "outside", NULL};
    struct run *r = run(argv, 1, tu_path("outside.tmf"));
    cr_assert(exited(r, 0), "status %#x\n%s", r->status, r->err);
    cr_assert_not_null(strstr(r->err, "tmfalloc: a store reserved at 0x0000600000000000 lies outside "
                                      "[0x200000000000, 0x400000000000)"), "%s", r->err);
    cr_assert_not_null(strstr(r->err, "TMF_ADDR"), "%s", r->err);
}

Test(preload, other_threads_keep_glibc_during_a_transaction, .timeout = 120)
{
    char *argv[] = {TMF_PROGS "/preload_prog", "threads", NULL};
    struct run *r = run(argv, 1, tu_path("threads.tmf"));
    cr_assert(exited(r, 0), "status %#x\n%s", r->status, r->err);
}

Test(preload, free_outside_a_transaction_is_reported)
{
    char *argv[] = {TMF_PROGS "/preload_prog", "freeout", NULL};
    struct run *r = run(argv, 1, tu_path("freeout.tmf"));
    char addr[64];
    const char *p = strstr(r->err, "freeing ");
    cr_assert(WIFSIGNALED(r->status) && WTERMSIG(r->status) == SIGABRT, "status %#x\n%s", r->status, r->err);
    cr_assert_not_null(p, "%s", r->err);
    cr_assert_eq(sscanf(p, "freeing %63s", addr), 1);
    cr_assert_not_null(strstr(strstr(r->err, "tmfalloc:") ? strstr(r->err, "tmfalloc:") : "", addr + 2),
                       "the report does not name %s:\n%s", addr, r->err);
}

/* ---- the examples ---- */

static struct run *kv(const char *store, const char *a, const char *b, const char *c)
{
    char *argv[] = {TMF_EXAMPLES "/kv", (char *)a, (char *)b, (char *)c, NULL};
    return run(argv, 1, store);
}

Test(preload, kv_example_keeps_its_data)
{
    const char *store = tu_path("kv.tmf");
    char *plain[] = {TMF_EXAMPLES "/kv", "list", NULL};
    cr_assert(exited(kv(store, "put", "b", "two"), 0));
    cr_assert(exited(kv(store, "put", "a", "one"), 0));
    cr_assert(exited(kv(store, "put", "b", "deux"), 0));
    cr_assert(exited(kv(store, "put", "c", "three"), 0));
    cr_assert(exited(kv(store, "del", "a", NULL), 0));
    cr_assert(exited(kv(store, "del", "zz", NULL), 1));
    struct run *r = kv(store, "list", NULL, NULL);
    cr_assert(exited(r, 0), "%s", r->err);
    cr_assert_str_eq(r->out, "b=deux\nc=three\n(2 keys)\n");
    r = kv(store, "get", "c", NULL);
    cr_assert_str_eq(r->out, "three\n");
    r = run(plain, 0, store); /* without the preload it says what it needs */
    cr_assert(exited(r, 2));
}

Test(preload, stl_map_example_keeps_its_data)
{
    const char *store = tu_path("stl.tmf");
    char *a1[] = {TMF_EXAMPLES "/stlmap", "x=1", "a_key_much_longer_than_the_small_string_buffer=2", NULL};
    char *a2[] = {TMF_EXAMPLES "/stlmap", "x=3", "y=4", NULL};
    cr_assert(exited(run(a1, 1, store), 0));
    struct run *r = run(a2, 1, store);
    cr_assert(exited(r, 0), "%s", r->err);
    cr_assert_str_eq(r->out, "a_key_much_longer_than_the_small_string_buffer: 2\nx: 1 3\ny: 4\n");
}

Test(preload, stl_map_example_rolls_back_a_bad_argument)
{
    const char *store = tu_path("stlbad.tmf");
    char *a1[] = {TMF_EXAMPLES "/stlmap", "x=1", NULL};
    char *a2[] = {TMF_EXAMPLES "/stlmap", "y=2", "x=3", "oops", NULL};
    char *a3[] = {TMF_EXAMPLES "/stlmap", "z=4", NULL};
    char *list[] = {TMF_EXAMPLES "/stlmap", NULL};
    cr_assert(exited(run(a1, 1, store), 0));
    struct run *r = run(a2, 1, store);
    cr_assert(exited(r, 2), "status %#x\n%s", r->status, r->err);
    cr_assert_str_eq(r->err, "stlmap: expected KEY=NUMBER, got oops\n");
    r = run(a3, 0, store); /* without the preload the vector is not in the arena */
    cr_assert(exited(r, 1), "status %#x\n%s", r->status, r->err);
    cr_assert_not_null(strstr(r->err, "LD_PRELOAD"), "%s", r->err);
    r = run(list, 1, store);
    cr_assert(exited(r, 0), "%s", r->err);
    cr_assert_str_eq(r->out, "x: 1\n");
}

Test(preload, cpp_exceptions_outlive_the_rollback)
{
    /* Thrown inside tmf::run, each lives in the arena with its message;
     * run rolls back and rethrows a copy made outside it. */
    const char *store = tu_path("cppexc.tmf");
    char *argv[] = {TMF_PROGS "/cpp_preload_prog", NULL};
    char want[4096];
    for (int pass = 1; pass <= 2; pass++) {
        struct run *r = run(argv, 1, store);
        cr_assert(exited(r, 0), "status %#x\n%s", r->status, r->err);
        snprintf(want, sizeof want,
                 "runtime: std::runtime_error: runtime, %s; unchanged\n"
                 "invalid: std::invalid_argument: invalid, %s; unchanged\n"
                 "system: std::system_error %d: opening a file: %s; unchanged\n"
                 "tmf: tmf::error %d: growing the arena: %s; unchanged\n"
                 "bare: tmf::error %d: %s; unchanged\n"
                 "derived: std::runtime_error: my error, with a message longer than the small-string buffer; unchanged\n"
                 "int: tmf::error %d: tmf::run: rolled back by an exception that is not a std::exception: %s; unchanged\n"
                 "bad_alloc: std::bad_alloc; unchanged\n"
                 "nested: tmf::error %d: tmf::transaction::commit: rolled back, a nested transaction failed: %s; unchanged\n"
                 "none: nothing; committed\n"
                 "heap: clean\n"
                 "size: %d\n",
                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy", ENOENT,
                 strerror(ENOENT), TM_EFULL, tm_strerror(TM_EFULL), TM_ECORRUPT, tm_strerror(TM_ECORRUPT), ECANCELED, tm_strerror(ECANCELED), ECANCELED,
                 tm_strerror(ECANCELED), 1000 * pass);
        cr_assert_str_eq(r->out, want);
    }
}

Test(preload, uthash_example_keeps_its_data)
{
    const char *store = tu_path("users.tmf");
    char *add1[] = {TMF_EXAMPLES "/users", "add", "7", "alice", NULL};
    char *add2[] = {TMF_EXAMPLES "/users", "add", "9", "bob", NULL};
    char *del[] = {TMF_EXAMPLES "/users", "del", "7", NULL};
    char *find[] = {TMF_EXAMPLES "/users", "find", "9", NULL};
    cr_assert(exited(run(add1, 1, store), 0));
    cr_assert(exited(run(add2, 1, store), 0));
    cr_assert(exited(run(del, 1, store), 0));
    struct run *r = run(find, 1, store);
    cr_assert(exited(r, 0), "%s", r->err);
    cr_assert_str_eq(r->out, "9 bob\n");
}

Test(preload, kv_example_under_kill9, .timeout = 300)
{
    /* puts run one after another; some are killed at random moments.  Every
     * put that exited 0 must be there afterwards, with its value, and the
     * list must always be readable and sorted. */
    const char *store = tu_path("kvk.tmf");
    uint64_t seed = (uint64_t)time(NULL);
    int acked[200] = {0}, kills = 0;
    for (int i = 0; i < 200; i++) {
        char key[32], val[64];
        char *argv[] = {TMF_EXAMPLES "/kv", "put", key, val, NULL};
        static struct run r;
        snprintf(key, sizeof key, "k%03d", i);
        snprintf(val, sizeof val, "value-%d-%llu", i, (unsigned long long)seed);
        long kill_after = i % 3 == 1 ? (long)(tu_rand(&seed) % 3000) : 0;
        run_in(&r, argv, 1, store, kill_after);
        acked[i] = exited(&r, 0);
        kills += WIFSIGNALED(r.status);
        if (i % 10 == 9 || kill_after) {
            struct run *l = kv(store, "list", NULL, NULL);
            cr_assert(exited(l, 0), "after put %d: list failed: %s", i, l->err);
            for (int j = 0; j <= i; j++) {
                char line[128];
                snprintf(line, sizeof line, "k%03d=value-%d-", j, j);
                if (acked[j])
                    cr_assert_not_null(strstr(l->out, line), "put %d was acknowledged but is gone", j);
            }
        }
    }
    cr_log_info("%d of 200 puts killed", kills);
    cr_assert_gt(kills, 0, "no put was ever killed: the test proves nothing");
}

/* ---- libc's own memory, and what libc hands over ---- */

Test(preload, libc_keeps_its_own_memory_out_of_the_arena)
{
    char *argv[] = {TMF_PROGS "/preload_prog", "libc", NULL};
    struct run *r = run(argv, 1, tu_path("libc.tmf"));
    cr_assert(exited(r, 0), "status %#x\n%s", r->status, r->err);
    cr_assert_str_eq(r->out, "stdout's first use: its buffer\nafter the commit\n");
}

Test(preload, what_libc_hands_over_persists)
{
    char *argv[] = {TMF_PROGS "/preload_prog", "hand", NULL};
    const char *store = tu_path("hand.tmf");
    for (int pass = 1; pass <= 2; pass++) { /* fills the root; finds it intact and frees it */
        struct run *r = run(argv, 1, store);
        cr_assert(exited(r, 0), "pass %d: status %#x\n%s", pass, r->status, r->err);
    }
}

/* ---- a process whose malloc is not routed ---- */

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

Test(preload, glibc_blocks_committed_without_the_preload_are_warned_of_once)
{
    char *unrouted[] = {TMF_PROGS "/preload_prog", "unrouted", NULL};
    char *tmonly[] = {TMF_PROGS "/preload_prog", "tmonly", NULL};
    struct run *r = run(unrouted, 0, tu_path("unrouted.tmf"));
    cr_assert(exited(r, 0), "status %#x\n%s", r->status, r->err);
    cr_assert_eq(count(r->err, "LD_PRELOAD=libtmfpreload.so"), 1, "%s", r->err);
    cr_assert_eq(count(r->err, "tm_malloc"), 1, "%s", r->err);
    r = run(tmonly, 0, tu_path("tmonly.tmf")); /* tm_malloc alone: nothing to warn of */
    cr_assert(exited(r, 0), "status %#x\n%s", r->status, r->err);
    cr_assert_str_eq(r->err, "");
    r = run(unrouted, 1, tu_path("routed.tmf")); /* under the preload malloc is the arena's */
    cr_assert(exited(r, 0), "status %#x\n%s", r->status, r->err);
    cr_assert_str_eq(r->err, "");
}

/* ---- code pointers across restarts ---- */

/* These tests mean something only where the kernel randomises addresses
 * (Debian's default): elsewhere every run loads everything at one place. */
static void need_randomisation(void)
{
    char c = 0;
    FILE *f = fopen("/proc/sys/kernel/randomize_va_space", "r");
    if (f) {
        c = (char)fgetc(f);
        fclose(f);
    }
    if (c != '2')
        cr_skip_test("kernel.randomize_va_space is not 2: nothing would move between runs");
}

/* Runs argv under the preload with TMF_ASLR=keep, which leaves
 * randomisation on: the store must be refused, naming module, with an
 * exit status of the program's, never a signal. */
static void refused_naming(char *const argv[], const char *store, const char *module, const char *fate)
{
    struct run *r;
    setenv("TMF_ASLR", "keep", 1);
    r = run(argv, 1, store);
    unsetenv("TMF_ASLR");
    cr_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) != 0, "status %#x\n%s", r->status, r->err);
    cr_assert_not_null(strstr(r->err, module), "the refusal does not name %s:\n%s", module, r->err);
    cr_assert_not_null(strstr(r->err, fate), "the refusal does not say \"%s\":\n%s", fate, r->err);
    cr_assert_not_null(strstr(r->err, tm_strerror(TM_ELAYOUT)), "%s", r->err);
}

static void shapes_in(const char *bin, const char *store, const char *a, const char *b, const char *c,
                      const char *d, const char *want)
{
    char *argv[] = {(char *)bin, (char *)a, (char *)b, (char *)c, (char *)d, NULL};
    struct run *r = run(argv, 1, store);
    cr_assert(exited(r, 0), "%s %s: status %#x\n%s", bin, a, r->status, r->err);
    if (want)
        cr_assert_str_eq(r->out, want);
}

Test(preload, virtual_functions_survive_restarts)
{
    const char *store = tu_path("shapes.tmf");
    char *list[] = {TMF_EXAMPLES "/shapes", "list", NULL};
    need_randomisation();
    shapes_in(TMF_EXAMPLES "/shapes", store, "add", "circle", "1", NULL, NULL);
    shapes_in(TMF_EXAMPLES "/shapes", store, "add", "square", "2", NULL, NULL);
    shapes_in(TMF_EXAMPLES "/shapes", store, "add", "rect", "2", "3", NULL);
    shapes_in(TMF_EXAMPLES "/shapes", store, "list", NULL, NULL, NULL,
              "circle of radius 1.000000: 3.14 m2\nsquare of side 2.000000: 4.00 m2\n"
              "rectangle 2.000000 x 3.000000: 6.00 m2\n3 shapes, 131416 cm2\n");
    refused_naming(list, store, TMF_EXAMPLES "/shapes", "this process loads it at 0x");
}

Test(preload, a_rebuilt_program_is_refused_naming_itself)
{
    /* The same path, another build: the vtables moved. */
    const char *store = tu_path("rebuilt.tmf");
    char bin[4200], cmd[9000];
    snprintf(bin, sizeof bin, "%s/shapes", tu_dir());
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", TMF_EXAMPLES "/shapes", bin);
    cr_assert_eq(system(cmd), 0);
    shapes_in(bin, store, "add", "circle", "1", NULL, NULL);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", TMF_EXAMPLES "/shapes_rebuilt", bin);
    cr_assert_eq(system(cmd), 0);
    char *list[] = {bin, "list", NULL};
    struct run *r = run(list, 1, store);
    cr_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 1, "status %#x\n%s", r->status, r->err);
    cr_assert_not_null(strstr(r->err, bin), "%s", r->err);
    cr_assert_not_null(strstr(r->err, "this process loads another build of it"), "%s", r->err);
    /* the store is as it was: the build that made it still uses it */
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", TMF_EXAMPLES "/shapes", bin);
    cr_assert_eq(system(cmd), 0);
    shapes_in(bin, store, "list", NULL, NULL, NULL, "circle of radius 1.000000: 3.14 m2\n1 shapes, 31416 cm2\n");
}

Test(preload, a_table_of_function_pointers_survives_restarts)
{
    const char *store = tu_path("ops.tmf");
    char *add1[] = {TMF_EXAMPLES "/ops", "add", "mul", "3", NULL};
    char *add2[] = {TMF_EXAMPLES "/ops", "add", "sub", "0.5", NULL};
    char *go[] = {TMF_EXAMPLES "/ops", "run", "10", NULL};
    char *rebuilt[] = {TMF_EXAMPLES "/ops_rebuilt", "run", "10", NULL};
    struct run *r;
    need_randomisation();
    cr_assert(exited(run(add1, 1, store), 0));
    cr_assert(exited(run(add2, 1, store), 0));
    for (int i = 0; i < 3; i++) {
        r = run(go, 1, store);
        cr_assert(exited(r, 0), "status %#x\n%s", r->status, r->err);
        cr_assert_str_eq(r->out, "29.5\n");
    }
    refused_naming(go, store, TMF_EXAMPLES "/ops", "this process loads it at 0x");
    r = run(rebuilt, 1, store);
    cr_assert(exited(r, 1), "status %#x\n%s", r->status, r->err);
    cr_assert_not_null(strstr(r->err, TMF_EXAMPLES "/ops (build id"), "%s", r->err);
    cr_assert_not_null(strstr(r->err, "this process does not load it"), "%s", r->err);
}

Test(preload, tmf_info_shows_the_code_layout)
{
    const char *store = tu_path("info.tmf");
    char *add[] = {TMF_EXAMPLES "/ops", "add", "add", "1", NULL};
    char *info[] = {TMF_TOOL, "info", (char *)store, NULL};
    char want[4200];
    struct run *r;
    cr_assert(exited(run(add, 1, store), 0));
    r = run(info, 0, NULL);
    cr_assert(exited(r, 0), "status %#x\n%s", r->status, r->err);
    snprintf(want, sizeof want, "  %s\n    loaded at 0x555555554000", TMF_EXAMPLES "/ops");
    cr_assert_not_null(strstr(r->out, want), "%s", r->out);
    cr_assert_not_null(strstr(r->out, "code pointers:   2 in the live heap, into 1 module(s)"), "%s", r->out);
}

/* An embedded VM and a database engine: their state points into their
 * libraries' code and static data. */
static void three_restarts(const char *prog, const char *store, const char *const want[3], const char *lib)
{
    char *argv[] = {(char *)prog, NULL};
    need_randomisation();
    for (int i = 0; i < 3; i++) {
        struct run *r = run(argv, 1, store);
        cr_assert(exited(r, 0), "run %d: status %#x\n%s", i + 1, r->status, r->err);
        cr_assert_str_eq(r->out, want[i]);
    }
    refused_naming(argv, store, lib, "this process loads it at 0x");
}

#ifdef TMF_HAVE_LUA
Test(preload, a_lua_vm_survives_restarts)
{
    static const char *const want[3] = {"1 run 1 10 function\n", "2 run 1,run 2 20 function\n",
                                        "3 run 1,run 2,run 3 30 function\n"};
    three_restarts(TMF_PROGS "/lua_prog", tu_path("lua.tmf"), want, "liblua5.4.so");
}
#endif

#ifdef TMF_HAVE_SQLITE
Test(preload, an_sqlite_memory_database_survives_restarts)
{
    static const char *const want[3] = {"1 run 1\n", "2 run 1,run 2\n", "3 run 1,run 2,run 3\n"};
    three_restarts(TMF_PROGS "/sqlite_prog", tu_path("sqlite.tmf"), want, "libsqlite3.so");
}
#endif

/* ---- the re-execution ---- */

Test(preload, a_tmfalloc_program_runs_without_randomisation)
{
    /* The preload executes a program that uses tmfalloc once more, with
     * ADDR_NO_RANDOMIZE (0x0040000) set, the same arguments and
     * environment; the programs it starts inherit it.  Others start as
     * they are, unless TMF_ASLR=off; TMF_ASLR=keep leaves every program
     * randomised. */
    char *aware[] = {TMF_PROGS "/preload_prog", "aslr", "a b", "c", NULL};
    char *plain[] = {"sh", "-c", "echo \"$0 $1 $TMF_PROBE\"; cat /proc/self/personality", "a b", "c", NULL};
    struct run *r;
    need_randomisation();
    setenv("TMF_PROBE", "kept", 1);
    r = run(aware, 1, tu_path("aslr.tmf"));
    cr_assert(exited(r, 0), "status %#x\n%s", r->status, r->err);
    cr_assert_str_eq(r->out, "a b|c|kept\n00040000\n");
    r = run(plain, 1, NULL);
    cr_assert_str_eq(r->out, "a b c kept\n00000000\n");
    setenv("TMF_ASLR", "off", 1);
    r = run(plain, 1, NULL);
    cr_assert_str_eq(r->out, "a b c kept\n00040000\n");
    setenv("TMF_ASLR", "keep", 1);
    r = run(aware, 1, tu_path("aslr.tmf"));
    unsetenv("TMF_ASLR");
    unsetenv("TMF_PROBE");
    cr_assert(exited(r, 0), "status %#x\n%s", r->status, r->err);
    cr_assert_str_eq(r->out, "a b|c|kept\n00000000\n");
}
