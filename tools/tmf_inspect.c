/*
 * tmf_inspect.c — the read-only subcommands: info, stats, check.
 *
 * Each opens the store read-only (tm_options.read_only), takes a read
 * transaction — no commit is applied meanwhile, so header, superblock and
 * heap agree — and takes a snapshot: header page, superblock, heap
 * statistics and a scan of the log.  When a dead writer left a durable
 * commit unapplied, the read transaction is refused (EROFS): the store file
 * may then be half written, so the heap is not read, and the tools say that
 * recovery is pending.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "tmf.h"

struct snap {
    uint8_t page0[PAGE];
    struct hdr_slot hdr;
    struct tm_super sb;
    tm_stats_t stats;
    struct log_scan log;
    struct tm_committed c;
    int pending;  /* the read transaction was refused: recovery needed */
    int in_tx;
};

/* Starts a read transaction and reads everything but the heap walk. */
static int take_snap(tm_store *st, struct snap *s, char *msg, size_t len)
{
    struct tm_view v;
    int r;
    memset(s, 0, sizeof *s);
    r = tmf_read_begin(st, &s->log);
    if (r != 0 && r != EROFS) {
        snprintf(msg, len, "unusable: cannot start a read transaction: %s", tm_strerror(r));
        return EXIT_UNUSABLE;
    }
    s->in_tx = r == 0;
    s->pending = r == EROFS;
    inspect_view(st, &v);
    if ((r = os_pread_all(v.fd, s->page0, PAGE, 0)) < 0) {
        snprintf(msg, len, "unusable: cannot read the header: %s", strerror(-r));
        return EXIT_UNUSABLE;
    }
    s->hdr = v.hdr;
    inspect_state(st, &s->c);
    memcpy(&s->sb, v.sb, sizeof s->sb);
    if (!s->pending)
        tm_store_stats(st, &s->stats);
    s->stats.log_bytes = s->log.bytes;
    return EXIT_CLEAN;
}

/* Opens and snapshots; on failure returns the exit code (or TMF_UNFINISHED)
 * with the diagnosis in msg. */
static int open_snap(const char *path, tm_store **st, struct snap *s, char *msg, size_t len)
{
    int ex = tmf_open_ro(path, st, msg, len);
    if (ex != EXIT_CLEAN)
        return ex;
    if ((ex = take_snap(*st, s, msg, len)) != EXIT_CLEAN)
        tm_close(*st);
    return ex;
}

/* The same for the commands that need the store open: a failure is
 * reported on stderr. */
static int open_snap_or_say(const char *path, tm_store **st, struct snap *s)
{
    char msg[512];
    int ex = open_snap(path, st, s, msg, sizeof msg);
    if (ex != EXIT_CLEAN)
        tmf_err(path, "%s", msg);
    return ex == TMF_UNFINISHED ? EXIT_DAMAGED : ex;
}

static void close_snap(tm_store *st, struct snap *s)
{
    if (s->in_tx)
        tm_store_read_end(st);
    tm_close(st);
}

/* ---- info ---- */

static void info_log(const tm_store *st, const struct snap *s)
{
    const struct log_scan *l = &s->log;
    printf("log file:        %s.log, %llu bytes\n", tm_store_path(st), (unsigned long long)l->log_size);
    if (l->records)
        printf("log records:     %llu after the checkpoint (seq %llu..%llu, %llu bytes), %llu applied\n",
               (unsigned long long)l->records, (unsigned long long)l->first_seq,
               (unsigned long long)l->last_seq, (unsigned long long)l->bytes,
               (unsigned long long)l->applied);
    else
        printf("log records:     none after the checkpoint\n");
    if (l->corrupt)
        printf("log damage:      corrupt committed record seq %llu at offset %llu\n",
               (unsigned long long)l->bad_seq, (unsigned long long)l->bad_off);
    else if (l->torn) /* what a crash leaves of a commit that never returned: not damage */
        printf("log tail:        torn uncommitted record seq %llu at offset %llu (ignored)\n",
               (unsigned long long)l->bad_seq, (unsigned long long)l->bad_off);
    if (s->pending || l->pending)
        printf("recovery:        pending: %llu durable commit(s) not applied (run tmf recover)\n",
               (unsigned long long)(l->pending ? l->pending : 1));
    else
        printf("recovery:        not needed\n");
}

static void info_print(const tm_store *st, const struct snap *s)
{
    const struct hdr_slot *h = &s->hdr;
    char b1[32], b2[32], b3[32], b4[32], slots[128];
    printf("file:            %s\n", tm_store_path(st));
    printf("magic:           %.8s\n", h->magic);
    printf("version:         %u\n", h->version);
    printf("page size:       %u\n", h->page_size);
    printf("base:            %#llx\n", (unsigned long long)h->base);
    printf("max size:        %llu (%s)\n", (unsigned long long)h->max_size, tmf_human(h->max_size, b1, 32));
    printf("store id:        %#018llx\n", (unsigned long long)h->store_id);
    printf("header slots:    %s\n", tmf_check_slots(s->page0, slots, sizeof slots) ? slots : "both valid");
    printf("checkpoint:      generation %llu, commit seq %llu, arena size %llu\n",
           (unsigned long long)h->gen, (unsigned long long)h->ckpt_seq,
           (unsigned long long)h->ckpt_size);
    printf("committed:       commit seq %llu, arena size %llu (%s)\n", (unsigned long long)s->c.seq,
           (unsigned long long)s->c.size, tmf_human(s->c.size, b1, 32));
    if (s->sb.root)
        printf("root:            %#llx, %llu bytes\n", (unsigned long long)s->sb.root,
               (unsigned long long)s->sb.root_size);
    else
        printf("root:            none\n");
    if (s->pending)
        printf("heap:            not read (recovery pending)\n");
    else
        printf("heap:            live %s, free %s in %llu blocks, largest free block %s\n",
               tmf_human(s->stats.live_bytes, b2, 32), tmf_human(s->stats.free_bytes, b3, 32),
               (unsigned long long)s->stats.free_blocks, tmf_human(s->stats.largest_free, b4, 32));
    info_log(st, s);
    printf("last commit:     %llu\n",
           (unsigned long long)(s->log.last_seq > s->c.seq ? s->log.last_seq : s->c.seq));
}

/* The code layout record: the modules the data may point into. */
struct layout_sum {
    unsigned modules;
    uint64_t pointers;
};

static void layout_line(void *ctx, const struct tm_layout_module *m)
{
    struct layout_sum *sum = ctx;
    char id[2 * 32 + 1];
    for (unsigned i = 0; i < m->id_len && i < 32; i++)
        snprintf(id + 2 * i, 3, "%02x", m->build_id[i]);
    printf("  %.*s\n    loaded at %#llx, [%#llx, %#llx), build id %s, %llu pointer(s) into it\n", (int)m->path_len,
           m->path, (unsigned long long)m->base, (unsigned long long)m->lo, (unsigned long long)m->hi,
           m->id_len ? id : "none", (unsigned long long)m->pointers);
    sum->modules += m->pointers > 0;
    sum->pointers += m->pointers;
}

static void info_layout(tm_store *st, const struct snap *s)
{
    struct layout_sum sum = {0, 0};
    uint64_t gen = 0;
    int r;
    if (s->pending) {
        printf("code layout:     not read (recovery pending)\n");
        return;
    }
    if ((r = inspect_layout(st, &gen, NULL, NULL)) == 0) {
        printf("code layout:     none recorded (the data hold no pointer into code or static data)\n");
        return;
    }
    if (r < 0) {
        printf("code layout:     unreadable: %s\n", tm_strerror(-r));
        return;
    }
    printf("code layout:     generation %llu, the modules of the last program to change it:\n",
           (unsigned long long)gen);
    inspect_layout(st, &gen, layout_line, &sum);
    printf("code pointers:   %llu in the live heap, into %u module(s)\n", (unsigned long long)sum.pointers,
           sum.modules);
}

int tmf_info(const struct tmf_args *a)
{
    char msg[512];
    tm_store *st;
    struct snap s;
    int ex = open_snap(a->file, &st, &s, msg, sizeof msg);
    if (ex == TMF_UNFINISHED) { /* msg: "recovery pending: why" */
        const char *why = strchr(msg, ':');
        printf("file:            %s\nrecovery:        pending:%s\n", a->file, why ? why + 1 : msg);
        return EXIT_CLEAN;
    }
    if (ex != EXIT_CLEAN) {
        tmf_err(a->file, "%s", msg);
        return ex;
    }
    info_print(st, &s);
    info_layout(st, &s);
    close_snap(st, &s);
    return EXIT_CLEAN;
}

/* ---- stats ---- */

static void json_string(const char *p)
{
    putchar('"');
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

int tmf_stats(const struct tmf_args *a)
{
    tm_store *st;
    struct snap s;
    const tm_stats_t *t = &s.stats;
    const char *names[] = {"arena_size", "max_size", "live_bytes", "free_bytes", "free_blocks",
                           "largest_free", "commits", "log_bytes", "log_records", "pending_records"};
    uint64_t v[10];
    int ex = open_snap_or_say(a->file, &st, &s), i;
    if (ex != EXIT_CLEAN)
        return ex;
    v[0] = s.sb.size, v[1] = s.hdr.max_size, v[2] = t->live_bytes, v[3] = t->free_bytes;
    v[4] = t->free_blocks, v[5] = t->largest_free, v[6] = s.c.seq, v[7] = s.log.bytes;
    v[8] = s.log.records, v[9] = s.pending && !s.log.pending ? 1 : s.log.pending;
    if (a->json) {
        printf("{\"file\": ");
        json_string(tm_store_path(st));
        for (i = 0; i < 10; i++)
            printf(", \"%s\": %llu", names[i], (unsigned long long)v[i]);
        printf(", \"recovery_pending\": %s}\n", s.pending || s.log.pending ? "true" : "false");
    } else {
        for (i = 0; i < 10; i++)
            printf("%-16s %llu\n", names[i], (unsigned long long)v[i]);
        printf("%-16s %s\n", "recovery_pending", s.pending || s.log.pending ? "yes" : "no");
    }
    close_snap(st, &s);
    return EXIT_CLEAN;
}

/* ---- check ---- */

/* The verdict on everything but the heap; EXIT_CLEAN when the heap is next. */
static int check_parts(const struct snap *s, char *msg, size_t len)
{
    const struct log_scan *l = &s->log;
    if (tmf_check_slots(s->page0, msg + 9, len - 9) < 0)
        return memcpy(msg, "damaged: ", 9), EXIT_DAMAGED;
    if (l->corrupt) {
        snprintf(msg, len, "damaged: log record seq %llu at offset %llu is corrupt, "
                 "though the store took it as applied",
                 (unsigned long long)l->bad_seq, (unsigned long long)l->bad_off);
        return EXIT_DAMAGED;
    }
    if (s->pending || l->pending) {
        snprintf(msg, len, "recovery pending: %llu durable commit(s) not yet applied; "
                 "heap not checked; run 'tmf recover'",
                 (unsigned long long)(l->pending ? l->pending : 1));
        return -1;
    }
    return EXIT_CLEAN;
}

static int check_heap(tm_store *st, const struct snap *s, char *msg, size_t len)
{
    char hm[256];
    int r;
    tmf_progress_start("checking the heap", s->sb.size);
    tm__progress = tmf_progress_add;
    r = tm_store_check(st, hm, sizeof hm);
    tm__progress = NULL;
    if (r == 0)
        tmf_progress_set(s->sb.size); /* the walk reached the fence */
    tmf_progress_end();
    if (r == 0)
        return EXIT_CLEAN;
    snprintf(msg, len, "damaged: heap: %s", hm[0] ? hm : tm_strerror(r));
    return EXIT_DAMAGED;
}

int tmf_check(const struct tmf_args *a)
{
    char msg[512];
    tm_store *st;
    struct snap s;
    int ex = tmf_open_ro(a->file, &st, msg, sizeof msg);
    if (ex != EXIT_CLEAN) {
        printf("%s: %s\n", a->file, msg);
        return ex == TMF_UNFINISHED ? EXIT_CLEAN : ex; /* recovery pending, not damage */
    }
    if ((ex = take_snap(st, &s, msg, sizeof msg)) == EXIT_CLEAN &&
        (ex = check_parts(&s, msg, sizeof msg)) == EXIT_CLEAN &&
        (ex = check_heap(st, &s, msg, sizeof msg)) == EXIT_CLEAN)
        snprintf(msg, sizeof msg, "clean: commit seq %llu, arena %llu bytes, %llu log records after the checkpoint%s",
                 (unsigned long long)s.c.seq, (unsigned long long)s.sb.size,
                 (unsigned long long)s.log.records,
                 s.log.torn ? " (a torn uncommitted log record is ignored)" : "");
    printf("%s: %s\n", a->file, msg);
    close_snap(st, &s);
    return ex < 0 ? EXIT_CLEAN : ex;
}
