/*
 * aslr.c — the preload runs its program without address randomisation.
 *
 * Data kept in the arena may hold pointers into the program and its
 * libraries: function pointers, C++ vtables, method tables, addresses of
 * static data (an embedded Lua VM, an SQLite database, any object with
 * virtual functions).  With randomisation on, these load elsewhere in each
 * run and such pointers go stale.  Without it, the same binary with the
 * same libraries loads at the same addresses every time.
 *
 * So, before main, the preload sets the ADDR_NO_RANDOMIZE personality and
 * executes the program again, once; children and programs it executes
 * inherit the personality and are not executed again.  It does so for
 * the programs that use tmfalloc: a loaded module is libtmfalloc, or
 * refers to a tm_* symbol the preload defines (kv declares them weak).
 * Others (the shell, the compiler, make, under one LD_PRELOAD) start as
 * fast as without it: one more exec would double what a start costs.
 * TMF_ASLR=off does it for every program, TMF_ASLR=keep for none.
 * Nothing is done (and the program runs on as it is) when:
 *   - the personality is set already (a re-executed process, setarch -R,
 *     a child): this is also what ends the one re-execution;
 *   - the kernel does not randomise (kernel.randomize_va_space = 0);
 *   - the program runs with privileges it was not started with (AT_SECURE:
 *     setuid, setgid, file capabilities), where the kernel would clear the
 *     personality anyway and where the environment must not be trusted;
 *   - the dynamic loader was run as a command (ld.so ./prog): its argv
 *     cannot be rebuilt;
 *   - this library's malloc is not the process's (it was dlopen'ed);
 *   - personality(2) is refused (seccomp) or the exec fails: the
 *     personality is restored and the program goes on randomised.
 * The exec takes the same argv and the current environment; the path is
 * the one the kernel was given (AT_EXECFN) when it names the same file as
 * /proc/self/exe, so the new process sees the same AT_EXECFN, else
 * /proc/self/exe (an interpreted script: argv names the interpreter).
 *
 * It runs in a constructor: the dynamic loader calls it after libc's, and
 * before the program's own constructors and main (the executable is
 * always initialised last), with argc, argv and envp.  Nothing here
 * allocates or uses stdio: only system calls and reads of the auxiliary
 * vector and the environment.
 */
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/stat.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "preload.h"

extern char **environ;

/* The value of name in env, without getenv (nothing before main may
 * depend on libc's state beyond the vector itself). */
static const char *env_value(char **env, const char *name)
{
    size_t n = strlen(name);
    for (; env && *env; env++)
        if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
            return *env + n + 1;
    return NULL;
}

/* Whether the kernel randomises the address space (kernel.randomize_va_space
 * is not 0); when unknown, yes. */
static int kernel_randomises(void)
{
    char c = '2';
    int fd = open("/proc/sys/kernel/randomize_va_space", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &c, 1) != 1)
            c = '2';
        close(fd);
    }
    return c != '0';
}

/* The path to execute: AT_EXECFN when it is the running executable. */
static const char *exec_path(void)
{
    const char *fn = (const char *)getauxval(AT_EXECFN);
    struct stat a, b;
    if (fn && stat(fn, &a) == 0 && stat("/proc/self/exe", &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino)
        return fn;
    return "/proc/self/exe";
}

/* An address from a module's dynamic section: the loader relocated it in
 * place, except where the section is read-only (the vDSO's). */
static const void *dyn_ptr(const struct dl_phdr_info *info, ElfW(Addr) p)
{
    return (const void *)(p < info->dlpi_addr ? info->dlpi_addr + p : p);
}

/* Whether a module is libtmfalloc or refers to a tm_* symbol: its
 * undefined symbols are the first ones of its dynamic symbol table, those
 * the GNU hash table leaves out (or all of them, with the old table). */
static int uses_tmfalloc(struct dl_phdr_info *info, size_t size, void *ctx)
{
    const ElfW(Dyn) *d = NULL;
    const ElfW(Sym) *sym = NULL;
    const char *str = NULL;
    const uint32_t *gnu = NULL, *hash = NULL;
    uint32_t n;
    (void)size, (void)ctx;
    if (strstr(info->dlpi_name, "/libtmfalloc.so"))
        return 1;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            d = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    for (; d && d->d_tag != DT_NULL; d++) {
        if (d->d_tag == DT_SYMTAB)
            sym = dyn_ptr(info, d->d_un.d_ptr);
        else if (d->d_tag == DT_STRTAB)
            str = dyn_ptr(info, d->d_un.d_ptr);
        else if (d->d_tag == DT_GNU_HASH)
            gnu = dyn_ptr(info, d->d_un.d_ptr);
        else if (d->d_tag == DT_HASH)
            hash = dyn_ptr(info, d->d_un.d_ptr);
    }
    if (!sym || !str || !(gnu || hash))
        return 0;
    n = gnu ? gnu[1] : hash[1]; /* symoffset; nchain */
    for (uint32_t i = 1; i < n; i++)
        if (sym[i].st_shndx == SHN_UNDEF && strncmp(str + sym[i].st_name, "tm_", 3) == 0)
            return 1;
    return 0;
}

int aslr_reexec_wanted(char **env)
{
    const char *want = env_value(env, "TMF_ASLR");
    int pers = personality(0xffffffff);
    if (pers == -1 || (pers & ADDR_NO_RANDOMIZE))
        return 0;
    if (want && strcmp(want, "keep") == 0)
        return 0;
    if (getauxval(AT_SECURE) || getauxval(AT_BASE) == 0)
        return 0;
    if (!(want && strcmp(want, "off") == 0) && !dl_iterate_phdr(uses_tmfalloc, NULL))
        return 0;
    return kernel_randomises();
}

void aslr_reexec(char **argv)
{
    int saved = errno, pers = personality(0xffffffff);
    if (pers == -1 || personality((unsigned long)pers | ADDR_NO_RANDOMIZE) == -1)
        return;
    if (personality(0xffffffff) == (pers | ADDR_NO_RANDOMIZE))
        execve(exec_path(), argv, environ);
    (void)personality((unsigned long)pers); /* refused, or the exec failed: go on as we are */
    errno = saved;
}
