/* test_layout.c — the code layout record (layout.c): written in the commit
 * that first stores a pointer into code or static data, never for plain
 * data, and checked at open: a store whose data point into a module that
 * moved is refused with TM_ELAYOUT; one that only records it is not. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "inspect.h"
#include "internal.h"

static int triple(int x)
{
    return 3 * x;
}

static const char greeting[] = "static data of the program";

struct root {
    int (*fn)(int);
    const char *text;
    char *pages; /* a large block, for a transaction in bulk mode */
};

struct seen {
    int modules, with_pointers;
    uint64_t pointers;
};

static void tally(void *ctx, const struct tm_layout_module *m)
{
    struct seen *s = ctx;
    s->modules++;
    s->with_pointers += m->pointers > 0;
    s->pointers += m->pointers;
}

/* 0: no record; else 1 and *s filled. */
static int layout_of(tm_store *st, struct seen *s)
{
    uint64_t gen;
    int r;
    memset(s, 0, sizeof *s);
    TU_OK(tm_store_read_begin(st));
    r = inspect_layout(st, &gen, tally, s);
    TU_OK(tm_store_read_end(st));
    cr_assert_geq(r, 0);
    return r;
}

static uint64_t *record_word(tm_store *st)
{
    return (uint64_t *)((char *)super_of(st) + SUPER_LAYOUT_OFF);
}

Test(layout, plain_data_get_no_record)
{
    tm_store *st = tu_open(tu_path("plain.tmf"));
    struct seen s;
    TU_OK(tm_store_begin(st));
    long *p = tm_store_malloc(st, 4096);
    for (int i = 0; i < 512; i++)
        p[i] = i * 1000003L;
    *(long **)tm_store_root(st, sizeof(long *)) = p;
    TU_OK(tm_store_commit(st));
    cr_assert_eq(layout_of(st, &s), 0);
    cr_assert_eq(*record_word(st), 0);
    TU_OK(tm_close(st));
}

Test(layout, a_code_pointer_is_recorded_in_its_own_commit)
{
    const char *path = tu_path("code.tmf");
    tm_store *st = tu_open(path);
    struct root *r = tm_store_root(st, sizeof *r);
    tm_stats_t a, b;
    struct seen s;
    cr_assert_not_null(r);
    TU_OK(tm_store_stats(st, &a));
    TU_OK(tm_store_begin(st));
    r->fn = triple;
    r->text = greeting;
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_stats(st, &b));
    cr_assert_eq(b.commits, a.commits + 1, "the record took a commit of its own");
    cr_assert_eq(b.live_bytes, a.live_bytes, "the record is the library's block, not the program's");
    cr_assert_eq(layout_of(st, &s), 1);
    cr_assert_geq(s.modules, 2);
    cr_assert_eq(s.with_pointers, 1, "only the program is pointed into");
    cr_assert_eq(s.pointers, 2);
    TU_OK(tm_store_check(st, NULL, 0));
    TU_OK(tm_close(st));
    /* this process, this layout: it opens, and the pointers work */
    st = tu_open(path);
    r = tm_store_root(st, sizeof *r);
    cr_assert_eq(r->fn(5), 15);
    cr_assert_str_eq(r->text, greeting);
    TU_OK(tm_close(st));
}

/* Moves the record's first module (the program) by delta, as a process
 * that loaded it elsewhere would have recorded it. */
static void move_program(tm_store *st, uint64_t delta)
{
    struct layout_head *h;
    struct layout_mod *m;
    hash_state hs;
    TU_OK(tm_store_begin(st));
    h = (struct layout_head *)(uintptr_t)*record_word(st);
    m = (struct layout_mod *)(h + 1);
    m->base += delta;
    for (unsigned j = 0; j < m->nseg; j++) {
        ((uint64_t *)(m + 1))[2 * j] += delta;
        ((uint64_t *)(m + 1))[2 * j + 1] += delta;
    }
    h->checksum = 0;
    hash_init(&hs, LAYOUT_SEED);
    hash_update(&hs, h, h->bytes);
    h->checksum = hash_final(&hs);
    TU_OK(tm_store_commit(st));
}

static int open_err(const char *path)
{
    tm_options o = tu_opts(TM_SYNC_FULL);
    tm_store *st = NULL;
    int r = tm_open(path, &o, &st);
    if (r == 0)
        TU_OK(tm_close(st));
    return r;
}

Test(layout, data_pointing_into_a_moved_module_are_refused)
{
    const char *path = tu_path("moved.tmf");
    tm_store *st = tu_open(path);
    struct root *r = tm_store_root(st, sizeof *r);
    uint64_t delta = (uint64_t)1 << 32;
    TU_OK(tm_store_begin(st));
    r->fn = triple;
    TU_OK(tm_store_commit(st));
    /* the words that pointed into the program point where the recorded
     * module now says it was */
    TU_OK(tm_store_begin(st));
    r->fn = (int (*)(int))((uintptr_t)triple + delta);
    TU_OK(tm_store_commit(st));
    move_program(st, delta);
    TU_OK(tm_close(st));
    cr_assert_eq(open_err(path), TM_ELAYOUT);
    cr_assert_str_eq(tm_strerror(TM_ELAYOUT),
                     "the store's data point into a program or library that moved or changed (stderr names it)");
    tm__layout_ignore = 1; /* the tools open it whatever the layout */
    cr_assert_eq(open_err(path), 0);
    tm__layout_ignore = 0;
    cr_assert_eq(open_err(path), TM_ELAYOUT, "refused each time");
}

Test(layout, a_moved_module_nothing_points_into_is_rewritten)
{
    const char *path = tu_path("stale.tmf");
    tm_store *st = tu_open(path);
    struct root *r = tm_store_root(st, sizeof *r);
    struct seen s;
    TU_OK(tm_store_begin(st));
    r->fn = triple;
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_begin(st));
    r->fn = NULL; /* nothing points into the program any more */
    TU_OK(tm_store_commit(st));
    move_program(st, (uint64_t)1 << 32);
    TU_OK(tm_close(st));
    st = tu_open(path); /* recorded elsewhere, but not pointed into: opens */
    r = tm_store_root(st, sizeof *r);
    cr_assert_eq(layout_of(st, &s), 1);
    cr_assert_eq(s.pointers, 0);
    TU_OK(tm_store_begin(st));
    r->text = greeting; /* the first commit rewrites the record: this process's layout */
    TU_OK(tm_store_commit(st));
    cr_assert_eq(((struct layout_head *)(uintptr_t)*record_word(st))->gen, 2);
    TU_OK(tm_close(st));
    cr_assert_eq(open_err(path), 0);
}

Test(layout, a_damaged_record_fails_the_open)
{
    /* A commit that meets a damaged record writes it anew; damage in the
     * file, from outside, is met by the open. */
    const char *path = tu_path("damaged.tmf");
    tm_store *st = tu_open(path);
    struct root *r = tm_store_root(st, sizeof *r);
    TU_OK(tm_store_begin(st));
    r->fn = triple;
    TU_OK(tm_store_commit(st));
    off_t at = (off_t)(*record_word(st) - (uintptr_t)tm_store_base(st)) + 8; /* nmods */
    TU_OK(tm_close(st));
    int fd = open(path, O_RDWR);
    uint32_t nmods = 0;
    cr_assert(fd >= 0 && pread(fd, &nmods, 4, at) == 4);
    nmods++;
    cr_assert(pwrite(fd, &nmods, 4, at) == 4 && close(fd) == 0);
    cr_assert_eq(open_err(path), TM_ECORRUPT);
    tm__layout_ignore = 1;
    cr_assert_eq(open_err(path), 0);
    tm__layout_ignore = 0;
}

Test(layout, a_bulk_transaction_records_its_code_pointers)
{
    /* Enough pages for the tracker to switch to bulk mode: the record is
     * written after the pages were listed and protected, and joins the
     * same commit. */
    const char *path = tu_path("bulk.tmf");
    tm_store *st = tu_open(path);
    struct root *r = tm_store_root(st, sizeof *r);
    struct seen s;
    size_t len = (size_t)4 << 20;
    TU_OK(tm_store_begin(st));
    r->pages = tm_store_malloc(st, len);
    cr_assert_not_null(r->pages);
    TU_OK(tm_store_commit(st));
    TU_OK(tm_store_begin(st));
    for (size_t i = 0; i < len; i += 64)
        r->pages[i] = (char)i;
    memcpy(r->pages + len / 2, &(int (*)(int)){triple}, sizeof(void *));
    TU_OK(tm_store_commit(st));
    cr_assert_eq(layout_of(st, &s), 1);
    cr_assert_eq(s.pointers, 1);
    TU_OK(tm_store_check(st, NULL, 0));
    /* written: nothing left writable or uncommitted */
    TU_OK(tm_close(st));
    st = tu_open(path);
    r = tm_store_root(st, sizeof *r);
    cr_assert_eq(r->pages[640], (char)640);
    cr_assert_eq(layout_of(st, &s), 1);
    TU_OK(tm_store_check(st, NULL, 0));
    TU_OK(tm_close(st));
}
