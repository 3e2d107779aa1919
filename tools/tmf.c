/*
 * tmf.c — the tmf command-line tool: command dispatch, option parsing, help
 * texts, and opening a store for inspection with a precise diagnosis of why
 * it cannot be opened.  The subcommands live in tmf_inspect.c (info, stats,
 * check), tmf_copy.c (copy, recover) and tmf_map.c (map); their progress
 * meters in tmf_progress.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tmf.h"

struct command {
    const char *name;
    tmf_cmd *run;
    int operands;       /* 1: FILE, 2: FILE DEST */
    const char *options; /* accepted: j json, f force, p png, w width, c color, q quiet */
    const char *help;
};

#define PROGRESS_HELP                                                                 \
    "On a large store, progress (bytes done of the total, and the rate) goes to\n"   \
    "stderr when it is a terminal; --quiet (-q) turns it off.\n"

static const struct command commands[] = {
    {"info", tmf_info, 1, "",
     "usage: tmf info FILE\n"
     "Prints the header (magic, version, base, max size, store id, checkpoint),\n"
     "the superblock (commit seq, arena size, root), heap statistics and the\n"
     "state of the redo log (records after the checkpoint, recovery pending).\n"},
    {"check", tmf_check, 1, "q",
     "usage: tmf check [--quiet] FILE\n"
     "Checks the header slots, the superblock, the redo log and the whole heap,\n"
     "read-only, inside a read transaction (writers elsewhere wait for it).\n"
     "Prints one line.  Exit 0: clean (a note says so when recovery is pending:\n"
     "the heap is then not checked); 1: damaged; 2: unusable (cannot be opened).\n"
     PROGRESS_HELP},
    {"recover", tmf_recover, 1, "q",
     "usage: tmf recover [--quiet] FILE\n"
     "Opens the store read-write: the first opener replays the redo log and\n"
     "checkpoints; when other processes have it open, a commit a dead writer\n"
     "left unapplied is healed and the rest is left to them.  Reports what it did.\n"
     PROGRESS_HELP},
    {"stats", tmf_stats, 1, "j",
     "usage: tmf stats [--json] FILE\n"
     "Prints the heap and log statistics, one \"name value\" per line, or as a\n"
     "JSON object with --json.\n"},
    {"copy", tmf_copy, 2, "fq",
     "usage: tmf copy [--force] [--quiet] FILE DEST\n"
     "Writes a consistent copy of the store to DEST (and a fresh, empty log\n"
     "DEST.log) while writers keep running: the bytes are read inside a read\n"
     "transaction, written to DEST.tmp, synced and renamed into place; holes\n"
     "in the store file stay holes in the copy.  When recovery is pending, the\n"
     "log's durable commits are replayed into the copy (the store is left as is).\n"
     "An existing DEST is refused unless --force is given.\n"
     PROGRESS_HELP},
    {"map", tmf_map, 1, "pwcq",
     "usage: tmf map [--width N] [--color=auto|always|never] [--png OUT.png] [--quiet] FILE\n"
     "Draws the arena: header, superblock, used and free blocks, small-object\n"
     "spans (their used and free slots) and the fence, one character cell per\n"
     "chunk of the arena, with a legend; or a PNG drawn by gnuplot (--png).\n"
     PROGRESS_HELP},
};

static void usage(FILE *f)
{
    size_t i;
    fputs("usage: tmf COMMAND [OPTIONS] FILE...\n"
          "Inspects and maintains tmfalloc stores.  Commands:\n", f);
    for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
    {
        const char *h = commands[i].help + strlen("usage: tmf ");
        fprintf(f, "  %.*s\n", (int)(strchr(h, '\n') - h), h);
    }
    fputs("\"tmf COMMAND --help\" describes one.  On a large store, check, recover, copy\n"
          "and map show their progress on stderr when it is a terminal (--quiet: never).\n"
          "Exit status: 0 success, 1 damaged or failed, 2 store unusable, 64 usage error.\n", f);
}

void tmf_err(const char *a, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "tmf: %s: ", a);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int bad_usage(const struct command *c, const char *fmt, const char *arg)
{
    fprintf(stderr, "tmf %s: ", c->name);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", c->help);
    return EXIT_USAGE;
}

/* --name=value or --name value: the value, or NULL when missing. */
static const char *opt_value(const char *arg, size_t n, char **argv, int *i, int argc)
{
    if (arg[n] == '=')
        return arg + n + 1;
    if (arg[n] == 0 && *i + 1 < argc)
        return argv[++*i];
    return NULL;
}

static int parse_option(const struct command *c, struct tmf_args *a, char **argv, int *i, int argc)
{
    const char *arg = argv[*i], *v;
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h"))
        return a->help = 1, 0;
    if (strchr(c->options, 'j') && !strcmp(arg, "--json"))
        return a->json = 1, 0;
    if (strchr(c->options, 'f') && !strcmp(arg, "--force"))
        return a->force = 1, 0;
    if (strchr(c->options, 'q') && (!strcmp(arg, "--quiet") || !strcmp(arg, "-q")))
        return a->quiet = 1, 0;
    if (strchr(c->options, 'p') && !strncmp(arg, "--png", 5) && (arg[5] == 0 || arg[5] == '='))
        return (a->png = opt_value(arg, 5, argv, i, argc)) ? 0 : -1;
    if (strchr(c->options, 'w') && !strncmp(arg, "--width", 7) && (arg[7] == 0 || arg[7] == '=')) {
        char *end;
        long w;
        if (!(v = opt_value(arg, 7, argv, i, argc)))
            return -1;
        w = strtol(v, &end, 10);
        if (*end || w < 8 || w > 1024)
            return -1;
        return a->width = (unsigned)w, 0;
    }
    if (strchr(c->options, 'c') && !strncmp(arg, "--color", 7)) {
        v = arg[7] == '=' ? arg + 8 : arg[7] == 0 ? "always" : "";
        a->color = !strcmp(v, "always") ? 1 : !strcmp(v, "never") ? 0 : !strcmp(v, "auto") ? -1 : 2;
        return a->color == 2 ? -1 : 0;
    }
    return -1;
}

static int run(const struct command *c, int argc, char **argv)
{
    struct tmf_args a = {NULL, NULL, NULL, 0, 0, 0, 0, -1, 64};
    int i, nops = 0, dashdash = 0;
    for (i = 0; i < argc; i++) {
        if (!dashdash && !strcmp(argv[i], "--")) {
            dashdash = 1;
        } else if (!dashdash && argv[i][0] == '-' && argv[i][1]) {
            if (parse_option(c, &a, argv, &i, argc) < 0)
                return bad_usage(c, "bad option or value: %s", argv[i]);
        } else if (nops++ == 0) {
            a.file = argv[i];
        } else if (nops == 2 && c->operands == 2) {
            a.dest = argv[i];
        } else {
            return bad_usage(c, "unexpected operand: %s", argv[i]);
        }
    }
    if (a.help) {
        fputs(c->help, stdout);
        return EXIT_CLEAN;
    }
    if (nops < c->operands)
        return bad_usage(c, "%s", c->operands == 2 ? "FILE and DEST are needed" : "FILE is needed");
    tmf_progress_quiet(a.quiet);
    return c->run(&a);
}

int main(int argc, char **argv)
{
    size_t i;
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return EXIT_CLEAN;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("tmf (tmfalloc) %d.%d\n", TMFALLOC_VERSION_MAJOR, TMFALLOC_VERSION_MINOR);
        return EXIT_CLEAN;
    }
    tm__layout_ignore = 1; /* the tool never follows the data's pointers into code */
    for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return run(&commands[i], argc - 2, argv + 2);
    fprintf(stderr, "tmf: unknown command: %s\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}

/* ---- opening and diagnosis ---- */

/* Reads the first two pages of path (zero-filled past its end). */
static int read_head(const char *path, uint8_t *buf)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;
    if (fd < 0)
        return -1;
    memset(buf, 0, 2 * PAGE);
    n = pread(fd, buf, 2 * PAGE, 0);
    close(fd);
    return n < 0 ? -1 : 0;
}

/* Whether the superblock is as a new store's: no commit ever reached it. */
static int super_as_new(const struct tm_super *sb, const struct hdr_slot *h)
{
    uint8_t page[PAGE];
    struct tm_super *fresh = (struct tm_super *)page;
    memset(page, 0, PAGE);
    fresh->magic = SUPER_MAGIC;
    fresh->size = h->ckpt_size;
    fresh->checksum = super_checksum(fresh);
    return memcmp(page, sb, PAGE) == 0;
}

static int diagnose_log(const char *path, const struct hdr_slot *h, const struct tm_super *sb, char *msg,
                        size_t len)
{
    char lp[PATH_MAX];
    uint8_t head[sizeof(struct log_head)];
    int fd, r;
    snprintf(lp, sizeof lp, "%s.log", path);
    if ((fd = open(lp, O_RDONLY | O_CLOEXEC)) < 0) {
        int e = errno;
        if (e == ENOENT && h->gen == 1 && h->ckpt_seq == 0 && super_as_new(sb, h)) {
            snprintf(msg, len, "recovery pending: the store's creation was cut short before its redo log %s "
                     "was made; its first read-write open ('tmf recover') makes it", lp);
            return TMF_UNFINISHED;
        }
        snprintf(msg, len, "redo log %s: %s", lp, strerror(e));
        return EXIT_DAMAGED;
    }
    r = os_pread_all(fd, head, sizeof head, 0);
    close(fd);
    if (r < 0 || log_head_check(head, sizeof head, h->store_id) < 0) {
        snprintf(msg, len, "redo log %s has no valid log header for this store", lp);
        return EXIT_DAMAGED;
    }
    snprintf(msg, len, "redo log %s is shorter than its header page", lp);
    return EXIT_DAMAGED;
}

/* TM_ECORRUPT: which part? */
static int diagnose_corrupt(const char *path, const uint8_t *buf, char *msg, size_t len)
{
    const struct tm_super *sb = (const void *)(buf + PAGE);
    struct hdr_slot h;
    const char *why = NULL;
    int r = hdr_pick(buf, &h);
    if (!hdr_slot_ok(buf, 0, &h) && !hdr_slot_ok(buf, 1, &h)) {
        snprintf(msg, len, "damaged: both header slots are corrupt (bad checksum)");
        return EXIT_DAMAGED;
    }
    if (r < 0) {
        snprintf(msg, len, "damaged: the header has impossible values (version, page size, id)");
        return EXIT_DAMAGED;
    }
    if (super_check(sb, &h, UINT64_MAX, &why) < 0) {
        snprintf(msg, len, "damaged: %s (arena size %llu)", why, (unsigned long long)sb->size);
        return EXIT_DAMAGED;
    }
    return diagnose_log(path, &h, sb, msg, len);
}

int tmf_diagnose(const char *path, int code, char *msg, size_t len)
{
    uint8_t buf[2 * PAGE];
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(msg, len, "unusable: is a directory, not a store");
        return EXIT_UNUSABLE;
    }
    if (stat(path, &sb) == 0 && sb.st_size == 0) {
        snprintf(msg, len, "unusable: an empty file, not a tmfalloc store");
        return EXIT_UNUSABLE;
    }
    if (code == TM_ECORRUPT && read_head(path, buf) == 0)
        return diagnose_corrupt(path, buf, msg, len);
    if (code == TM_ECORRUPT) {
        snprintf(msg, len, "damaged: %s", tm_strerror(code));
        return EXIT_DAMAGED;
    }
    snprintf(msg, len, "unusable: %s", tm_strerror(code));
    return EXIT_UNUSABLE;
}

int tmf_open_ro(const char *path, tm_store **st, char *msg, size_t len)
{
    tm_options o;
    char buf[512];
    int r, ex;
    tm_options_init(&o);
    o.read_only = 1;
    o.no_create = 1;
    if ((r = tm_open(path, &o, st)) == 0)
        return EXIT_CLEAN;
    ex = tmf_diagnose(path, r, msg ? msg : buf, msg ? len : sizeof buf);
    if (!msg)
        tmf_err(path, "%s", buf);
    return ex;
}
