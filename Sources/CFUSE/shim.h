// CFUSE: libfuse3's low-level, inode-based API (fuse_lowlevel.h), at API version 3.12, plus the
// few helpers Swift cannot see on its own. Each helper is prefixed `cfuse_` and says why it exists.
#ifndef CFUSE_SHIM_H
#define CFUSE_SHIM_H

// 3.12 is the oldest API with fuse_loop_cfg_*; the headers refuse to compile without a version.
#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

// fuse_session_new and fuse_session_loop_mt are macros over versioned symbols in some libfuse
// releases (3.17 and builds without symbol versioning); calling them from C picks the right one.
static inline struct fuse_session *cfuse_session_new(
    struct fuse_args *args, const struct fuse_lowlevel_ops *ops, size_t ops_size, void *userdata) {
    return fuse_session_new(args, ops, ops_size, userdata);
}

static inline int cfuse_session_loop_mt(struct fuse_session *session, struct fuse_loop_config *config) {
    return fuse_session_loop_mt(session, config);
}

// The mount serves requests on many threads; glibc gives each its own malloc arena, and freed
// block buffers in one arena are not reused by another, which nearly doubled the server's peak
// memory. Setting the trim threshold also freezes glibc's mmap threshold at 128 KiB, so every
// 128 KiB block (a uint32 32^3 block) was its own mmap, zeroed by the kernel and unmapped again:
// three quarters of the server's time. Blocks up to 32 MiB now come from the reused heap.
// mallopt and its M_* constants live in <malloc.h>, which Swift's Glibc module omits.
#include <malloc.h>
#include <mntent.h>  /* the mount table: is a mount point still mounted */
static inline void cfuse_limit_malloc_arenas(void) {
    mallopt(M_ARENA_MAX, 2);
    mallopt(M_TRIM_THRESHOLD, 32 << 20);
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
}

#endif
