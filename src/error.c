/*
 * error.c — error codes and their messages.
 */
#include <string.h>

#include "internal.h"

static const char *const messages[TM_ELAST - TM_EFIRST] = {
    [TM_ENOTSTORE - TM_EFIRST] = "not a tmfalloc store",
    [TM_EVERSION - TM_EFIRST] = "store format is newer than this library",
    [TM_ECORRUPT - TM_EFIRST] = "store header, superblock or log is corrupt",
    [TM_ETRUNCATED - TM_EFIRST] = "store file is shorter than its header says",
    [TM_EADDR - TM_EFIRST] = "the store's base address is already in use in this process",
    [TM_EPOISONED - TM_EFIRST] = "an earlier I/O error poisoned this handle; close and reopen the store",
    [TM_ENOTX - TM_EFIRST] = "no write transaction is open on this thread",
    [TM_EREADTX - TM_EFIRST] = "not allowed inside a read transaction",
    [TM_EOTHERTX - TM_EFIRST] = "another thread owns the write transaction",
    [TM_EFULL - TM_EFIRST] = "the arena reached its maximum size (TMF_MAX_SIZE)",
    [TM_EPAGESIZE - TM_EFIRST] = "the system page size is not 4096 bytes",
    [TM_ELAYOUT - TM_EFIRST] = "the store's data point into a program or library that moved or changed (stderr names it)",
};

const char *tm_strerror(int code)
{
    if (code == 0)
        return "success";
    if (code >= TM_EFIRST && code < TM_ELAST && messages[code - TM_EFIRST])
        return messages[code - TM_EFIRST];
    if (code > 0 && code < TM_EFIRST)
        return strerror(code);
    return "unknown error";
}
