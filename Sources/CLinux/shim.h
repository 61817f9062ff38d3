// CLinux: Linux calls that Swift cannot reach directly (variadic `syscall`).
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/fs.h>

// Swaps two paths atomically (renameat2 with RENAME_EXCHANGE); -1 with errno on failure.
static inline int wkfs_exchange_paths(const char *a, const char *b) {
    return (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
}
