/*
 * modules.c — this process's address space as layout.c needs it: the
 * modules it has loaded (path, build id, load address, mapped ranges), and
 * where glibc's main heap lies.
 *
 * The list is made with dl_iterate_phdr, without allocating (the names are
 * copied into the list's own memory, from os_alloc), and made again only
 * when a module was loaded or unloaded since.  It is used under a mutex:
 * modules_lock ... modules_unlock.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "internal.h"

static struct modules *here;
static pthread_mutex_t here_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

/* Held across fork(): a child must not inherit it locked by a thread it
 * does not have.  Nothing is waited for while it is held. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&here_mu);
}

static void fork_done(void)
{
    pthread_mutex_unlock(&here_mu);
}

static void install_fork_hooks(void)
{
    (void)pthread_atfork(fork_prepare, fork_done, fork_done); /* fails only without memory */
}

/* ---- the list ---- */

static void build_id(const struct dl_phdr_info *info, struct mod *m)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr), *end = p + ph->p_memsz;
        if (ph->p_type != PT_NOTE)
            continue;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            const char *name = p + sizeof *nh, *desc = name + ((nh->n_namesz + 3) & ~3u);
            if (desc + nh->n_descsz > end)
                break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                m->id_len = nh->n_descsz < LAYOUT_ID_MAX ? nh->n_descsz : LAYOUT_ID_MAX;
                memcpy(m->id, desc, m->id_len);
                return;
            }
            p = desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
}

static const char *keep_name(const char *name)
{
    size_t len = strlen(name), room = MODULES_NAMES - here->names_used;
    char *p = here->names + here->names_used;
    if (room < 2)
        return "";
    len = len < room - 1 ? len : room - 1; /* cut: the build id identifies, the name only tells */
    memcpy(p, name, len);
    p[len] = 0;
    here->names_used += len + 1;
    return p;
}

static int list_one(struct dl_phdr_info *info, size_t size, void *ctx)
{
    struct mod *m;
    const char *name = info->dlpi_name;
    (void)size, (void)ctx;
    if (here->n == LAYOUT_MODS)
        return 1;
    m = &here->m[here->n];
    memset(m, 0, sizeof *m);
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uint64_t lo = (info->dlpi_addr + ph->p_vaddr) & ~(uint64_t)(PAGE - 1);
        uint64_t hi = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + PAGE - 1) & ~(uint64_t)(PAGE - 1);
        if (ph->p_type != PT_LOAD || lo >= hi)
            continue;
        if (m->nseg && lo <= m->seg[m->nseg - 1][1]) /* touching or overlapping: one range */
            m->seg[m->nseg - 1][1] = hi > m->seg[m->nseg - 1][1] ? hi : m->seg[m->nseg - 1][1];
        else if (m->nseg == LAYOUT_SEGS) /* more than it keeps: the last one widens */
            m->seg[m->nseg - 1][1] = hi;
        else
            m->seg[m->nseg][0] = lo, m->seg[m->nseg][1] = hi, m->nseg++;
    }
    if (!m->nseg)
        return 0;
    if (!*name && here->n == 0) /* the program: as it was executed */
        name = (const char *)getauxval(AT_EXECFN);
    m->base = info->dlpi_addr;
    m->path = keep_name(name ? name : "");
    m->path_len = (unsigned)strlen(m->path);
    build_id(info, m);
    here->lo = m->seg[0][0] < here->lo ? m->seg[0][0] : here->lo;
    here->hi = m->seg[m->nseg - 1][1] > here->hi ? m->seg[m->nseg - 1][1] : here->hi;
    here->n++;
    here->adds = info->dlpi_adds, here->subs = info->dlpi_subs;
    return 0;
}

static int counters(struct dl_phdr_info *info, size_t size, void *ctx)
{
    unsigned long long *c = ctx;
    (void)size;
    c[0] = info->dlpi_adds, c[1] = info->dlpi_subs;
    return 1;
}

const struct modules *modules_lock(void)
{
    unsigned long long c[2] = {0, 0};
    pthread_once(&fork_once, install_fork_hooks);
    pthread_mutex_lock(&here_mu);
    if (!here && !(here = os_alloc(sizeof *here))) {
        pthread_mutex_unlock(&here_mu);
        return NULL;
    }
    dl_iterate_phdr(counters, c);
    if (here->n && c[0] == here->adds && c[1] == here->subs)
        return here;
    here->n = 0;
    here->names_used = 0;
    here->lo = UINT64_MAX, here->hi = 0;
    dl_iterate_phdr(list_one, NULL);
    return here;
}

void modules_unlock(void)
{
    pthread_mutex_unlock(&here_mu);
}

int modules_hold(const struct modules *ms, uint64_t w)
{
    if (w - ms->lo >= ms->hi - ms->lo)
        return 0;
    for (unsigned i = 0; i < ms->n; i++)
        for (unsigned j = 0; j < ms->m[i].nseg; j++)
            if (w - ms->m[i].seg[j][0] < ms->m[i].seg[j][1] - ms->m[i].seg[j][0])
                return 1;
    return 0;
}

/* ---- against a record ---- */

int modules_find(const struct modules *ms, const struct layout_mod *rm)
{
    for (unsigned i = 0; i < ms->n; i++) {
        const struct mod *m = &ms->m[i];
        if (m->base != rm->base || m->nseg != rm->nseg)
            continue;
        if (rm->id_len && m->id_len ? m->id_len == rm->id_len && memcmp(m->id, rm->build_id, m->id_len) == 0
                                    : m->path_len == rm->path_len && memcmp(m->path, layout_mod_path(rm), m->path_len) == 0 &&
                                          memcmp(m->seg, layout_mod_segs(rm), 16 * m->nseg) == 0)
            return (int)i;
    }
    return -1;
}

/* Whether the record lists exactly this process's modules. */
void modules_hex(char *out, const uint8_t *p, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = "0123456789abcdef"[p[i] >> 4];
        out[2 * i + 1] = "0123456789abcdef"[p[i] & 15];
    }
    out[2 * n] = 0;
}

void modules_fate(const struct modules *ms, const struct layout_mod *rm, char *out, size_t len)
{
    for (unsigned i = 0; i < ms->n; i++) {
        const struct mod *m = &ms->m[i];
        if (rm->id_len && m->id_len == rm->id_len && memcmp(m->id, rm->build_id, m->id_len) == 0) {
            snprintf(out, len, "this process loads it at %#llx", (unsigned long long)m->base);
            return;
        }
    }
    for (unsigned i = 0; i < ms->n; i++) {
        const struct mod *m = &ms->m[i];
        if (m->path_len == rm->path_len && memcmp(m->path, layout_mod_path(rm), m->path_len) == 0) {
            char id[2 * LAYOUT_ID_MAX + 1];
            modules_hex(id, m->id, m->id_len);
            snprintf(out, len, "this process loads another build of it (build id %s) at %#llx", m->id_len ? id : "none",
                     (unsigned long long)m->base);
            return;
        }
    }
    snprintf(out, len, "this process does not load it");
}

/* Refuses (-TM_ELAYOUT, said on stderr) when the live data point into a
 * recorded module that this process does not have where it was. */
size_t modules_bytes(const struct mod *m)
{
    return sizeof(struct layout_mod) + 16 * m->nseg + ((m->path_len + 7u) & ~7u);
}

char *modules_put(char *out, const struct mod *m)
{
    struct layout_mod *r = (struct layout_mod *)out;
    memset(out, 0, modules_bytes(m));
    r->base = m->base;
    r->nseg = m->nseg;
    r->path_len = (uint16_t)(m->path_len < UINT16_MAX ? m->path_len : UINT16_MAX);
    r->id_len = (uint8_t)m->id_len;
    memcpy(r->build_id, m->id, m->id_len);
    memcpy(r + 1, m->seg, 16 * m->nseg);
    memcpy((char *)(r + 1) + 16 * m->nseg, m->path, r->path_len);
    return out + modules_bytes(m);
}

/* The modules of the old record to keep: those this process does not have
 * where they were, that the data still point into.  The open counted them
 * (none): counted again only when the record or the data changed since. */
/* ---- glibc's main heap ---- */

/* Its start (/proc/self/stat's start_brk), read once; 0 when unknown. */
static uint64_t heap_start(void)
{
    static uint64_t start = 1;
    char buf[1024], *p;
    ssize_t n;
    int fd, field;
    if (start != 1)
        return start;
    start = 0;
    if ((fd = os_open("/proc/self/stat", O_RDONLY, 0)) < 0)
        return 0;
    n = os_calls.read_at(fd, buf, sizeof buf - 1, 0);
    os_close(fd);
    if (n <= 0 || !(buf[n] = 0, p = strrchr(buf, ')')))
        return 0;
    for (field = 2; *p && field < 47; p++) /* field 2 ends with the ')' */
        if (*p == ' ')
            field++;
    start = strtoull(p, NULL, 10);
    return start;
}

int modules_glibc_heap(const char *p, const char *end)
{
    uint64_t lo = heap_start(), hi = (uintptr_t)sbrk(0);
    if (!lo || hi <= lo)
        return 0;
    for (p = (const char *)((uintptr_t)p & ~(uintptr_t)7); p + 8 <= end; p += 8)
        if (*(const uint64_t *)p - lo < hi - lo)
            return 1;
    return 0;
}

